"""Issue 19, the CLI's part: hostile and careless input never ends in a traceback or a forged line.

- one boundary in `cnnkit.cli.main`: an unexpected exception is one line naming the command and a log file with
  the traceback (exit 1); `--debug` lets it through; out of memory and a full disk get their own lines;
- every flag value refused while parsing, one line naming the flag (exit 2): NaN, inf, negative, too small,
  unusable devices, seeds NumPy cannot take, --out naming a file, a folder or /proc (finding 7);
- sizes that would exhaust memory refused before anything is allocated (finding 8);
- "did you mean" among the command's own flags; colour codes never reach the terminal (finding 17);
- file and class names printed with their control characters escaped (finding 15).
"""
from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

import cnnkit
from cnnkit import api
from cnnkit.cli import main
from cnnkit.errors import CnnkitError


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's --help; errors are returned
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "\x1b" not in err, err
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """api.train / resume / compare replaced: a flag refused must be refused before any of them runs."""
    def refuse(*a, **kw):
        raise AssertionError("the command went on to run")

    for name in ("train", "resume", "compare", "evaluate"):
        monkeypatch.setattr(api, name, refuse)
    import cnnkit.explain.finetune as finetune

    monkeypatch.setattr(finetune, "finetune_report", refuse)


@pytest.fixture
def logs(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "logs"
    monkeypatch.setenv("CNNKIT_LOG_DIR", str(d))
    monkeypatch.delenv("CNNKIT_DEBUG", raising=False)
    return d


def _raise(exc):
    def boom(args):
        raise exc
    return boom


# --- the boundary -------------------------------------------------------------------------------------------
def test_an_unexpected_error_is_one_line_and_a_log_file(capsys, monkeypatch, logs):
    import cnnkit.cli.lessons as lessons

    monkeypatch.setattr(lessons, "run", _raise(ValueError("boom\nsecond line \x1b[31mred")))
    code, out, err = run(capsys, "lessons")
    line = one_line(err)
    assert code == 1 and out == ""
    assert line.startswith("cnnkit lessons: internal error (ValueError: boom\\nsecond line red)")
    assert "please report it with that file" in line
    (log,) = logs.iterdir()
    assert str(log) in line and log.name.endswith("-lessons.log") and f"-{os.getpid()}-" in log.name
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "ValueError: boom" in text and "cnnkit lessons" in text


@pytest.mark.parametrize("argv", [["--debug", "lessons"], ["lessons", "--debug"]])
def test_debug_lets_the_traceback_through(capsys, monkeypatch, logs, argv):
    import cnnkit.cli.lessons as lessons

    monkeypatch.setattr(lessons, "run", _raise(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        main(argv)
    assert not logs.exists()


def test_the_log_falls_back_to_a_temporary_file_and_never_crashes(capsys, monkeypatch, tmp_path):
    import tempfile

    import cnnkit.cli.lessons as lessons

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CNNKIT_LOG_DIR", str(blocker / "logs"))  # cannot be made: a file is in the way
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(lessons, "run", _raise(KeyError("k")))
    code, _, err = run(capsys, "lessons")
    line = one_line(err)
    (log,) = tmp_path.glob("cnnkit-*.log")
    assert code == 1 and str(log) in line and "KeyError" in log.read_text()

    def no_temp(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", no_temp)
    code, _, err = run(capsys, "lessons")
    line = one_line(err)
    assert code == 1 and "internal error (KeyError" in line and "could not be written" in line
    assert "--debug" in line


def test_two_errors_in_one_second_get_two_logs(capsys, monkeypatch, logs):
    import cnnkit.cli.lessons as lessons

    monkeypatch.setattr(lessons, "run", _raise(ValueError("boom")))
    monkeypatch.setattr("time.strftime", lambda fmt, *a: "20260101-000000" if "%Y%m%d" in fmt else "then")
    for _ in range(3):
        assert run(capsys, "lessons")[0] == 1
    assert len(list(logs.iterdir())) == 3


def test_the_log_keeps_a_token_out(tmp_path, monkeypatch):
    from cnnkit.cli import write_log

    monkeypatch.setenv("CNNKIT_LOG_DIR", str(tmp_path))
    try:
        raise RuntimeError("x")
    except RuntimeError as e:
        path, why = write_log("serve", e, ["serve", "run", "--token", "s3cret-token", "--token=other-secret"])
    text = Path(path).read_text()
    assert why is None and "s3cret" not in text and "other-secret" not in text and "<redacted>" in text


def test_out_of_memory_has_its_own_line(capsys, monkeypatch, logs):
    import cnnkit.cli.lessons as lessons

    monkeypatch.setattr(lessons, "run", _raise(MemoryError()))
    code, _, err = run(capsys, "lessons")
    line = one_line(err)
    assert code == 1 and line.startswith("cnnkit lessons: out of memory while running lessons; use a smaller "
                                         "--img-size or --batch-size")
    monkeypatch.setattr(lessons, "run", _raise(RuntimeError("[enforce fail at alloc_cpu.cpp:117] "
                                                            "DefaultCPUAllocator: can't allocate memory: you tried "
                                                            "to allocate 320000000000 bytes.")))
    code, _, err = run(capsys, "lessons")
    assert code == 1 and "out of memory" in one_line(err)


def test_a_full_disk_has_its_own_line(capsys, monkeypatch, logs):
    import cnnkit.cli.lessons as lessons

    full = OSError(errno.ENOSPC, "No space left on device", "/mnt/small/run/model.safetensors")
    monkeypatch.setattr(lessons, "run", _raise(full))
    code, _, err = run(capsys, "lessons")
    assert code == 2 and one_line(err) == ("cnnkit lessons: no space left on the device holding "
                                           "/mnt/small/run/model.safetensors; what was saved before is intact; "
                                           "free space and rerun")

    def wrapped(args):  # what torch.save says: a RuntimeError raised while handling the OSError
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(lessons, "run", wrapped)
    code, _, err = run(capsys, "lessons")
    assert code == 2 and "no space left on the device holding" in one_line(err) and "intact" in err


def test_torch_saves_full_disk_is_recognised(capsys, monkeypatch, logs, tmp_path):
    """torch.save on a full disk says only "[enforce fail at inline_container.cc] unexpected pos": the disk of the
    command's output is asked."""
    import shutil
    from collections import namedtuple

    def save_fails(*a, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(api, "resume", save_fails)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 0))
    code, _, err = run(capsys, "train", "--resume", tmp_path)
    assert code == 2 and one_line(err) == (f"cnnkit train: no space left on the device holding {tmp_path}; what was "
                                           "saved before is intact; free space and rerun")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**9, 10**11))  # space: a bug, reported
    code, _, err = run(capsys, "train", "--resume", tmp_path)
    assert code == 1 and "internal error (RuntimeError" in one_line(err)


def test_an_expected_error_stays_its_own_line_without_control_characters(capsys, monkeypatch, logs):
    import cnnkit.cli.lessons as lessons

    monkeypatch.setattr(lessons, "run", _raise(CnnkitError("x.pth: refused (\x1b[1mdo those steps\x1b[0m. \n\t(1) more)")))
    code, _, err = run(capsys, "lessons")
    assert code == 2 and one_line(err) == "cnnkit: error: x.pth: refused (do those steps. \\n\\t(1) more)"
    assert not logs.exists()


# --- finding 7: flags -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["train", "--lr", "nan"], "--lr must be a finite number, got nan"),
    (["train", "--lr", "inf"], "--lr must be a finite number, got inf"),
    (["train", "--lr", "-1"], "--lr must be positive, got -1.0"),
    (["train", "--lr", "0"], "--lr must be positive, got 0.0"),
    (["train", "--momentum", "nan"], "--momentum must be a finite number"),
    (["train", "--weight-decay=-inf"], "--weight-decay must be a finite number"),
    (["train", "--label-smoothing", "nan"], "--label-smoothing must be a finite number"),
    (["train", "--img-size", "-5"], "--img-size must be at least 4 pixels, got -5"),
    (["train", "--img-size", "2"], "--img-size must be at least 4 pixels, got 2"),
    (["train", "--img-size", "0"], "--img-size must be at least 4 pixels, got 0"),
    (["train", "--device", "meta"], "--device: 'meta' is not a device cnnkit can use; valid: auto, cpu, cuda, "
                                    "cuda:N, mps"),
    (["train", "--device", "cpu:1"], "valid: auto, cpu, cuda, cuda:N, mps"),
    (["train", "--device", "tpu"], "valid: auto, cpu, cuda, cuda:N, mps"),
    (["train", "--seed", "99999999999999999999"], "--seed must be 0 to 4294967295"),
    (["train", "--seed", "-1"], "--seed must be 0 to 4294967295"),
    (["train", "--out", "/proc/cnnkit-run"], "/proc/cnnkit-run is in /proc, a virtual file system"),
    (["train", "--out", "/proc/self/status"], "is in /proc"),
    (["scratch-train", "--lr", "nan"], "--lr must be a finite number"),
    (["scratch-train", "--seed", "99999999999999999999"], "--seed must be 0 to 4294967295"),
    (["compare", "--seed", "4294967296"], "--seed must be 0 to 4294967295"),
    (["compare", "--img-size", "0"], "--img-size must be at least 4"),
    (["compare", "--epochs", "0"], "--epochs must be at least 1"),
    (["finetune-report", "--data", "digits", "--out", "o", "--img-size", "0"], "--img-size must be at least 4"),
    (["finetune-report", "--data", "digits", "--out", "o", "--seed", "-3"], "--seed must be 0 to"),
    (["evaluate", "RUN", "--top-k", "0"], "--top-k must be at least 1, got 0"),
    (["predict", "RUN", "x.png", "--top-k", "nan"], "argument --top-k: invalid int value: 'nan'"),
    (["export", "RUN", "--out", "/proc/model.onnx"], "/proc/model.onnx is in /proc"),
    (["predict", "RUN", "x.png", "--save-csv", "/proc/self/p.csv"], "--save-csv: /proc/self/p.csv is in /proc"),
    (["predict", "RUN", "x.png", "--save-csv", "/dev/null"], "--save-csv: /dev/null is in /dev"),
    (["convolve", "camera", "--kernel", "box", "--out", "/sys/x.png"], "/sys/x.png is in /sys"),
    (["convolve", "camera", "--kernel", "box", "--stride", "-1", "--out", "x.png"], "--stride must be at least 1"),
    (["serve", "RUN", "--timeout", "inf"], "--timeout must be a finite number"),
    (["serve", "RUN", "--timeout", "nan"], "--timeout must be a finite number"),
    (["serve", "RUN", "--batch-delay", "nan"], "--batch-delay must be a finite number"),
    (["serve", "RUN", "--port", "99999999999999999999"], "--port must be 0 to 65535"),
    (["summary", "simplecnn", "--depth", "-1"], "--depth must be at least 0"),
    (["summary", "simplecnn", "--compare-fc", "-2"], "--compare-fc must be at least 1"),
])
def test_bad_flag_values_are_one_line(capsys, no_training, tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    line = one_line(err)
    assert code == 2 and says in line, line
    assert line.startswith(f"cnnkit {argv[0]}: error: ")
    assert not (tmp_path / "o").exists()


def test_out_naming_an_existing_file_or_folder(capsys, no_training, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    for argv in (["train", "--out", f], ["compare", "--out", f], ["finetune-report", "--data", "digits", "--out", f]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and f"--out: {f} is an existing file, not a folder" in one_line(err)
    assert f.read_text() == "keep me"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    code, _, err = run(capsys, "export", run_dir, "--out", run_dir)  # finding 7: export --out RUN_DIR
    assert code == 2 and f"--out: {run_dir} is an existing folder; give the name of a file" in one_line(err)
    code, _, err = run(capsys, "convolve", "camera", "--kernel", "box", "--out", tmp_path)
    assert code == 2 and "is an existing folder" in one_line(err)
    code, _, err = run(capsys, "convolve", "camera", "--kernel", "box", "--out", f / "x.png")
    assert code == 2 and f"{f} is a file, so nothing can be made under it" in one_line(err)


def test_img_size_below_the_models_minimum_names_it(capsys, no_training):
    code, _, err = run(capsys, "train", "--img-size", "5", "--model", "fastcnn")
    line = one_line(err)
    assert code == 2 and "--img-size 5 is too small for fastcnn" in line and "another --model" in line
    code, _, err = run(capsys, "train", "--img-size", "12", "--model", "alexnet", "--model-kwargs",
                       '{"small_input": true}')
    assert code == 2 and "--img-size 12 is too small for alexnet: it needs at least 15x15" in one_line(err)


@pytest.mark.parametrize("argv, says", [
    (["summary", "simplecnn", "--input", "1x1x1"], "--input 1x1x1: simplecnn needs inputs of at least 4x4"),
    (["summary", "fastcnn", "--input", "1x5x5"], "--input 1x5x5: fastcnn with 3 blocks halves 5x5 inputs"),
])
def test_summary_input_too_small_for_the_model(capsys, argv, says):
    code, _, err = run(capsys, *argv)
    assert code == 2 and says in one_line(err)


def test_good_values_still_reach_training(capsys, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(api, "train", lambda **kw: seen.append(kw) or {"run_dir": "r", "val_acc": 0.5})
    code, out, err = run(capsys, "train", "--lr", "1e-3", "--seed", str(2**32 - 1), "--device", "CPU",
                         "--img-size", "8", "--momentum", "0", "--out", tmp_path / "new" / "run")
    assert code == 0, err
    (kw,) = seen
    assert kw["lr"] == 1e-3 and kw["seed"] == 2**32 - 1 and kw["device"] == "cpu" and kw["img_size"] == 8
    assert kw["out"] == str(tmp_path / "new" / "run")


def test_devices_this_machine_lacks(capsys, no_training, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "train", "--device", "cuda:0")
    assert code == 2 and "--device: cuda:0: no CUDA GPU is available here; use cpu" in one_line(err)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, _, err = run(capsys, "train", "--device", "cuda:7")
    assert code == 2 and "this machine has 2 CUDA device(s), cuda:0 to cuda:1" in one_line(err)


# --- finding 8: sizes that would exhaust memory ---------------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["train", "--img-size", "100000", "--preset", "fast"], "--img-size"),
    (["compare", "--img-size", "100000"], "--img-size 100000"),
    (["finetune-report", "--data", "digits", "--out", "o", "--img-size", "100000"], "--img-size 100000"),
    (["convolve", "camera", "--kernel", "sobel_x", "--padding", "100000", "--out", "x.png"],
     "--padding 100000 with --stride 1 on this 512×512 image needs"),
    (["summary", "lenet5", "--input", "1x100000x100000"], "--input 1x100000x100000 needs"),
    (["summary", "mlp", "--num-classes", "100000000000"], "--num-classes 100000000000 needs"),
    (["summary", "simplecnn", "--input", "65536x100000x1"], "--input 65536x100000x1 needs"),
])
def test_sizes_that_would_exhaust_memory_are_refused_first(capsys, no_training, tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    line = one_line(err)
    assert code == 2 and says in line and "100000" in line, line
    assert "of memory, more than the" in line or "--img-size must be at most" in line  # (train: engine's limit)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_train_img_size_memory_guard(capsys, no_training, monkeypatch):
    monkeypatch.setenv("CNNKIT_MAX_BYTES", str(2**20))  # 1 MiB: a batch of 64 64x64 images needs more
    code, _, err = run(capsys, "train", "--img-size", "64")
    line = one_line(err)
    assert code == 2 and "--img-size 64 (a batch of 64 64x64 images) needs" in line and "smaller --img-size" in line
    code, _, err = run(capsys, "train", "--img-size", "64", "--batch-size", "1000")
    assert code == 2 and "a batch of 1000 64x64 images" in one_line(err)


def test_the_memory_estimates():
    from cnnkit.cli import _common
    limit = _common.memory_limit()
    assert 2**28 <= limit <= 2**50
    _common.check_img_size(224, batch=64)  # an ordinary size passes
    from cnnkit.cli.convolve import conv_bytes

    assert conv_bytes((512, 512), (3, 3), 1, 100000) > 298 * 2**30  # the 298 GiB (the padded image alone)
    assert conv_bytes((512, 512), (3, 3), 1, "same") < 2**30
    assert _common.gib(298 * 2**30) == "298 GiB"


def test_the_memory_cap_can_be_set(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNKIT_MAX_BYTES", "1000000")  # 1 MB: camera with padding 100 needs more
    code, _, err = run(capsys, "convolve", "camera", "--kernel", "box", "--padding", "100", "--out", tmp_path / "x.png")
    assert code == 2 and "--padding 100" in one_line(err) and not (tmp_path / "x.png").exists()


# --- finding 17: misleading messages --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, hint, not_hint", [
    (["train", "--lerning-rate", "0.1"], "did you mean '--lr' for '--lerning-rate'?", "--kernel"),
    (["train", "--learning-rate", "0.1"], "did you mean '--lr'", "--kernel"),
    (["train", "--img_size", "8"], "did you mean '--img-size'", None),
    (["train", "--imagesize", "8"], "did you mean '--img-size'", None),
    (["summary", "simplecnn", "--jsn"], "did you mean '--json'", None),
    (["predict", "RUN", "x.png", "--lerning-rate", "1"], None, "--kernel"),  # predict has no --lr: no hint
])
def test_did_you_mean_looks_in_the_commands_own_flags(capsys, no_training, argv, hint, not_hint):
    code, _, err = run(capsys, *argv)
    line = one_line(err)
    assert code == 2 and "unrecognized arguments" in line
    if hint:
        assert hint in line
    else:
        assert "did you mean" not in line
    if not_hint:
        assert not_hint not in line


def test_a_pickle_refusal_has_no_colour_codes(capsys, tmp_path):
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": Evil()}, path)
    code, out, err = run(capsys, "predict", "simplecnn", "--weights", path, "camera")
    line = one_line(err)  # no '\x1b[1m' from PyTorch's message
    assert code == 2 and str(path) in line and "refused" in line
    assert not (tmp_path / "pwned").exists()


def test_evaluate_does_not_suggest_a_flag_it_lacks(capsys, monkeypatch):
    from cnnkit.data.images import BadImage, BadImagesError

    def bad(*a, **kw):  # what the data layer says today when the run's own images became unreadable
        raise BadImagesError([BadImage("photos/cat/1.png", "truncated")],
                             " Fix or remove them, or pass --on-bad-image skip to leave them out.")

    monkeypatch.setattr(api, "evaluate", bad)
    code, _, err = run(capsys, "evaluate", "RUN")
    line = one_line(err)
    assert code == 2 and "photos/cat/1.png" in line and "--on-bad-image" not in line and "Fix or" in line


# --- finding 15: printed names cannot forge or split lines ----------------------------------------------------
def test_printable():
    from cnnkit.cli import _common
    p = _common.printable
    assert p("evil\ncnnkit: fake line.png") == "evil\\ncnnkit: fake line.png"
    assert p("a\rb\tc\x1b[2Jd\x00e\x7f\x85f\u2028g\u202eh") == "a\\rb\\tc\\x1b[2Jd\\x00e\\x7f\\x85f\\u2028g\\u202eh"
    assert p("caf\u00e9/\u732b.png") == "caf\u00e9/\u732b.png"  # printable text is left alone
    assert p(os.fsdecode(b"bad\xffname.png")) == "bad\\udcffname.png"  # undecodable bytes: no UnicodeEncodeError
    assert _common.one_line("\x1b[1mbold\x1b[0m\nnext") == "bold\\nnext"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile-cli") / "run"
    cnnkit.train("digits", epochs=1, img_size=8, out=str(out), quiet=True, report=False)
    return out


def test_a_file_name_cannot_forge_a_line(capsys, tiny_run, tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    evil = folder / "evil\ncnnkit: fake line.png"
    Image.new("L", (8, 8), 128).save(evil, format="PNG")
    code, out, err = run(capsys, "predict", tiny_run, evil, "--top-k", "1")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(folder) + "/evil\\ncnnkit: fake line.png: ")
    code, out, err = run(capsys, "predict", tiny_run, folder / "missing\ncnnkit: fake.png")
    assert code == 2 and "missing\\ncnnkit: fake.png" in one_line(err)


def test_a_class_name_cannot_split_a_line(capsys, tiny_run, tmp_path):
    import shutil

    from PIL import Image

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    meta = json.loads((run_dir / "model.json").read_text())
    meta["classes"] = [f"c{i}\nforged {i}" for i in range(len(meta["classes"]))]
    (run_dir / "model.json").write_text(json.dumps(meta))
    img = tmp_path / "x.png"
    Image.new("L", (8, 8), 128).save(img)
    code, out, err = run(capsys, "predict", run_dir, img, "--top-k", "10")
    if code == 2 and "classes" in err:  # a model.json validator may refuse such names outright: also safe
        one_line(err)
        return
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 and "\\nforged" in out


# --- found by the independent re-try ----------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--lr", "1e308"], "--lr must be at most 10"),  # overflowed float32 inside the optimizer
    (["--lr", "1e39", "--optimizer", "sgd"], "--lr must be at most 10"),
    (["--momentum", "2"], "--momentum must be at most 1"),
    (["--model-kwargs", '{"num_classes": 1000000000}'], "--model-kwargs may not set num_classes"),
    (["--model-kwargs", '{"input_size": [100000, 100000]}'], "--model-kwargs may not set input_size"),
    (["--model-kwargs", '{"in_channels": 3}'], "--model-kwargs may not set in_channels"),
    (["--model", "lenet5", "--model-kwargs", '{"dropout": 1e308}'], "--model-kwargs: lenet5 takes no argument 'dropout'"),
    (["--model-kwargs", '{"small_input": "x"}'], "'small_input' must be true or false"),
    (["--model-kwargs", '{"small_input": [[1]]}'], "must be a plain value"),
])
def test_values_training_cannot_use_are_one_line(args, needle, tmp_path, capsys):
    rc = main(["train", "--data", "digits", "--img-size", "8", "--epochs", "1", "--no-report",
               "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_nothing_writes_over_a_runs_files_but_cnnkit(digits_run, tmp_path, capsys):
    """Found by the independent re-try: convolve replaced another run's plot, and explain wrote into a run."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    plot = next(n for n in before if n.endswith(".png"))
    for argv, needle in ((["convolve", "astronaut", "--kernel", "sobel_x", "--out", str(run / plot)], "would overwrite a file of the run"),
                         (["predict", str(run), "camera", "--save-csv", str(run / "metrics.csv")], "would overwrite a file of the run"),
                         (["explain", str(run), "camera", "--out", str(run)], "is a run directory")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("argv, needle", [
    (["train", "--data", "digits:foo"], "digits is built in and takes no path"),  # was silently ignored
    (["train", "--data", "/dev/zero"], "is a file, not a folder"),
    (["convolve", "astronaut", "--kernel", "[[1e308,1e308],[1e308,1e308]]", "--out", "{tmp}/x.png"],
     "the feature map overflows"),  # printed "max inf, std nan" with exit 0
])
def test_silently_wrong_inputs_are_refused(argv, needle, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("widths", ["[5000]", "[1.5, 2, 3]", "[true, true, true]", "[0, 0, 0]", "[1000000000, 2, 3]"])
def test_model_kwargs_that_no_run_could_save_are_refused_before_training(widths, tmp_path, capsys):
    """Found by the second re-try: these trained to the end, then model.json refused them and the model was lost
    (or the process ran out of memory building 10^9 channels)."""
    out = tmp_path / "r"
    rc = main(["train", "--data", "digits", "--img-size", "8", "--epochs", "1", "--no-report", "--model", "fastcnn",
               "--model-kwargs", f'{{"widths": {widths}}}', "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--model-kwargs: fastcnn widths must be" in err and len(err.strip().splitlines()) == 1, err
    assert not (out / "metrics.csv").exists()  # refused before a single step
