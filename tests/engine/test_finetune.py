"""Fine-tuning from real ImageNet weights (MobileNetV2, shipped offline): the frozen phase, the BatchNorm
policy, discriminative learning rates, exact resume across the unfreeze, and a run that needs no weight file
once trained."""
import json
import math

import pytest
import torch

import cnnkit
from cnnkit.data import load_data
from cnnkit.engine import TrainConfig, Trainer
from cnnkit.engine.trainer import layer_groups
from cnnkit.errors import CnnkitError
from cnnkit.models import create_model
from cnnkit.run import Predictor
from cnnkit.run import format as ckpt
from test_training import StopAfter  # a run killed right after epoch k's checkpoint


@pytest.fixture(scope="module")
def digits32():
    """digits at 32×32 with ImageNet's statistics (averaged for gray), as a pretrained run sees them."""
    return load_data("digits", img_size=32, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def pretrained_state():
    m = create_model("mobilenet_v2", pretrained=True, in_channels=1, num_classes=10)
    return {k: v.clone() for k, v in m.state_dict().items()}


def _fit(data, tmp_path, **kw):
    cfg = TrainConfig(model="mobilenet_v2", pretrained=True, batch_size=128, augment="none", seed=0, report=False,
                      **kw)
    t = Trainer(cfg, data, run_dir=tmp_path, callbacks=[])
    t.fit()
    return t


def test_imagenet_statistics_are_averaged_for_gray_images(digits32):
    assert digits32.preprocess.channels == 1
    assert digits32.preprocess.mean == pytest.approx((0.449,), abs=1e-6)
    assert digits32.preprocess.std == pytest.approx((0.226,), abs=1e-6)


def test_frozen_phase_trains_the_head_only_and_bn_frozen_keeps_imagenet_statistics(digits32, tmp_path,
                                                                                   pretrained_state):
    t = _fit(digits32, tmp_path, epochs=1, freeze_epochs=1, bn="frozen")
    after = t.model.state_dict()
    head = {"classifier.1.weight", "classifier.1.bias"}
    changed = [k for k in after if not torch.equal(after[k].cpu(), pretrained_state[k]) and k not in head]
    assert changed == []  # every body tensor, running statistics included, is ImageNet's
    # the head did learn
    assert not torch.equal(after["classifier.1.weight"], pretrained_state["classifier.1.weight"])
    assert t.history[0]["phase"] == "head"


def test_bn_train_lets_batchnorm_learn_while_the_convolutions_stay(digits32, tmp_path, pretrained_state):
    t = _fit(digits32, tmp_path, epochs=1, freeze_epochs=1, bn="train")
    after = t.model.state_dict()
    convs = [n + ".weight" for n, m in t.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.equal(after[k], pretrained_state[k]) for k in convs)
    bns = [n for n, m in t.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not torch.equal(after[bns[0] + ".running_mean"], pretrained_state[bns[0] + ".running_mean"])
    assert not torch.equal(after[bns[0] + ".weight"], pretrained_state[bns[0] + ".weight"])


def test_discriminative_learning_rates_rise_geometrically_to_the_head(digits32, tmp_path):
    cfg = TrainConfig(model="mobilenet_v2", pretrained=True, lr=1e-3, lr_mult=100, epochs=2, report=False)
    t = Trainer(cfg, digits32, run_dir=tmp_path, callbacks=[])
    groups = layer_groups(t.model)
    assert len(groups) == len(t.model.stage_names) + 1  # five stages and the head
    assert [n for n, _ in groups[-1]] == ["classifier.1.weight", "classifier.1.bias"]
    peaks = sorted({g["peak_lr"] for g in t.optimizer.param_groups})
    assert peaks[0] == pytest.approx(1e-5) and peaks[-1] == pytest.approx(1e-3)
    ratios = [b / a for a, b in zip(peaks, peaks[1:])]
    assert all(r == pytest.approx(100 ** (1 / 5)) for r in ratios)
    # in the frozen epoch the body's convolutions have no gradient (its BatchNorm does: --bn train)
    assert all(p.requires_grad == (p.ndim == 1) for _, p in groups[0])
    assert all(p.requires_grad for _, p in groups[-1])


def test_resume_across_the_unfreeze_gives_the_same_weights(tmp_path):
    """Cut after the frozen epoch: the resumed run must unfreeze, with the second phase's fresh schedule,
    and end exactly where the uninterrupted one does."""
    cut = 1
    opts = dict(model="mobilenet_v2", pretrained=True, img_size=32, epochs=2, freeze_epochs=1, augment="none",
                batch_size=256, seed=1, quiet=True, report=False)
    full = cnnkit.train("digits", out=str(tmp_path / "full"), **opts)
    with pytest.raises(KeyboardInterrupt):
        cnnkit.train("digits", out=str(tmp_path / "cut"), callbacks=[StopAfter(cut)], **opts)
    resumed = cnnkit.resume(tmp_path / "cut", quiet=True)
    assert resumed["val_acc"] == full["val_acc"]
    a = ckpt.load_state(tmp_path / "full" / ckpt.STATE)["model"]
    b = ckpt.load_state(tmp_path / "cut" / ckpt.STATE)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_pretrained_run_records_its_weights_and_needs_no_weight_file_afterwards(tmp_path, monkeypatch):
    result = cnnkit.train("digits", pretrained=True, epochs=1, freeze_epochs=1, bn="frozen", augment="none",
                          batch_size=256, out=str(tmp_path / "run"), quiet=True, report=False)
    meta = json.loads((tmp_path / "run" / ckpt.META).read_text())
    info = meta["pretrained"]
    assert info["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1" and info["sha256"].startswith("b0353104")
    assert meta["preprocess"]["size"] == [96, 96]  # 8×8 digits upsampled for the pretrained stem
    assert meta["model"]["kwargs"]["small_input"] is False and meta["train"]["lr_mult"] == 100
    assert "categories" not in info  # a new 10-class head: ImageNet's names do not apply
    # the run is self-contained: with no weight file anywhere, it still loads and predicts the same
    import cnnkit.models.pretrained as pt

    monkeypatch.setattr(pt, "WEIGHT_PACKAGES", ())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    p = Predictor.from_run(result["run_dir"])
    rep = cnnkit.evaluate(result["run_dir"], split="val", plot=False)
    assert rep["accuracy"] == pytest.approx(result["val_acc"], abs=1e-4)
    assert p.preprocess.mean == pytest.approx((0.449,), abs=1e-6)
    assert math.isfinite(result["val_acc"]) and result["val_acc"] > 0.3  # one head-only epoch on real digits


@pytest.mark.parametrize("options, message", [
    (dict(freeze_epochs=1), "--freeze-epochs 1 needs --pretrained"),
    (dict(pretrained=True, freeze_epochs=3, epochs=2), "--freeze-epochs 3 is more than --epochs 2"),
    (dict(pretrained=True, lr_mult=0.5), "--lr-mult must be at least 1"),
    (dict(pretrained=True, bn="frozn"), "did you mean 'frozen'"),
    (dict(pretrained=True, model="simplecnn"), "simplecnn has no pretrained weights; models with ImageNet weights"),
    (dict(weights="no/such/file.pth"), "--weights no/such/file.pth: no such file"),
    (dict(pretrained=True, model="resnet18"), "no ImageNet weights for resnet18 on this machine: put "
                                              "resnet18-f37072fd.pth"),
])
def test_bad_fine_tuning_options_are_one_clear_line(tmp_path, monkeypatch, options, message):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))  # no resnet18 file, whatever this machine has
    with pytest.raises(CnnkitError, match=message.replace("(", r"\(")):
        cnnkit.train("digits", out=str(tmp_path / "run"), quiet=True, report=False, **options)
    assert not (tmp_path / "run").exists()
