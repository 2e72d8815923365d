"""Fuzzing the files cnnkit reads that another program could have written: a run's model.json and
train_state.pt, CSV lists, IDX files, CIFAR batches, images and DICOM. Each either gives sane values or is
refused with a CnnkitError; nothing else escapes (see conftest.py for the profiles and the count)."""
from __future__ import annotations

import copy
import gzip
import io
import json
import math
import pickle
import shutil
import struct
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st
from PIL import Image

import cnnkit
from cnnkit.errors import CnnkitError

from fuzzcases import FUZZ, case

# --- strategies -------------------------------------------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from([0, -1, 1, 2, 3, 10**6, 0.0, -0.5, 1e-30, 1e30, "", "x", "\n"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c,
                                                                                         max_size=4),
                           max_leaves=12)


def _has_control(s: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in s)


def _scratch() -> Path:
    """A fresh folder for one example (hypothesis runs many examples in one test, so not tmp_path)."""
    return Path(tempfile.mkdtemp(prefix="cnnkit-fuzz-"))


# --- model.json ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    cnnkit.train("digits", epochs=1, img_size=8, out=str(out), quiet=True, report=False)
    return out


def _paths(obj, prefix=()):
    """Every key path of a JSON tree: ('preprocess', 'mean'), ('preprocess', 'mean', 0) …"""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, (*prefix, i))


def _mutate(meta, path, action, value):
    meta = copy.deepcopy(meta)
    if not path:
        return value
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    if action == "delete":
        del parent[path[-1]]
    elif action == "scale" and isinstance(parent[path[-1]], (int, float)) and not isinstance(parent[path[-1]], bool):
        parent[path[-1]] = parent[path[-1]] * value if isinstance(value, (int, float)) else value
    else:
        parent[path[-1]] = value
    return meta


def _check_prediction(pred, image) -> None:
    (top,) = pred.predict([image], top_k=len(pred.classes))
    assert len(top) == len(pred.classes)
    probs = [p for _, p in top]
    assert all(np.isfinite(p) and 0 <= p <= 1 for p in probs), top
    assert abs(sum(probs) - 1) < 1e-3, top
    assert all(isinstance(c, str) and c and not _has_control(c) for c in pred.classes), pred.classes


@FUZZ
@given(data=st.data(), action=st.sampled_from(["set", "delete", "scale"]),
       value=json_values | st.sampled_from([10**5, -1, 0, 1e308, float("nan"), [0], [1e6, 1e6], "simplecnn"]))
def test_model_json(tiny_run, data, action, value):
    case("model.json")
    meta = json.loads((tiny_run / "model.json").read_text())
    path = data.draw(st.sampled_from(list(_paths(meta))), label="path")
    if action == "delete" and not path:
        action = "set"
    run = _scratch()
    try:
        shutil.copy(tiny_run / "model.safetensors", run / "model.safetensors")
        (run / "model.json").write_text(json.dumps(_mutate(meta, path, action, value)))
        try:  # refused when loaded, or when it predicts (never a NaN passed off as a probability)
            _check_prediction(cnnkit.load_model(run), Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4))
        except CnnkitError as e:
            assert "\n" not in str(e)
    finally:
        shutil.rmtree(run, ignore_errors=True)


_SPECIAL_JSON = {"deep list": lambda: b"[" * 100000 + b"]" * 100000,
                 "deep object": lambda: b'{"a":' * 50000 + b"1" + b"}" * 50000,
                 "empty": lambda: b"", "BOM": lambda: b"\xef\xbb\xbf{}", "null": lambda: b"null",
                 "huge number": lambda: b"1e999", "huge string": lambda: b'"' + b"x" * 10**6 + b'"',
                 "Latin-1": lambda: '{"classes": ["caf\xe9"]}'.encode("latin-1")}


@FUZZ
@given(raw=st.binary(max_size=300) | st.sampled_from(sorted(_SPECIAL_JSON)))
def test_model_json_bytes(tiny_run, raw):
    case("model.json bytes")
    run = _scratch()
    try:
        shutil.copy(tiny_run / "model.safetensors", run / "model.safetensors")
        (run / "model.json").write_bytes(_SPECIAL_JSON[raw]() if isinstance(raw, str) else raw)
        with pytest.raises(CnnkitError):
            cnnkit.load_model(run)
    finally:
        shutil.rmtree(run, ignore_errors=True)


# --- IDX --------------------------------------------------------------------------------------------------
@FUZZ
@given(magic=st.sampled_from([b"\x00\x00\x08", b"\x00\x00\x09", b"\x00\x00\x0d", b"\x1f\x8b\x08", b"PK\x03"]),
       ndim=st.integers(0, 6), dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), max_size=6),
       body=st.binary(max_size=400), gz=st.booleans(), cut=st.integers(0, 500))
