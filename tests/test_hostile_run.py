"""A run directory is data from elsewhere (issue 19): every file in it is validated before use, a write never
loses what was saved before (a full disk included), and nothing in it names files to read without the user
saying so. Each malformed input gets its own one-line message: never a traceback, never a silently wrong answer."""
import csv
import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit import _io
from cnnkit.cli import main
from cnnkit.engine import Callback
from cnnkit.errors import CnnkitError
from cnnkit.run import Predictor
from cnnkit.run import format as fmt


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """One tiny trained run for the module (simplecnn on 8×8 digits, 1 epoch); tests change copies of it."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    cnnkit.train("digits", img_size=8, epochs=1, out=str(out), quiet=True, report=False)
    return out


@pytest.fixture()
def run(base_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base_run, dst)
    return dst


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    from sklearn.datasets import load_digits

    path = tmp_path_factory.mktemp("img") / "eight.png"
    d = load_digits()
    Image.fromarray(np.uint8(d.images[8] * 255 / 16)).save(path)
    return str(path)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    return code, out, err


def refused(capsys, *argv) -> str:
    """The command ends with exit 2 and exactly one line, `cnnkit: error: …`; that line is returned."""
    code, out, err = cli(capsys, *argv)
    assert code == 2, (code, out, err)
    assert err.startswith("cnnkit: error: ") and err.count("\n") == 1, err
    return err


def _edit_meta(run: Path, change) -> Path:
    meta = json.loads((run / fmt.META).read_text())
    change(meta)
    (run / fmt.META).write_text(json.dumps(meta))
    return run


def _edit_state(run: Path, change) -> Path:
    state = torch.load(run / fmt.STATE, weights_only=True)
    change(state)
    torch.save(state, run / fmt.STATE)
    return run


def _files(folder: Path) -> dict[str, bytes]:
    """The run's saved model, state and split (metrics.csv and the TensorBoard events are logs, written first)."""
    return {n: (folder / n).read_bytes() for n in (fmt.WEIGHTS, fmt.META, fmt.STATE, fmt.SPLIT)}


# --- finding 4: a full disk ----------------------------------------------------------------------------------
ENOSPC_RAISERS = {
    # what each writer raises on a full disk: torch.save wraps the OSError in a RuntimeError of its own words
    "torch.save": lambda: _chained(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 "
                                                "vs 534"), OSError(errno.ENOSPC, "No space left on device")),
    "safetensors": lambda: __import__("safetensors").SafetensorError(
        "Error while serializing: I/O error: No space left on device (os error 28)"),
    "open().write": lambda: OSError(errno.ENOSPC, "No space left on device"),
}


def _chained(exc: BaseException, context: BaseException) -> BaseException:
    exc.__context__ = context
    return exc


@pytest.mark.parametrize("kind", sorted(ENOSPC_RAISERS))
def test_a_full_disk_is_an_enospc_error_and_keeps_the_old_file(tmp_path, kind):
    path = _io.atomic_write_text(tmp_path / "model.safetensors", "old")

    def write(tmp):
        Path(tmp).write_bytes(b"half")
        raise ENOSPC_RAISERS[kind]()

    with pytest.raises(OSError) as e:
        _io.atomic_write(path, write)
    assert isinstance(e.value, CnnkitError) and e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert str(e.value).startswith(f"no space left on the device holding {tmp_path}")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_other_write_errors_are_not_called_a_full_disk(tmp_path):
    with pytest.raises(ValueError, match="not about space"):
        _io.atomic_write(tmp_path / "a", lambda tmp: (_ for _ in ()).throw(ValueError("not about space")))
    with pytest.raises(CnnkitError, match="its own words"):
        _io.atomic_write(tmp_path / "a", lambda tmp: (_ for _ in ()).throw(CnnkitError("its own words")))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_mid_training_keeps_the_last_checkpoint(run, capsys, monkeypatch):
    """The state write of epoch 2 fails as torch.save fails on a full disk: one line, the epoch-1 files intact."""
    before = _files(run)
    real = torch.save

    def full(obj, f, *a, **k):
        real(obj, f, *a, **k)  # most of the file is written, then the disk is full
        raise _chained(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),
                       OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(fmt.torch, "save", full)
    err = refused(capsys, "train", "--resume", run, "--epochs", "2")
    assert f"no space left on the device holding {run}" in err and "train_state.pt" in err
    assert f"the last checkpoint (epoch 1) in {run} is intact" in err and f"--resume {run}" in err
    after = _files(run)
    assert after[fmt.STATE] == before[fmt.STATE]  # the state of epoch 1
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


