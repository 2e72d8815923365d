"""Fuzzing the CLI's argument values: every value a user can type for a numeric or named flag either works or
is refused with one line naming the flag (exit status 2), before anything is allocated or trained; never a
traceback, never the internal-error boundary (exit status 1), never an out-of-memory."""
from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, strategies as st
from PIL import Image

import cnnkit
from cnnkit.cli import build_parser, main
from cnnkit.errors import CnnkitError

from fuzzcases import FUZZ, case

# what a careless or hostile user types where a number is expected
numbers = st.one_of(
    st.integers(-10**25, 10**25).map(str), st.integers(-3, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e309", "1e-320", "0", "-0", "0.0", "", " ", "1_000", "0x10",
                     "\u0663", "4\n", "1e5", "100000", "2147483648", "18446744073709551616", "-1", "3.5", "1,5"]),
    st.text(max_size=6))


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`cnnkit ARGV` in this process: its exit status, stdout and stderr; a user error must be one line."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        _one_line(err)
    return rc, out, err


def _one_line(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) <= 2, err  # argparse adds "(see 'cnnkit --help')"


# --- train: every TrainConfig flag, parsed and checked as `cnnkit train` does before reading data --------------
def _train_flags() -> list[tuple[str, type]]:
    from cnnkit.cli.train import _kind
    from cnnkit.engine.config import TrainConfig, flag

    hints = typing.get_type_hints(TrainConfig)
    return [(flag(f.name), _kind(hints[f.name])) for f in dataclasses.fields(TrainConfig)
            if _kind(hints[f.name]) in (int, float) or f.name in ("device", "model", "window", "operating_point")]


TRAIN_FLAGS = _train_flags()
# what training needs of each value; None: any finite number
LIMITS = {"--epochs": 1, "--batch-size": 1, "--lr": 0, "--img-size": 1, "--max-pixels": 1, "--seed": 0,
          "--weight-decay": 0, "--momentum": 0, "--label-smoothing": 0, "--val-fraction": 0, "--patience": 0,
          "--freeze-epochs": 0, "--lr-mult": 0}


@FUZZ
@given(flag=st.sampled_from(TRAIN_FLAGS), value=numbers | st.text(max_size=12))
def test_train_flags(flag, value, capsys):
    case("train flags")
    from cnnkit.cli.train import config_options
    from cnnkit.engine.config import TrainConfig, apply_preset, check, resolve

    name, kind = flag
    try:
        args = build_parser().parse_args(["train", "--data", "digits", name, value])
    except SystemExit as e:
        assert e.code == 2
        _one_line(capsys.readouterr().err)
        return
    try:
        cfg = check(apply_preset(TrainConfig(**config_options(args))))
        cfg = resolve(cfg, n_train=1000, size=(8, 8))
    except CnnkitError as e:
        assert "\n" not in str(e)
        return
    got = getattr(cfg, name[2:].replace("-", "_"))
    if kind in (int, float) and got is not None:
        assert math.isfinite(got), (name, value, got)
        if name in LIMITS:
            assert got >= LIMITS[name], (name, value, got)
        if name == "--seed":
            assert got < 2**32, (name, value, got)
        if name == "--img-size":
            assert got <= 8192, (name, value, got)  # beyond any image a CNN is trained on here; refused early


# --- convolve: a real run on a small image ------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-cli") / "small.png"
    Image.fromarray((np.arange(24 * 20) % 251).astype(np.uint8).reshape(24, 20)).save(path)
    return path


kernels = st.one_of(st.sampled_from(["sobel_x", "laplacian", "box", "gaussian", "nope", "", "[[1]]", "[[nan]]",
                                     "[[1,2],[3]]", "[]", "[[]]", "[[1e400]]", "[[" * 500 + "]]" * 500,
                                     "[[1,0,-1],[2,0,-2],[1,0,-1]]", "{}", "[[true]]", '[["a"]]']),
                    st.lists(st.lists(st.integers(-5, 5) | st.floats(allow_nan=True), min_size=1, max_size=4),
                             min_size=1, max_size=4).map(str))


@FUZZ
@given(kernel=kernels, stride=numbers, padding=numbers | st.sampled_from(["valid", "same", "full", "100000"]))
@example(kernel="sobel_x", stride="2", padding="6772")  # found by it: 6.6 GB, refused only above the limit
def test_convolve(small_png, kernel, stride, padding, capsys):
    case("convolve flags")
    out = Path(tempfile.mkdtemp(prefix="cnnkit-fuzz-")) / "map.png"
    try:
        rc, _, _ = _cli(["convolve", str(small_png), "--kernel", kernel, "--stride", stride, "--padding", padding,
                         "--out", str(out)], capsys)
        assert rc == 2 or out.is_file()
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


# --- summary: a model built from the user's numbers ------------------------------------------------------------
@FUZZ
@given(model=st.sampled_from(["lenet5", "simplecnn", "mlp", "resnet18", "nosuchnet"]),
       flag=st.sampled_from(["--input", "--num-classes", "--compare-fc", "--depth"]),
       value=numbers | st.sampled_from(["1x28x28", "3x32x32", "0x1x1", "1x100000x100000", "3x-1x5", "x", "1x1x1",
                                        "3x224", "65536x1x1"]))
def test_summary(model, flag, value, capsys):
    case("summary flags")
    _cli(["summary", model, flag, value], capsys)


# --- predict: a run's numbers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-cli") / "run"
    cnnkit.train("digits", epochs=1, img_size=8, out=str(out), quiet=True, report=False)
    return out


@FUZZ
@given(flag=st.sampled_from(["--top-k", "--batch-size", "--engine", "--on-bad-image", "--max-pixels"]),
       value=numbers | st.sampled_from(["onnx", "torch", "skip", "fail"]))
def test_predict(tiny_run, small_png, flag, value, capsys):
    case("predict flags")
    rc, out, _ = _cli(["predict", str(tiny_run), str(small_png), flag, value], capsys)
    assert rc == 2 or "nan" not in out