def test_idx(magic, ndim, dims, body, gz, cut):
    case("IDX")
    from cnnkit.data.sources import read_idx

    raw = magic + bytes([ndim]) + b"".join(struct.pack(">I", d) for d in dims) + body
    raw = raw[:cut] if cut < len(raw) else raw
    folder = _scratch()
    try:
        path = folder / "train-images-idx3-ubyte"
        path.write_bytes(gzip.compress(raw) if gz else raw)
        try:
            arr = read_idx(path)
        except CnnkitError as e:
            assert "\n" not in str(e)
            return
        assert arr.dtype == np.uint8 and arr.size <= len(raw)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- CIFAR-10 batches ---------------------------------------------------------------------------------------
def _arrays():
    return st.builds(lambda n, shape, dt: np.full(shape, n % 128, dtype=dt),
                     st.integers(0, 300), st.sampled_from([(4, 3072), (4, 3, 32, 32), (3072,), (4, 100), (0, 3072),
                                                           (2, 3072), (4,), ()]),
                     st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.int8]))


@FUZZ
@given(data=st.one_of(_arrays(), json_values, st.binary(max_size=64)),
       labels=st.one_of(st.lists(st.integers(-3, 12) | st.integers(-2**40, 2**40), max_size=6), json_values,
                        st.builds(np.asarray, st.lists(st.integers(0, 9), max_size=6))),
       names=st.one_of(st.just(None), json_values, st.lists(st.text(max_size=6) | st.binary(max_size=6), max_size=12)),
       extra=st.dictionaries(st.binary(max_size=6), json_values, max_size=2),
       top=st.sampled_from(["dict", "list", "bytes"]), proto=st.integers(2, 5))