class _BestAgain(Callback):
    """Makes every epoch the best so far, so its weights and model.json are written."""

    def after_train_epoch(self):
        self.trainer.best_val_acc = -1.0


@pytest.mark.parametrize("failing", ["weights", "metrics"])
def test_a_full_disk_in_any_write_of_an_epoch_keeps_the_last_checkpoint(run, monkeypatch, failing):
    from safetensors import SafetensorError

    from cnnkit.engine import callbacks

    before = _files(run)
    if failing == "weights":
        def full(tensors, tmp, metadata=None):
            Path(tmp).write_bytes(b"\0" * 100)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        monkeypatch.setattr(fmt, "save_file", full)
    else:
        def full(path, text):
            return _io.atomic_write(path, lambda tmp: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
        monkeypatch.setattr(callbacks, "atomic_write_text", full)
    with pytest.raises(CnnkitError) as e:
        cnnkit.resume(run, epochs=2, quiet=True, report=False, callbacks=[_BestAgain()])
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC and e.value.filename
    assert f"the last checkpoint (epoch 1) in {run} is intact" in str(e.value) and f"--resume {run}" in str(e.value)
    assert _files(run) == before and not [n for n in os.listdir(run) if n.endswith(".tmp")]


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()[:100]}")


def test_a_real_full_disk(base_run, tmp_path, capsys):
    """On a real 2 MB filesystem, filled to within 64 KB: resume, export and evaluate's plot each fail with one
    line, and every file saved before is intact. Needs root (mount); skipped elsewhere."""
    disk = tmp_path / "small"
    _mount_tmpfs(disk, "2m")
    try:
        run = disk / "run"
        shutil.copytree(base_run, run)
        before = _files(run)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 64 * 1024))
        err = refused(capsys, "train", "--resume", run, "--epochs", "2")
        assert f"no space left on the device holding {run}" in err and f"--resume {run}" in err
        err = refused(capsys, "export", run, "--format", "torchscript", "--out", disk / "m.pt")
        assert f"no space left on the device holding {disk}" in err
        assert _files(run) == before and not (disk / "m.pt").exists()
        assert not [n for n in os.listdir(run) + os.listdir(disk) if n.endswith(".tmp")]
        (disk / "filler").unlink()  # space again: the same run resumes where it was
        assert cnnkit.resume(run, epochs=2, quiet=True, report=False)["epochs"] == 2
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# --- finding 16: temp files of killed writes -----------------------------------------------------------------
def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_temp_names_carry_the_writers_pid(tmp_path):
    seen = []
    _io.atomic_write(tmp_path / "x.bin", lambda tmp: seen.append(Path(tmp).name) or Path(tmp).write_bytes(b"1"))
    assert _io.temp_pid(seen[0]) == os.getpid() and seen[0].startswith(".x.bin.")


