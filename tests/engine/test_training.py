"""Training end to end on real data: accuracy, exact resume, NaN handling, safe checkpoints, callbacks."""
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnkit
from cnnkit.engine import Callback, TrainingDiverged
from cnnkit.run import format as ckpt
from cnnkit.errors import CnnkitError


def test_digits_with_defaults_reaches_98_percent(tmp_path):
    result = cnnkit.train("digits", out=str(tmp_path / "run"), quiet=True)
    assert result["val_acc"] >= 0.98, result
    run = Path(result["run_dir"])
    for name in ("model.safetensors", "model.json", "metrics.csv", "train_state.pt", "report.html"):
        assert (run / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())
    meta = json.loads((run / "model.json").read_text())
    assert meta["model"]["name"] == "simplecnn" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["preprocess"]["channels"] == 1 and meta["preprocess"]["size"] == [8, 8]
    assert meta["format"] == "cnnkit-run/2" and (run / "split.json").is_file()
    assert meta["metrics"]["val_acc"] == result["val_acc"] and "torch" in meta["versions"]
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss") and len(rows) == 1 + result["epochs"]
    # the saved best model reproduces the reported accuracy
    rep = cnnkit.evaluate(run, split="val")
    assert rep["accuracy"] == pytest.approx(result["val_acc"], abs=1e-4)


class StopAfter(Callback):
    """Simulates a run killed right after epoch k's checkpoint."""

    order = 20

    def __init__(self, k):
        self.k = k

    def after_epoch(self):
        if self.trainer.epoch == self.k:
            raise KeyboardInterrupt


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    opts = dict(epochs=4, seed=3, quiet=True, model="simplecnn", report=False)
    full = cnnkit.train("digits", out=str(tmp_path / "full"), **opts)
    with pytest.raises(KeyboardInterrupt):
        cnnkit.train("digits", out=str(tmp_path / "cut"), callbacks=[StopAfter(2)], **opts)
    state = ckpt.load_state(tmp_path / "cut" / "train_state.pt")
    assert state["epoch"] == 2
    resumed = cnnkit.resume(tmp_path / "cut", quiet=True)
    assert resumed["epochs"] == 4 and resumed["val_acc"] == full["val_acc"]
    a = torch.load(tmp_path / "full" / "train_state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "train_state.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fa, fb = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    # the same history, epoch for epoch (timings aside)
    rows = lambda run: [line.split(",")[:6] for line in (tmp_path / run / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert rows("full") == rows("cut") and len(rows("cut")) == 5


class Poison(Callback):
    """Makes the loss NaN from epoch 2 on."""

    def before_batch(self):
        if self.trainer.epoch == 2:
            with torch.no_grad():
                self.trainer.model.fc2.bias.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, batch 1.*best checkpoint \(epoch 1"):
        cnnkit.train("digits", out=str(run), epochs=3, quiet=True, report=False, callbacks=[Poison()])
    weights = load_file(str(run / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert json.loads((run / "model.json").read_text())["metrics"]["best_epoch"] == 1
    cnnkit.load_model(run).predict([torch.zeros(1, 8, 8, dtype=torch.uint8).numpy()])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cnnkit-pwned-state",))


def test_crafted_train_state_is_refused_without_running_code(tmp_path):
    run = tmp_path / "run"
    cnnkit.train("digits", out=str(run), epochs=1, quiet=True, report=False)
    marker = Path("/tmp/cnnkit-pwned-state")
    marker.unlink(missing_ok=True)
    with open(run / "train_state.pt", "wb") as f:
        pickle.dump({"epoch": 0, "payload": _Evil()}, f)
    with pytest.raises(CnnkitError, match="refusing to load .*train_state.pt"):
        cnnkit.resume(run, quiet=True)
    assert not marker.exists()
    # torch.save's zip format with a code-running object inside is refused the same way
    torch.save({"epoch": 0, "payload": _Evil()}, run / "train_state.pt")
    with pytest.raises(CnnkitError, match="refusing to load"):
        cnnkit.resume(run, quiet=True)
    assert not marker.exists()


def test_misspelt_event_fails_at_class_definition():
    with pytest.raises(TypeError, match="Did you mean 'after_epoch'"):
        class Typo(Callback):  # noqa: F841
            def after_epcoh(self):
                pass


def test_early_stopping(tmp_path):
    class Flat(Callback):  # no improvement after epoch 1
        order = -1

        def after_train_epoch(self):
            if self.trainer.epoch > 1:
                self.trainer.best_val_acc = 2.0

    r = cnnkit.train("digits", out=str(tmp_path / "r"), epochs=10, patience=2, quiet=True, report=False,
                     callbacks=[Flat()])
    assert r["epochs"] == 3 and "early stop" in r["stopped"]  # best at 1, then 2 flat epochs


def test_existing_run_is_not_overwritten(tmp_path):
    cnnkit.train("digits", out=str(tmp_path / "r"), epochs=1, quiet=True, report=False)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(CnnkitError, match="already holds a run"):
        cnnkit.train("digits", out=str(tmp_path / "r"), epochs=1, quiet=True)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before


def test_bad_options_are_named():
    with pytest.raises(CnnkitError, match="did you mean 'epochs'"):
        cnnkit.train("digits", epoch=3)
    with pytest.raises(CnnkitError, match="Did you mean 'resnet18'"):
        cnnkit.train("digits", model="resnet81")
    with pytest.raises(CnnkitError, match="--lr must be positive"):
        cnnkit.train("digits", lr=-1.0, quiet=True)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    from cnnkit._io import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "f.json", "old")

    def broken(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_model_json_pins_the_architecture_and_a_mismatch_is_named(tmp_path):
    """model.json keeps every builder argument (defaults too), so a later change of a default cannot change
    what an old run loads as; weights of another shape fail with one line, not a traceback."""
    run = tmp_path / "run"
    cnnkit.train("digits", model="fastcnn", epochs=1, out=str(run), quiet=True, report=False)
    meta = json.loads((run / "model.json").read_text())
    kwargs = meta["model"]["kwargs"]
    assert kwargs["widths"] == [24, 32, 128] and kwargs["dropout"] == 0.1 and kwargs["stem_stride"] == 2
    assert cnnkit.load_model(run).model.block3[0].out_channels == 128
    kwargs["widths"] = [24, 48, 96]  # as if the weights came from another architecture
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CnnkitError, match=r"does not match the architecture in model.json \(size mismatch for block2"):
        cnnkit.load_model(run)
