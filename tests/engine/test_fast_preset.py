"""`--preset fast` learns: its full 4-epoch schedule on a slice of the real Fashion-MNIST files.

The timed figure (92% t10k within a minute on 2 cores, on all 50,000 images) is bench/train_speed.py's job;
this test checks the preset end to end, at a size CI can afford, against an accuracy it must reach.
"""
import pytest

import cnnkit
from idx_files import read_idx_gz, write_idx


@pytest.mark.slow
def test_fast_preset_trains_fastcnn_to_a_good_accuracy(tmp_path, fmnist_dir):
    data = tmp_path / "fmnist-8k"
    data.mkdir()
    for name, n in (("train-images-idx3-ubyte", 8000), ("train-labels-idx1-ubyte", 8000),
                    ("t10k-images-idx3-ubyte", 2000), ("t10k-labels-idx1-ubyte", 2000)):
        write_idx(data / f"{name}.gz", read_idx_gz(fmnist_dir / f"{name}.gz")[:n], gz=True)
    result = cnnkit.train(f"fashion-mnist:{data}", preset="fast", out=str(tmp_path / "run"), quiet=True,
                          report=False)
    assert (result["model"], result["epochs"]) == ("fastcnn", 4)
    metrics = cnnkit.evaluate(result["run_dir"], split="test", plot=False)
    assert metrics["accuracy"] >= 0.87, metrics["accuracy"]  # measured 0.8875 (seed 0, 2,000 t10k images)


def test_the_fast_preset_builds_its_report_in_a_process_of_its_own(tmp_path, capsys):
    """The run is saved and the call returns before report.html exists; the report process the output names
    then writes it, and its output goes to RUN/report.log."""
    import os
    import time

    result = cnnkit.train("digits", preset="fast", epochs=1, out=str(tmp_path / "run"))
    out = capsys.readouterr().out
    pid = result["report_pid"]
    assert f"report.html: being built in the background (pid {pid}" in out
    assert (tmp_path / "run" / "model.safetensors").is_file() and result["report"] == str(tmp_path / "run" / "report.html")
    deadline = time.time() + 240
    while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "run" / "report.html").stat().st_size > 10_000
    assert "report: " in (tmp_path / "run" / "report.log").read_text()


def test_report_background_is_the_fast_presets_alone_and_a_flag_decides(tmp_path):
    from cnnkit.engine.config import TrainConfig, resolve

    assert resolve(TrainConfig(preset="fast"), n_train=1000, size=(28, 28)).report_background is True
    assert resolve(TrainConfig(), n_train=1000, size=(28, 28)).report_background is False
    assert resolve(TrainConfig(preset="fast", report_background=False), n_train=1000, size=(28, 28)).report_background is False
    result = cnnkit.train("digits", preset="fast", epochs=1, out=str(tmp_path / "run"), quiet=True,
                          report_background=False)
    assert "report_pid" not in result and (tmp_path / "run" / "report.html").is_file()


def test_a_report_process_that_cannot_start_leaves_the_run_whole(tmp_path, capsys, monkeypatch):
    """No process left to start (or no room for report.log): one warning line saying how to write the report
    later; the call returns its result and the run is saved."""
    import subprocess

    def refuse(*a, **kw):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    result = cnnkit.train("digits", preset="fast", epochs=1, out=str(tmp_path / "run"))
    out = capsys.readouterr()
    assert "warning: report.html not started (Resource temporarily unavailable)" in out.out + out.err
    assert f"cnnkit report {tmp_path / 'run'} writes it later" in out.out + out.err
    assert "report_pid" not in result and (tmp_path / "run" / "model.safetensors").is_file()