def test_stale_temp_files_are_removed_when_a_run_is_resumed(run):
    dead, old = _dead_pid(), time.time() - 3600 * 2
    stale = [run / f".train_state.pt.{dead}-abcd1234.tmp", run / f".model.safetensors.{os.getpid()}-zz99zz99.tmp",
             run / ".model.json.k2j4h5g6.tmp"]  # a dead writer's; a live pid's but hours old; an old-style name
    fresh = [run / f".train_state.pt.{os.getpid()}-qwer1234.tmp",  # being written right now
             run / ".model.json.abcdefgh.tmp",  # old-style, but seconds old
             run / ".notes.tmp", run / "train_state.pt.123-abcdefgh.tmp"]  # not names we make
    for p in stale + fresh:
        p.write_bytes(b"\0" * 1000)
    for p in stale[1:]:
        os.utime(p, (old, old))
    cnnkit.resume(run, epochs=2, quiet=True, report=False)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in fresh)


# --- finding 5: a malformed train_state.pt -------------------------------------------------------------------
def _set(path, value):
    def change(state):
        *keys, last = path
        d = state
        for k in keys:
            d = d[k]
        d[last] = value
    return change


def _pop(*path):
    def change(state):
        *keys, last = path
        d = state
        for k in keys:
            d = d[k]
        del d[last]
    return change