def test_cifar_batches(data, labels, names, extra, top, proto):
    case("CIFAR batches")
    from cnnkit.data.sources import load_cifar10_source

    folder = _scratch()
    try:
        batch = {b"data": data, b"labels": labels, **extra}
        obj = {"dict": batch, "list": [batch], "bytes": b"\x80junk"}[top]
        (folder / "data_batch_1").write_bytes(pickle.dumps(obj, protocol=proto) if top != "bytes" else obj)
        if names is not None:
            (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=proto))
        try:
            src = load_cifar10_source(folder, f"cifar10:{folder}")
        except CnnkitError as e:
            assert "\n" not in str(e)
            return
        classes = src.classes
        assert len(set(classes)) == len(classes) and all(isinstance(c, str) and c and not _has_control(c)
                                                          for c in classes)
        for items in src.splits.values():
            assert items.x.dtype == np.uint8 and items.x.shape[1:] == (3, 32, 32)
            assert len(items.x) == len(items.y) > 0
            assert items.y.min() >= 0 and items.y.max() < len(classes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    from cnnkit.data.sources import load_cifar10_source

    with pytest.raises(CnnkitError, match="data_batch_1"):
        load_cifar10_source(tmp_path, f"cifar10:{tmp_path}")
    assert not marker.exists()


# --- CSV --------------------------------------------------------------------------------------------------
_cells = st.sampled_from(["a.png", "b.png", "c.png", "missing.png", "", " ", "path", "sub/../a.png", "/etc/passwd",
                          "cat", "dog", "dog ", "cat\n", "\ufeffcat", "ca,t", '"quoted"', "x\x00y", "é"]) | st.text(max_size=8)


@FUZZ
@given(rows=st.lists(st.lists(_cells, min_size=0, max_size=4), max_size=8), header=st.booleans(),
       bom=st.booleans(), encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
@example(rows=[["x\x00y", "a.png"]], header=True, bom=False, encoding="utf-8", newline="\n")  # found by it once
@example(rows=[["a\n.png", "cat"], ["a\n.png", "dog"]], header=False, bom=False, encoding="utf-8", newline="\n")  # and this
def test_csv(rows, header, bom, encoding, newline):
    case("CSV")
    import csv

    from cnnkit.data.sources import load_csv_source

    folder = _scratch()
    try:
        for name in ("a.png", "b.png", "c.png"):
            Image.new("L", (4, 4), 128).save(folder / name)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator=newline)
        if header:
            w.writerow(["path", "label"])
        w.writerows(rows)
        text = ("\ufeff" if bom else "") + buf.getvalue()
        path = folder / "list.csv"
        try:
            path.write_bytes(text.encode(encoding))
        except UnicodeEncodeError:
            path.write_bytes(text.encode("utf-8"))
        try:
            src = load_csv_source(path, f"csv:{path}")
        except CnnkitError as e:
            assert "\n" not in str(e)
            return
        classes = src.classes
        assert len(classes) >= 2 and len(set(classes)) == len(classes)
        assert all(c and c == c.strip() and not _has_control(c) and c.lower() not in ("label", "\ufefflabel")
                   for c in classes), classes
        items = src.splits["train"]
        assert len(items.paths) == len(items.y) == len(set(items.paths))
        assert set(items.y.tolist()) == set(range(len(classes)))  # every class has images
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- images and DICOM ---------------------------------------------------------------------------------------
def _image_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = (rng.random((12, 10, 3)) * 255).astype(np.uint8)
    seeds = []
    for im, fmt, kw in [(Image.fromarray(rgb), "PNG", {}), (Image.fromarray(rgb[..., 0]), "PNG", {}),
                        (Image.fromarray(rgb).convert("RGBA"), "PNG", {}), (Image.fromarray(rgb).convert("P"), "GIF", {}),
                        (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG", {}),
                        (Image.fromarray(rgb), "JPEG", {"quality": 80}), (Image.fromarray(rgb), "BMP", {}),
                        (Image.fromarray(rgb), "TIFF", {}), (Image.fromarray(rgb), "WEBP", {})]:
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        seeds.append(b.getvalue())
    try:
        from pydicom.data import get_testdata_file

        seeds.append(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    except Exception:  # pydicom without its test files: images only
        pass
    return seeds


SEEDS = _image_seeds()


@pytest.fixture(scope="module")
def predictor():
    from cnnkit.run.predictor import Predictor

    return Predictor.untrained("simplecnn", img_size=16, num_classes=3)


@FUZZ
@given(which=st.integers(0, len(SEEDS) - 1), mode=st.sampled_from(["cut", "flip", "insert", "noise", "header"]),
       at=st.integers(0, 4000), noise=st.binary(min_size=1, max_size=32))
@example(which=len(SEEDS) - 1, mode="flip", at=136, noise=b"\x00")  # found by it: pydicom's BytesLengthException
def test_image_bytes(predictor, which, mode, at, noise):
    case("images")
    base = SEEDS[which]
    at = at % (len(base) + 1)
    body = {"cut": base[:at], "flip": base[:at] + bytes(b ^ 0xFF for b in noise[:1]) + base[at + 1:],
            "insert": base[:at] + noise + base[at:], "noise": noise,
            "header": base[:at] + noise + base[at + len(noise):]}[mode]
    try:
        arr = predictor.image_bytes(body, name="fuzzed")
    except CnnkitError as e:
        assert "\n" not in str(e)
        return
    assert arr.dtype == np.uint8 and arr.shape == (3, 16, 16)


# --- train_state.pt ---------------------------------------------------------------------------------------
def _state_mutations(state):
    keys = list(state)
    return st.tuples(st.sampled_from(keys), st.sampled_from(["delete", "set", "tensor", "nested"]), json_values,
                     st.lists(st.integers(0, 5), max_size=3))


@pytest.fixture(scope="module")
def trained_state(tiny_run):
    return torch.load(tiny_run / "train_state.pt", map_location="cpu", weights_only=True)


@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 5))  # each valid-looking state trains an epoch (~1 s)
@given(data=st.data())
def test_train_state(tiny_run, trained_state, data):
    case("train_state.pt")
    key, action, value, shape = data.draw(_state_mutations(trained_state))
    state = copy.copy(trained_state)
    if action == "delete":
        del state[key]
    elif action == "set":
        state[key] = value
    elif action == "tensor":
        state[key] = torch.full(shape, float("nan"))
    elif isinstance(state[key], dict) and state[key]:
        inner = dict(state[key])
        sub = data.draw(st.sampled_from(sorted(inner, key=str)), label="inner key")
        inner[sub] = value if data.draw(st.booleans(), label="value or tensor") else torch.zeros(shape)
        state[key] = inner
    run = _scratch()
    try:
        for name in ("model.json", "model.safetensors", "split.json"):
            if (tiny_run / name).exists():
                shutil.copy(tiny_run / name, run / name)
        torch.save(state, run / "train_state.pt")
        try:  # the whole path: structure, then shapes against the model, then one more epoch
            result = cnnkit.resume(run, epochs=int(trained_state["epoch"]) + 1, quiet=True, report=False)
        except CnnkitError as e:
            assert "\n" not in str(e)
            return
        assert math.isfinite(result["val_acc"]) and result["epochs"] == int(trained_state["epoch"]) + 1
    finally:
        shutil.rmtree(run, ignore_errors=True)
