"""The run directory's format and the one Predictor: model.json's schema, old runs, claiming a run directory,
the best-epoch rule, extending a run, and one preprocessing for every data-source kind."""
import json
import multiprocessing as mp
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.engine import Callback
from cnnkit.errors import CnnkitError
from cnnkit.run import Predictor, claim_run_dir, load_run_data
from cnnkit.run import format as fmt


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fmt") / "run"
    cnnkit.train("digits", epochs=2, out=str(run), quiet=True, report=False)
    return run


def _edit(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    change(meta)
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("change,needle", [
    (lambda m: m.pop("classes"), "field 'classes'"),
    (lambda m: m.update(classes=["only one"]), "field 'classes' must be a list of at least 2"),
    (lambda m: m.update(classes=["a", "a"] + [str(i) for i in range(8)]), "has a name twice"),
    (lambda m: m["preprocess"].pop("std"), "lacks 'std'"),
    (lambda m: m["preprocess"].update(std=[0.0]), "std. must be .* each from 0.0001 to 1000"),
    (lambda m: m["preprocess"].update(channels=2), "channels must be 1 or 3"),
    (lambda m: m.update(format="cnnkit-run/9"), "field 'format'"),
    (lambda m: m.update(model="simplecnn"), "field 'model.name'"),
    (lambda m: m.update(data=[1, 2]), "field 'data' must be an object"),
])
def test_a_bad_model_json_is_named_before_use(digits_run, tmp_path, change, needle):
    run = _edit(digits_run, tmp_path / "bad", change)
    with pytest.raises(CnnkitError, match=needle) as e:
        Predictor.from_run(run)
    assert "model.json" in str(e.value)


def test_a_format_1_run_still_loads_and_predicts_the_same(digits_run, tmp_path):
    def to_v1(meta):
        prep = meta.pop("preprocess")
        meta["input"] = {k: prep[k] for k in ("channels", "size", "mean", "std")}
        meta["format"] = "cnnkit-run/1"
    old = _edit(digits_run, tmp_path / "v1", to_v1)
    x = cnnkit.load_data("digits").val.x[:32]
    assert torch.allclose(Predictor.from_run(old).probs(x), Predictor.from_run(digits_run).probs(x))


def test_run_files_are_the_documented_set(digits_run):
    names = {p.name for p in digits_run.iterdir()}
    assert {fmt.WEIGHTS, fmt.META, fmt.STATE, fmt.SPLIT, "metrics.csv", fmt.CLAIM} <= names
    meta = json.loads((digits_run / fmt.META).read_text())
    assert meta["format"] == fmt.FORMAT and "best_rule" in meta and meta["data"]["split_file"] == fmt.SPLIT
    split = json.loads((digits_run / fmt.SPLIT).read_text())
    assert sum(len(v) for v in split["splits"]["val"].values()) == meta["data"]["sizes"]["val"] == 360


def _claim(args):
    path, default = args
    try:
        return str(claim_run_dir(path, default))
    except CnnkitError as e:
        return "refused: " + str(e)


def test_a_run_directory_is_claimed_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with mp.get_context("spawn").Pool(4) as pool:
        same_out = pool.map(_claim, [(str(tmp_path / "out"), "x")] * 4)
        default = pool.map(_claim, [(None, "digits-simplecnn")] * 4)
    assert sum(not r.startswith("refused") for r in same_out) == 1  # one wins the --out, three are told
    assert all("already used by another training run" in r for r in same_out if r.startswith("refused"))
    assert len(set(default)) == 4 and all(Path(d).is_dir() for d in default)  # same second, 4 directories


class _Plateau(Callback):
    """Makes every validation score the same, so only the tie rule decides."""

    def after_train_epoch(self):
        t = self.trainer
        t.evaluate_split = lambda split: (1.0 - 0.01 * t.epoch, 0.5)


def test_ties_go_to_the_later_lower_loss_epoch(tmp_path):
    r = cnnkit.train("digits", epochs=4, out=str(tmp_path / "r"), quiet=True, report=False, callbacks=[_Plateau()])
    assert r["best_epoch"] == 4 and r["val_loss"] == pytest.approx(0.96)  # all tied on accuracy; lowest loss last


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path):
    full = cnnkit.train("digits", epochs=4, out=str(tmp_path / "full"), quiet=True, report=False)
    short = cnnkit.train("digits", epochs=2, out=str(tmp_path / "ext"), quiet=True, report=False)
    with pytest.raises(CnnkitError, match="already finished its 2 epochs; add --epochs"):
        cnnkit.resume(tmp_path / "ext", quiet=True)
    ext = cnnkit.resume(tmp_path / "ext", epochs=4, quiet=True, report=False)
    assert ext["epochs"] == 4 and short["epochs"] == 2
    rows = (tmp_path / "ext" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    # the schedule was rebuilt for 4 epochs and continued: epoch 3's learning rate is the 4-epoch run's
    lr = lambda run, e: float((tmp_path / run / "metrics.csv").read_text().splitlines()[e].split(",")[5])  # noqa: E731
    assert lr("ext", 3) == pytest.approx(lr("full", 3), rel=1e-6) and lr("ext", 4) == pytest.approx(lr("full", 4))
    assert 0.0 < full["val_acc"] <= 1.0


def _write_cifar(folder: Path, n_train: int = 60, n_test: int = 20):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", n_train // 5) for i in range(1, 6)] + [("test_batch", n_test)]:
        x = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        (folder / name).write_bytes(pickle.dumps({b"data": x, b"labels": y}))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))


@pytest.mark.parametrize("img_size", [None, 24])
def test_an_image_file_predicts_as_its_evaluation_sample_for_cifar(tmp_path, img_size):
    """The built-in array sources go through the same Preprocess as files: a PNG written from a CIFAR test
    image gives the probabilities its evaluation batch gives, at the native size and resized."""
    _write_cifar(tmp_path / "cifar-10-batches-py")
    opts = {"img_size": img_size} if img_size else {}
    run = cnnkit.train(f"cifar10:{tmp_path}", model="simplecnn_bn", epochs=1, batch_size=16, out=str(tmp_path / "r"),
                       quiet=True, report=False, **opts)["run_dir"]
    pred = Predictor.from_run(run)
    test = load_run_data(pred).split("test")
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())[b"data"]
    files = []
    for i in range(5):
        p = tmp_path / f"t{i}.png"
        Image.fromarray(raw[i].reshape(3, 32, 32).transpose(1, 2, 0)).save(p)
        files.append(str(p))
    from_files = pred.predict_proba(files)
    from_eval = pred.probs_split(test)[:5]
    assert torch.allclose(from_files, from_eval, atol=1e-5), (from_files - from_eval).abs().max()
    assert pred.preprocess.size == ((img_size, img_size) if img_size else (32, 32))
