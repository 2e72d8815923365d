"""Calibration, operating points, bootstrap intervals, imbalance and TTA (cnnkit.decision), against references
(torchmetrics, scikit-learn) and end to end on a real imbalanced two-class task (digits: 'three' against the rest)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import roc_curve

import cnnkit
from cnnkit import decision
from cnnkit.cli import main
from cnnkit.errors import CnnkitError

pytestmark = pytest.mark.xdist_group("binary_run")  # one trained run per worker


def test_ece_equals_torchmetrics():
    tm = pytest.importorskip("torchmetrics.classification")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 4, generator=g) * 2
    y = torch.randint(0, 4, (2000,), generator=g)
    probs = torch.softmax(logits, 1)
    want = tm.MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")(probs, y).item()
    assert decision.calibration_error(probs.numpy(), y.numpy()) == pytest.approx(want, abs=1e-5)
    p2 = torch.softmax(logits[:, :2], 1)
    yb = (torch.rand(2000, generator=g) < p2[:, 1]).long()
    want = tm.BinaryCalibrationError(n_bins=15, norm="l1")(p2[:, 1], yb).item()
    assert decision.calibration_error(p2.numpy(), yb.numpy(), positive=1) == pytest.approx(want, abs=1e-5)


def test_temperature_scaling_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20000, 3, generator=g) * 2
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)  # labels drawn from softmax(z)
    assert decision.fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.05)  # over-confident by 3
    assert decision.fit_temperature(z / 2, y) == pytest.approx(0.5, rel=0.05)  # under-confident


def _scores(n=4000, prevalence=0.1, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prevalence
    return y, 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.0 * y - 1)))


@pytest.mark.parametrize("rule", ["sensitivity=0.95", "specificity=0.9", "youden", "f1", "argmax"])
def test_thresholds_are_the_best_ones_the_rule_allows(rule):
    y, p = _scores()
    t = decision.choose_threshold(y, p, rule)["threshold"]
    sens = lambda th: (p[y] >= th).mean()  # noqa: E731
    spec = lambda th: (p[~y] < th).mean()  # noqa: E731
    assert not np.isclose(p, t, rtol=0, atol=1e-12).any()  # halfway between two scores: no image on the edge
    higher = np.nextafter(p[p >= t].min(), 1)  # just above the lowest image called positive
    if rule == "sensitivity=0.95":
        assert sens(t) >= 0.95 and sens(higher) < 0.95  # the highest threshold that keeps it: best specificity
    elif rule == "specificity=0.9":
        lower = p[p < t].max()
        assert spec(t) >= 0.9 and spec(lower) < 0.9
    elif rule == "youden":
        fpr, tpr, thr = roc_curve(y, p)
        assert sens(t) + spec(t) - 1 == pytest.approx((tpr - fpr).max())
    elif rule == "f1":
        f1 = lambda th: 2 * (p[y] >= th).sum() / ((p >= th).sum() + y.sum())  # noqa: E731
        assert f1(t) == pytest.approx(max(f1(th) for th in np.unique(p)))
    else:
        assert t == 0.5


def test_unreachable_and_malformed_operating_points():
    y, p = _scores(n=200)
    p[y] = 0.0  # every positive below every negative: sensitivity only by calling everything positive
    with pytest.raises(CnnkitError, match="no threshold reaches sensitivity 0.95 without calling every image "
                                          "positive; the highest it reached was 0.000"):
        decision.choose_threshold(y, p, "sensitivity=0.95")
    with pytest.raises(CnnkitError, match="has 0 positive"):
        decision.choose_threshold(np.zeros(10, bool), np.linspace(0, 1, 10), "youden")
    for bad, msg in (("sensitivity=1.5", "fraction in"), ("recall", "not one of"), ("precision=0.9", "not one of")):
        with pytest.raises(CnnkitError, match=msg):
            decision.parse_rule(bad)


def test_bootstrap_intervals_agree_with_the_normal_approximation():
    rng = np.random.default_rng(0)
    y = rng.random(20000) < 0.5
    pred = np.where(y, rng.random(20000) < 0.9, rng.random(20000) < 0.2)
    ci = decision.bootstrap_ci(y, pred)
    for key, p, n in (("sensitivity", pred[y].mean(), y.sum()), ("specificity", 1 - pred[~y].mean(), (~y).sum())):
        half = 1.96 * np.sqrt(p * (1 - p) / n)
        assert ci[key][0] == pytest.approx(p - half, abs=0.003) and ci[key][1] == pytest.approx(p + half, abs=0.003)
    assert ci["ppv"][0] < ci["ppv"][1] and ci["balanced_accuracy"][0] < 0.85 < ci["balanced_accuracy"][1]


def test_balance_choice_and_weights():
    assert decision.resolve_balance("auto", [900, 100])[0] == "weights"  # 10%: under a quarter
    assert decision.resolve_balance("auto", [900, 100], "sensitivity=0.9")[0] == "none"  # the threshold balances
    assert decision.resolve_balance("auto", [700, 300])[0] == "none"
    assert decision.resolve_balance("sampler", [700, 300])[0] == "sampler"
    w = decision.class_weights([900, 100])
    assert torch.allclose(w, torch.tensor([1000 / 1800, 1000 / 200]))  # scikit-learn's 'balanced'


def test_tta_views_follow_the_flips_setting():
    from cnnkit.data.transforms import tta_views

    x = torch.arange(2 * 32 * 32, dtype=torch.uint8).view(2, 1, 32, 32)
    assert len(tta_views(x, flips=False)) == 5 and len(tta_views(x, flips=True)) == 6
    down = tta_views(x, flips=False)[1]
    assert (down[:, :, 2:] == x[:, :, :-2]).all() and (down[:, :, :2] == 0).all()  # 32 // 16 = 2 pixels


# --- end to end --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def threes(tmp_path_factory) -> Path:
    """Digits as a folder: 'three' (10%) against 'other', with patient-like groups in the file names."""
    root = tmp_path_factory.mktemp("threes")
    d = load_digits()
    for i, (im, t) in enumerate(zip(d.images, d.target)):
        f = root / ("three" if t == 3 else "other") / f"p{i // 6:03d}_{i}.png"
        f.parent.mkdir(exist_ok=True)
        Image.fromarray(np.rint(im * 255 / 16).astype(np.uint8)).save(f)
    return root


@pytest.fixture(scope="module")
def screening_run(threes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "screen"
    cnnkit.train(str(threes), epochs=4, operating_point="sensitivity=0.95", group_by=r"p(\d+)_", out=str(out),
                 quiet=True, report=False)
    return out


def test_a_screening_run_keeps_its_threshold_and_temperature(screening_run, threes):
    meta = json.loads((screening_run / "model.json").read_text())
    d, cal = meta["decision"], meta["calibration"]
    assert d["positive"] == "three" and d["rule"] == "sensitivity=0.95"  # the rarer class by default
    assert d["val"]["sensitivity"] >= 0.95 and 0 < d["threshold"] < 1
    assert meta["train"]["balance"] == "none"  # auto with an operating point: the threshold does the balancing
    assert cal["temperature"] > 0 and cal["ece_after"] <= cal["ece_before"]
    # validation's numbers recomputed from the saved model: the threshold gives the sensitivity saved with it
    pred = cnnkit.load_model(screening_run)
    ds = cnnkit.run.load_run_data(pred)
    p = pred.probs_split(ds.val)[:, 1].numpy()
    assert (p[ds.val.y.numpy() == 1] >= d["threshold"]).mean() == pytest.approx(d["val"]["sensitivity"])
    # groups: no patient on both sides
    split = json.loads((screening_run / "split.json").read_text())
    patient = lambda k: k.split("/")[1].split("_")[0]  # noqa: E731
    train = {patient(k) for k in split["splits"]["train"]["train"]}
    val = {patient(k) for k in split["splits"]["val"]["train"]}
    assert val and not train & val and split["group_by"] == r"p(\d+)_"


def test_evaluate_reports_the_clinical_numbers(screening_run):
    rep = cnnkit.evaluate(screening_run)
    for key in ("sensitivity", "specificity", "ppv", "npv", "threshold", "roc_auc", "pr_auc", "ece", "f1",
                "balanced_accuracy", "prevalence"):
        assert key in rep
    for key, (lo, hi) in rep["ci95"].items():
        if rep[key] is not None and lo is not None:
            assert lo <= rep[key] + 1e-9 and rep[key] <= hi + 1e-9, key
    cm = np.array(rep["confusion_matrix"])  # rows true other/three, columns predicted
    assert rep["sensitivity"] == pytest.approx(cm[1, 1] / cm[1].sum(), abs=1e-4)
    assert rep["ppv"] == pytest.approx(cm[1, 1] / cm[:, 1].sum(), abs=1e-4)
    assert Path(rep["roc_pr_png"]).is_file() and Path(rep["reliability_png"]).is_file()
    tta = cnnkit.evaluate(screening_run, tta=True, plot=False)
    assert tta["tta"] is True and tta["roc_auc"] != rep["roc_auc"] or tta["ece"] != rep["ece"]


def test_predict_and_onnx_apply_the_same_decision(screening_run, threes, capsys):
    pred = cnnkit.load_model(screening_run)
    files = sorted(str(f) for f in (threes / "three").iterdir())[:5] + sorted(str(f) for f in (threes / "other").iterdir())[:5]
    assert main(["predict", str(screening_run), *files, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    probs = pred.predict_proba(files)
    want = ["three" if p >= pred.threshold else "other" for p in probs[:, 1].tolist()]
    assert [r["decision"] for r in out["predictions"]] == want and out["decision_rule"].startswith("three when p >=")
    onnx = cnnkit.load_model(screening_run, engine="onnx")
    assert onnx._onnx.decision["threshold"] == pred.threshold and onnx._onnx.temperature == pred.temperature
    torch.testing.assert_close(onnx.predict_proba(files), probs, atol=1e-5, rtol=1e-4)


def test_calibrate_rechooses_without_training(screening_run, capsys):
    assert main(["calibrate", str(screening_run), "--operating-point", "specificity=0.99", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"]["rule"] == "specificity=0.99" and out["decision"]["val"]["specificity"] >= 0.99
    assert cnnkit.load_model(screening_run).threshold == out["decision"]["threshold"]
    assert main(["calibrate", str(screening_run), "--operating-point", "sensitivity=0.95"]) == 0


def test_bad_decision_options_are_one_line(threes, tmp_path, capsys):
    assert main(["train", "--data", str(threes), "--positive", "thre", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--positive 'thre' is not a class of this data; its classes are other, three (did you mean 'three'?)" in err
    assert main(["train", "--data", "digits", "--operating-point", "youden", "--epochs", "1"]) == 2
    assert "an operating point is for two classes; this data has 10" in capsys.readouterr().err
    assert main(["train", "--data", "digits", "--operating-point", "sens=9"]) == 2
    assert "must be a fraction" in capsys.readouterr().err
    assert main(["train", "--data", str(threes), "--group-by", "q(\\d+)", "--epochs", "1"]) == 2
    assert "does not match other/p000_0.png" in capsys.readouterr().err


def test_the_sampler_draws_classes_evenly(threes, tmp_path):
    from cnnkit.data import load_data
    from cnnkit.engine import TrainConfig, Trainer

    data = load_data(str(threes))
    t = Trainer(TrainConfig(epochs=1, balance="sampler"), data, run_dir=tmp_path, callbacks=[])
    order = torch.multinomial(t.sample_weights, 20000, replacement=True, generator=torch.Generator().manual_seed(0))
    share = data.train.y[order].float().mean().item()
    assert t.cfg.balance == "sampler" and share == pytest.approx(0.5, abs=0.02)  # 10% in the data
    assert t.loss_fn.weight is None