BAD_STATES = {
    "not a dict": (lambda s: s.clear() or s.update(x=1), "lacks 'config'"),
    "no model": (_pop("model"), "lacks 'model'"),
    "no rng": (_pop("rng"), "lacks 'rng'"),
    "no optimizer": (_pop("optimizer"), "lacks 'optimizer'"),
    "epoch a string": (_set(["epoch"], "3"), "'epoch' must be"),
    "data_mac a tensor": (_set(["data_mac"], torch.zeros(0)), "'data_mac' must be"),  # found by make fuzz
    "a tensor for a config string": (_set(["config", "augment"], torch.zeros(2, 1)), "'config.augment' must be"),
    "epoch negative": (_set(["epoch"], -1), "'epoch' must be"),
    "best epoch after epoch": (_set(["best_epoch"], 7), "'best_epoch' must be"),
    "history not a list": (_set(["history"], 5), "'history' must be"),
    "history row without val_acc": (lambda s: s["history"][0].pop("val_acc"), "'history[0]'"),
    "config not a dict": (_set(["config"], [1]), "'config' must be"),
    "config epochs a string": (_set(["config", "epochs"], "x"), "'config.epochs'"),
    "config lr nan": (_set(["config", "lr"], float("nan")), "'config.lr'"),
    "config unknown model": (_set(["config", "model"], "nope"), "'config.model'"),
    "model tensor a list": (_set(["model", "fc2.bias"], [0.0] * 10), "'model.fc2.bias' must be a tensor"),
    "model tensor wrong shape": (_set(["model", "fc2.weight"], torch.zeros(5, 128)), "fc2.weight"),
    "model tensor missing": (_pop("model", "conv1.weight"), "conv1.weight"),
    "model weights nan": (lambda s: s["model"]["fc1.weight"].fill_(float("nan")), "NaN"),
    "optimizer lr nan": (lambda s: s["optimizer"]["param_groups"][0].update(lr=float("nan")), "learning rate"),
    "optimizer groups": (lambda s: s["optimizer"]["param_groups"].pop(), "parameter groups"),
    "optimizer moment shape": (lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)), "exp_avg"),
    "optimizer state a string": (_set(["optimizer", "state"], "x"), "'optimizer.state'"),
    "rng torch size": (_set(["rng", "torch"], torch.zeros(10, dtype=torch.uint8)), "'rng.torch'"),
    "rng generator dtype": (lambda s: s["rng"].update(generator=s["rng"]["generator"].float()), "'rng.generator'"),
    "rng numpy short": (lambda s: s["rng"]["numpy"].__setitem__(1, torch.zeros(5, dtype=torch.int64)), "'rng.numpy'"),
    "rng python": (_set(["rng", "python"], (3, (1, 2), None)), "'rng.python'"),
    "scheduler past its steps": (_set(["scheduler", "last_epoch"], 10_000), "scheduler"),
    "scheduler base_lrs nan": (lambda s: s["scheduler"]["base_lrs"].__setitem__(0, float("nan")), "scheduler"),
    "scheduler a list": (_set(["scheduler"], [1, 2]), "'scheduler' must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_STATES))
def test_a_malformed_train_state_is_one_line(run, capsys, case):
    change, needle = BAD_STATES[case]
    _edit_state(run, change)
    err = refused(capsys, "train", "--resume", run, "--epochs", "2")
    assert f"{run / fmt.STATE}" in err and "damaged" in err and needle in err, err
    assert f"--weights {run / fmt.WEIGHTS}" in err  # the best model is fine: what to do with it


@pytest.mark.parametrize("content", [b"", b"garbage\0" * 10, b"PK\x03\x04" + b"\0" * 40])
def test_an_empty_or_garbled_train_state_is_one_line(run, capsys, content):
    (run / fmt.STATE).write_bytes(content)
    err = refused(capsys, "train", "--resume", run, "--epochs", "2")
    assert f"{run / fmt.STATE}" in err and "damaged" in err and "IndexError" not in err


def test_a_valid_state_still_resumes_exactly(run):
    r = cnnkit.resume(run, epochs=2, quiet=True, report=False)
    assert r["epochs"] == 2 and len((run / "metrics.csv").read_text().strip().splitlines()) == 3


# --- finding 6: resume on data with other classes ------------------------------------------------------------
def _folder(root: Path, classes=("k0", "k1", "k2"), n=12) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in np.flatnonzero(d.target == c)[:n]:
            Image.fromarray(np.uint8(d.images[i] * 255 / 16)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("split_json", [True, False])
def test_resume_on_data_with_other_classes_names_both_lists(run, tmp_path, capsys, split_json):
    other = _folder(tmp_path / "other")
    if not split_json:
        (run / fmt.SPLIT).unlink()
    err = refused(capsys, "train", "--resume", run, "--data", f"folder:{other}", "--epochs", "2")
    assert "['k0', 'k1', 'k2']" in err and "'0', '1', '2'" in err and "class" in err


# --- findings 10 and 11: a malformed model.json, damaged weights ---------------------------------------------
BAD_META = {
    "classes a number": (lambda m: m.update(classes=5), "'classes'"),
    "2 classes for 10 outputs": (lambda m: m.update(classes=["a", "b"]), "10 outputs"),
    "an empty class name": (lambda m: m["classes"].__setitem__(3, ""), "'classes'"),
    "a class name with a newline": (lambda m: m["classes"].__setitem__(3, "a\nb"), "control character"),
    "a class name not a string": (lambda m: m["classes"].__setitem__(3, 3), "'classes'"),
    "channels a string": (lambda m: m["preprocess"].update(channels="x"), "'preprocess.channels'"),
    "channels 3 for 1-channel weights": (lambda m: m["preprocess"].update(channels=3, mean=[0.3] * 3, std=[0.3] * 3),
                                         "in_channels"),
    "mean null": (lambda m: m["preprocess"].update(mean=None), "'preprocess.mean'"),
    "mean a string": (lambda m: m["preprocess"].update(mean="abc"), "'preprocess.mean'"),
    "std missing": (lambda m: m["preprocess"].pop("std"), "'preprocess.std'"),
    "std zero": (lambda m: m["preprocess"].update(std=[0]), "'preprocess.std'"),
    # found by make fuzz: finite, but (x - mean) / std overflows float32 and every probability was NaN
    "mean 1e308": (lambda m: m["preprocess"].update(mean=[1e308]), "'preprocess.mean'"),
    "std 1e-30": (lambda m: m["preprocess"].update(std=[1e-30]), "'preprocess.std'"),
    "std nan": (lambda m: m["preprocess"].update(std=[float("nan")]), "'preprocess.std'"),
    "size huge": (lambda m: m["preprocess"].update(size=[100000, 100000]), "at most 4096"),
    "size 3 numbers": (lambda m: m["preprocess"].update(size=[8, 8, 8]), "'preprocess.size'"),
    "size strings": (lambda m: m["preprocess"].update(size=["8", "8"]), "'preprocess.size'"),
    "crop a string": (lambda m: m["preprocess"].update(crop="x"), "'preprocess.crop'"),
    "preprocess a list": (lambda m: m.update(preprocess=[1]), "'preprocess'"),
    "model a string": (lambda m: m.update(model="simplecnn"), "'model'"),
    "model name unknown": (lambda m: m["model"].update(name="nope"), "'model.name'"),
    "kwargs a list": (lambda m: m["model"].update(kwargs=[1]), "'model.kwargs'"),
    "kwargs unknown key": (lambda m: m["model"]["kwargs"].update(bogus=1), "'model.kwargs.bogus'"),
    "kwargs num_classes a string": (lambda m: m["model"]["kwargs"].update(num_classes="x"), "num_classes"),
    "kwargs input_size huge": (lambda m: m["model"]["kwargs"].update(input_size=[10 ** 9, 10 ** 9]), "input_size"),
    "kwargs nested": (lambda m: m["model"]["kwargs"].update(small_input={"a": [1]}), "small_input"),
    "format missing": (lambda m: m.pop("format"), "'format'"),
    "data a list": (lambda m: m.update(data=[1]), "'data'"),
    "calibration temperature 0": (lambda m: m.update(calibration={"temperature": 0}), "temperature"),
    "calibration temperature nan": (lambda m: m.update(calibration={"temperature": float("nan")}), "temperature"),
    "decision threshold a string": (lambda m: m.update(decision={"positive": "1", "threshold": "x"}), "threshold"),
}


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_a_malformed_model_json_is_one_line(run, image, capsys, case):
    change, needle = BAD_META[case]
    _edit_meta(run, change)
    err = refused(capsys, "predict", run, image)
    assert f"{run / fmt.META}" in err and needle in err, err


@pytest.mark.parametrize("text,needle", [
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"a": "' + "x" * (17 << 20) + '"}', "MB"),
    ("\xff\xfe", "UTF-8"),
    ("", "not valid JSON"),
    ("[1, 2]", "JSON object"),
])
def test_a_deep_huge_or_garbled_model_json_is_one_line(run, image, capsys, text, needle):
    (run / fmt.META).write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    err = refused(capsys, "predict", run, image)
    assert f"{run / fmt.META}" in err and needle in err, err


def test_nan_weights_are_refused_naming_the_layer(run, image, capsys):
    from safetensors.torch import load_file, save_file

    w = load_file(run / fmt.WEIGHTS)
    w["fc2.weight"][3, 5] = float("nan")
    save_file(w, run / fmt.WEIGHTS)
    err = refused(capsys, "predict", run, image)
    assert f"{run / fmt.WEIGHTS}" in err and "NaN/inf" in err and "fc2.weight" in err


def test_weights_that_do_not_fit_are_named_before_they_are_read(run, image, capsys, monkeypatch):
    from safetensors.torch import load_file, save_file

    w = load_file(run / fmt.WEIGHTS)
    w["fc2.weight"], w["fc2.bias"] = torch.zeros(5, 128), torch.zeros(5)
    save_file(w, run / fmt.WEIGHTS)
    monkeypatch.setattr(fmt, "load_file", lambda *a, **k: pytest.fail("the tensors were read"))
    err = refused(capsys, "predict", run, image)
    assert "fc2.weight" in err and "[5, 128]" in err and "[10, 128]" in err


def test_a_good_run_still_predicts(run, image):
    top = Predictor.from_run(run).predict([image])[0]
    assert len(top) == 1 and top[0][0] in [str(i) for i in range(10)] and 0 < top[0][1] <= 1


# --- finding 12: a run directory names data to read ----------------------------------------------------------
def test_a_crafted_data_spec_is_not_read(run, capsys, tmp_path, monkeypatch):
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    monkeypatch.chdir(run)
    for spec in (f"csv:{secret}", "csv:../../../../etc/passwd", str(tmp_path)):
        _edit_meta(run, lambda m: m["data"].update(spec=spec))
        for cmd in ("evaluate", "report", "calibrate"):
            err = refused(capsys, cmd, run)
            assert f"{run / fmt.META} names data at" in err and "pass --data" in err and "root:" not in err, err


def test_a_crafted_data_spec_in_the_state_is_not_read(run, capsys, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    _edit_state(run, _set(["config", "data"], f"csv:{secret}"))
    err = refused(capsys, "train", "--resume", run, "--epochs", "2")
    assert f"{run / fmt.STATE} names data at" in err and "pass --data" in err and "root:" not in err, err


def test_the_runs_own_folder_data_is_read_without_data(tmp_path, monkeypatch):
    """A run trained here on a folder: evaluate and resume find it without --data; a copy of the run whose spec
    was changed to point elsewhere does not."""
    pics = _folder(tmp_path / "pics")
    run = Path(cnnkit.train(str(pics), epochs=1, out=str(tmp_path / "r"), quiet=True, report=False)["run_dir"])
    assert "the run's saved split" in cnnkit.evaluate(run, plot=False)["images"]
    assert cnnkit.resume(run, epochs=2, quiet=True, report=False)["epochs"] == 2
    (tmp_path / "pics2").symlink_to(pics)
    _edit_meta(run, lambda m: m["data"].update(spec=f"folder:{tmp_path / 'pics2'}"))
    with pytest.raises(CnnkitError, match="pass --data"):
        cnnkit.evaluate(run, plot=False)
    assert cnnkit.evaluate(run, f"folder:{tmp_path / 'pics2'}", plot=False)["accuracy"] >= 0


# --- findings 1 and 2 (fixed before): regressions on a real run -----------------------------------------------
@pytest.mark.parametrize("name,form", [(fmt.WEIGHTS, "onnx"), (fmt.STATE, "torchscript"), (fmt.META, "onnx")])
def test_export_never_replaces_the_runs_own_files(run, capsys, name, form):
    before = _files(run)
    code, _, err = cli(capsys, "export", run, "--format", form, "--out", run / name)  # refused while parsing
    assert code == 2 and err.count("\n") == 1 and "would overwrite a file of the run" in err, err
    assert _files(run) == before


# --- found by the independent re-try (an attacker's second pass over the same classes of input) -----------------
@pytest.mark.parametrize("step", [10 ** 6, 1])
def test_a_saved_step_that_disagrees_with_the_epochs_is_not_trusted(run, step):
    """The schedule was advanced by the state's `step` and stepped past its end on the next epoch
    (OneCycleLR: "Tried to step 47 times"); it now follows the finished epochs."""
    _edit_state(run, _set(["step"], step))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-report"]) == 0
    assert [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))] == [1, 2]


def test_a_saved_scheduler_position_that_disagrees_is_rebuilt(run):
    def move(state):
        state["scheduler"]["last_epoch"] -= 1  # within its steps, but not where the finished epoch left it
    _edit_state(run, move)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-report"]) == 0


def test_settings_model_json_would_refuse_fail_before_the_first_step(tmp_path, monkeypatch):
    """The second re-try lost models whose settings passed the start checks but not model.json's reader, after
    training to the end; now the model.json a run will write is checked before its first step."""
    def refuse(meta, path):
        raise CnnkitError(f"{path}: field 'model.kwargs.widths' must be something else; the file is damaged or "
                          "not from cnnkit")

    monkeypatch.setattr(fmt, "check_meta", refuse)
    with pytest.raises(CnnkitError, match=r"could not be saved with the model \(field 'model.kwargs.widths'.*nothing "
                                          "was trained"):
        cnnkit.train("digits", epochs=1, img_size=8, out=str(tmp_path / "r"), quiet=True, report=False)
    assert not (tmp_path / "r" / "metrics.csv").exists()
