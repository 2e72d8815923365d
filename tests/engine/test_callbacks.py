"""Callbacks: TensorBoard's event file read back after a real run; progress the same in every command
(a bar on a terminal, plain lines without '\\r' in a pipe)."""
import io

import pytest

import cnnkit
from cnnkit._progress import progress
from cnnkit.engine.callbacks import Callback, ProgressBar
from cnnkit.errors import CnnkitError


class CountSteps(Callback):
    steps = 0

    def after_batch(self):
        self.steps += 1


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One 1-epoch digits run, shared: its TensorBoard events and its progress lines (a pipe, interval 0)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNKIT_PROGRESS_INTERVAL", "0")
    log, counter = io.StringIO(), CountSteps()
    try:
        result = cnnkit.train("digits", epochs=1, out=str(tmp_path_factory.mktemp("tb") / "run"), quiet=True,
                              report=False, callbacks=[ProgressBar(stream=log), counter])
    finally:
        mp.undo()
    return result, counter.steps, log.getvalue()


def test_tensorboard_logs_every_step_and_every_epoch(digits_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, steps, _ = digits_run
    acc = EventAccumulator(result["run_dir"], size_guidance={"scalars": 0})
    acc.Reload()
    assert steps == 23  # 1,437 training images in batches of 64
    for tag in ("train/loss", "train/lr"):
        assert [e.step for e in acc.Scalars(tag)] == list(range(1, steps + 1)), tag
    assert len({e.value for e in acc.Scalars("train/lr")}) > steps // 2  # the schedule, step by step
    for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr", "speed/images_per_s"):
        (point,) = acc.Scalars(tag)
        assert point.step == steps, tag
    assert acc.Scalars("accuracy/val")[0].value == pytest.approx(result["val_acc"], abs=1e-6)
    assert acc.Scalars("best/val_loss")[0].value == pytest.approx(result["val_loss"], abs=1e-6)
    assert "images/per_s" not in acc.Tags()["scalars"]
    (grid,) = acc.Images("samples/train")
    assert grid.width > 8 * 4 and grid.height > 8  # 16 digits of 8×8 in a grid
    hparams = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert b"weight_decay" in hparams["_hparams_/session_start_info"]


def test_progress_in_a_pipe_is_plain_lines(digits_run):
    _, steps, log = digits_run
    assert "\r" not in log
    lines = [l for l in log.splitlines() if l.startswith("epoch 1/1: ")]
    assert len(lines) == steps and lines[0].startswith(f"epoch 1/1: 1/{steps} batches (4%), loss ")
    assert "batches/s, ETA" in lines[0] and "images/s" in lines[0]
    assert any(l.startswith("epoch   1/1  train_loss") for l in log.splitlines())  # the epoch's summary


def test_progress_helper_lines_bar_and_interval(monkeypatch):
    out = io.StringIO()
    with progress(3, "build cache", "images", stream=out, interval=0) as p:
        for _ in range(3):
            p.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("build cache: 3/3 images (100%), ") and "\r" not in out.getvalue()

    quiet = io.StringIO()  # the default interval, 10 s: nothing within a fast loop
    monkeypatch.delenv("CNNKIT_PROGRESS_INTERVAL", raising=False)
    p = progress(None, "scan", "files", stream=quiet)
    p.update(5)
    p.close()
    assert quiet.getvalue() == ""

    monkeypatch.setenv("CNNKIT_PROGRESS_INTERVAL", "0")
    unknown = io.StringIO()
    progress(None, "scan", "files", stream=unknown).update(5)
    assert unknown.getvalue().startswith("scan: 5 files, ") and "ETA" not in unknown.getvalue()

    bar = io.StringIO()  # forced to be a terminal: tqdm's bar, which redraws with '\r'
    with progress(3, "x", "steps", stream=bar, tty=True) as p:
        p.update(3, loss=0.5)
    assert bar.getvalue().startswith("\rx:   0%|") and "steps/s" in bar.getvalue()

    monkeypatch.setenv("CNNKIT_PROGRESS_INTERVAL", "soon")
    with pytest.raises(CnnkitError, match="CNNKIT_PROGRESS_INTERVAL='soon' is not a number of seconds"):
        progress(3, "x", "steps", stream=io.StringIO())


def test_scratch_train_progress_has_no_carriage_returns(monkeypatch, capsys):
    from cnnkit.ops.scratch import train_digits

    monkeypatch.setenv("CNNKIT_PROGRESS_INTERVAL", "0")
    train_digits(epochs=1, batch_size=256, progress=True)
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 6 and lines[0].startswith("scratch-train: 1/6 steps (16%), epoch 1, loss ")
