"""The decoded-image cache (cnnkit/data/cache.py) on real PNG folders: decoded once, keyed by the files,
never trusted when damaged, never left half-built by a kill or a full disk."""
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit.data.cache as cache_mod
from cnnkit.cli import main
from cnnkit.data import BadImagesError, load_data
from cnnkit.data.cache import FORMAT, ImageCache, cache_root, open_or_build
from cnnkit.errors import CnnkitError
from cnnkit.preprocess import Preprocess

N_IMAGES = 180  # the png_folder fixture: 3 classes × 60 real Fashion-MNIST PNGs


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A cache root of this test's own, so the folders in it are this test's."""
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "images"


@pytest.fixture()
def decodes(monkeypatch):
    """The paths `Preprocess.load` decodes (the cache build's only way to read a file)."""
    seen: list[str] = []
    real = Preprocess.load

    def counting(self, path, **kw):
        seen.append(str(path))
        return real(self, path, **kw)

    monkeypatch.setattr(Preprocess, "load", counting)
    return seen


def finished(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def building(root: Path) -> list[Path]:
    return sorted(root.glob(".*.building-*")) if root.is_dir() else []


def png(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path)).copy())


def test_a_second_load_reads_the_cache_and_decodes_nothing(png_folder, cache, decodes):
    first = load_data(str(png_folder), mode="stream")
    assert len(decodes) == N_IMAGES and len(set(decodes)) == N_IMAGES
    [folder] = finished(cache)
    u8 = folder / "images.u8"
    assert u8.stat().st_size == N_IMAGES * 28 * 28
    before = (folder.stat().st_ino, u8.stat().st_ino, u8.stat().st_mtime_ns)

    decodes.clear()
    again = load_data(str(png_folder), mode="stream")
    in_memory = load_data(str(png_folder), mode="memory")  # the memory path reads the same cache
    assert decodes == []
    assert finished(cache) == [folder]
    assert (folder.stat().st_ino, u8.stat().st_ino, u8.stat().st_mtime_ns) == before
    for d in (again, in_memory):
        assert d.train.keys == first.train.keys
        assert torch.equal(d.train.x, first.train.x) and torch.equal(d.val.x, first.val.x)
    # and what the cache holds is the PNGs' pixels
    i = first.val.keys.index("val/trouser/005.png")
    assert torch.equal(first.val.get([i])[0, 0], png(png_folder / "val" / "trouser" / "005.png"))

    load_data(str(png_folder), img_size=20, mode="stream")  # other pixels: another cache
    assert len(decodes) == N_IMAGES and len(finished(cache)) == 2


def test_a_replaced_or_touched_file_gives_a_new_key_and_a_rebuild(png_folder, cache, decodes):
    load_data(str(png_folder), mode="stream")
    [old] = finished(cache)
    target = png_folder / "train" / "tshirt" / "001.png"
    other = png_folder / "train" / "trouser" / "001.png"
    assert target.read_bytes() != other.read_bytes()
    st = target.stat()
    target.write_bytes(other.read_bytes())  # new bytes ...
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # ... and a new mtime

    decodes.clear()
    d = load_data(str(png_folder), mode="stream")
    assert len(decodes) == N_IMAGES  # rebuilt
    new = [p for p in finished(cache) if p != old]
    assert len(new) == 1 and old.is_dir()
    i = d.train.keys.index("train/tshirt/001.png")
    assert torch.equal(d.train.get([i])[0, 0], png(other))  # the new pixels, not the cached old ones

    # the same bytes with only a new modification time: still a new key (the cache cannot know they are equal)
    os.utime(other, ns=(other.stat().st_atime_ns, other.stat().st_mtime_ns + 7_000_000_000))
    decodes.clear()
    load_data(str(png_folder), mode="stream")
    assert len(decodes) == N_IMAGES and len(finished(cache)) == 3


@pytest.mark.parametrize("damage", ["wrong format", "truncated images.u8", "images.u8 gone"])
def test_a_damaged_cache_is_rebuilt_not_trusted(png_folder, cache, decodes, damage):
    good = load_data(str(png_folder), mode="memory")  # a copy of the pixels, read before the damage
    [folder] = finished(cache)
    if damage == "wrong format":
        index = json.loads((folder / "index.json").read_text())
        (folder / "index.json").write_text(json.dumps({**index, "format": "cnnkit-cache/0"}))
    elif damage == "truncated images.u8":
        with open(folder / "images.u8", "r+b") as f:
            f.truncate(N_IMAGES * 28 * 28 - 28 * 28)  # one record short
    else:
        (folder / "images.u8").unlink()
    decodes.clear()
    d = load_data(str(png_folder), mode="stream")
    assert len(decodes) == N_IMAGES
    assert finished(cache) == [folder] and building(cache) == []
    assert json.loads((folder / "index.json").read_text())["format"] == FORMAT
    assert (folder / "images.u8").stat().st_size == N_IMAGES * 28 * 28
    assert torch.equal(d.train.x, good.train.x) and torch.equal(d.val.x, good.val.x)


def test_a_cache_without_its_index_is_not_read(png_folder, cache, decodes):
    """A folder under the right key but without index.json (a hand-deleted file): never read as a cache;
    either rebuilt or one error naming the folder."""
    good = load_data(str(png_folder), mode="stream")
    [folder] = finished(cache)
    (folder / "index.json").unlink()
    try:
        d = load_data(str(png_folder), mode="stream")
    except CnnkitError as e:
        assert str(folder) in str(e) and "delete the folder" in str(e)
    else:
        assert torch.equal(d.train.x, good.train.x)
    assert building(cache) == []


def test_an_index_missing_its_fields_is_rebuilt(png_folder, cache, decodes):
    good = load_data(str(png_folder), mode="stream")
    [folder] = finished(cache)
    (folder / "index.json").write_text(json.dumps({"format": FORMAT}))
    decodes.clear()
    d = load_data(str(png_folder), mode="stream")
    assert len(decodes) == N_IMAGES and torch.equal(d.train.x, good.train.x)


def test_an_interrupted_build_leaves_no_cache_and_the_next_load_builds_it(png_folder, cache, monkeypatch):
    real = Preprocess.load
    calls = []

    def interrupted(self, path, **kw):
        calls.append(path)
        if len(calls) == 60:
            raise KeyboardInterrupt  # Ctrl-C a third of the way through the build
        return real(self, path, **kw)

    monkeypatch.setattr(Preprocess, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_data(str(png_folder), mode="stream")
    assert finished(cache) == []  # nothing a later run would trust
    assert building(cache) == []  # and the half-written temp folder is cleaned up
    monkeypatch.setattr(Preprocess, "load", real)
    d = load_data(str(png_folder), mode="stream")
    assert len(finished(cache)) == 1
    assert torch.equal(d.val.get([0])[0, 0], png(png_folder / d.val.keys[0]))


KILL_CHILD = """
import os, signal, sys
from cnnkit.data import load_data
from cnnkit.preprocess import Preprocess
real, calls = Preprocess.load, []
def load(self, path, **kw):
    calls.append(path)
    if len(calls) == 60:
        os.kill(os.getpid(), signal.SIGKILL)  # no except, no finally: as a kill -9 or an OOM kill
    return real(self, path, **kw)
Preprocess.load = load
load_data(sys.argv[1], mode="stream", log=open(os.devnull, "w"))
"""


def test_a_killed_build_leaves_only_a_temp_folder_that_later_runs_ignore(png_folder, cache, decodes):
    env = {**os.environ, "CNNKIT_CACHE": str(cache.parent)}
    proc = subprocess.run([sys.executable, "-c", KILL_CHILD, str(png_folder)], env=env, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert finished(cache) == []
    [tmp] = building(cache)
    assert (tmp / "images.u8").is_file() and not (tmp / "index.json").exists()

    d = load_data(str(png_folder), mode="stream")  # ignores the temp folder, builds its own
    assert len(decodes) == N_IMAGES
    [folder] = finished(cache)
    assert folder.name == tmp.name[1:].split(".building-")[0]  # the key the killed run was building
    assert torch.equal(d.train.get([3])[0, 0], png(png_folder / d.train.keys[3]))
    assert building(cache) == [tmp]  # a recent one is left alone: it could be another run's build in progress

    old = time.time() - 7 * 3600
    os.utime(tmp, (old, old))
    load_data(str(png_folder), img_size=14, mode="stream")  # any later build sweeps a stale one away
    assert building(cache) == []


class _DiskFillsUp:
    """A file whose first write succeeds and whose next one fails as a full disk does."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, b):
        self.writes += 1
        if self.writes > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(png_folder, cache, monkeypatch, capsys):
    opened = []

    def full_disk_open(path, mode="r", *a, **kw):
        f = open(path, mode, *a, **kw)
        if "w" in mode and str(path).endswith("images.u8"):
            opened.append(_DiskFillsUp(f))
            return opened[-1]
        return f

    monkeypatch.setattr(cache_mod, "open", full_disk_open, raising=False)
    monkeypatch.setattr(cache_mod, "CHUNK", 64)  # 180 images: three writes, the second fails
    with pytest.raises(CnnkitError) as e:
        load_data(str(png_folder), mode="stream")
    msg = str(e.value)
    assert "no space left" in msg and str(cache_root()) in msg and "CNNKIT_CACHE" in msg
    assert "\n" not in msg
    assert len(opened) == 1 and opened[0].writes == 2  # one chunk was on the disk when it filled up
    assert not Path(opened[0].name).exists() and not Path(opened[0].name).parent.exists()  # both removed
    assert finished(cache) == [] and building(cache) == []

    code = main(["train", "--data", str(png_folder), "--out", str(png_folder.parent / "run"), "--data-mode",
                 "stream"])
    err = capsys.readouterr().err
    assert code == 2 and "no space left" in err and len(err.strip().splitlines()) == 1
    assert finished(cache) == [] and building(cache) == []

    monkeypatch.undo()  # space again (the env var too: set it back)
    monkeypatch.setenv("CNNKIT_CACHE", str(cache.parent))
    assert len(load_data(str(png_folder), mode="stream").train) == 144 and len(finished(cache)) == 1


def test_bad_images_are_remembered_by_the_cache(png_folder, cache, decodes):
    """A file that fails to decode is recorded in index.json, so a cached load still names it (or skips it)."""
    cls = png_folder / "train" / "tshirt"
    good = (cls / "001.png").read_bytes()
    (cls / "truncated.png").write_bytes(good[: len(good) // 2])  # a valid header: only decoding finds it
    with pytest.raises(BadImagesError, match="truncated.png"):
        load_data(str(png_folder), mode="stream")
    assert len(decodes) == N_IMAGES + 1
    [folder] = finished(cache)
    assert list(json.loads((folder / "index.json").read_text())["bad"].values())[0].startswith("corrupt")
    decodes.clear()
    with pytest.raises(BadImagesError, match="truncated.png"):
        load_data(str(png_folder), mode="stream")
    d = load_data(str(png_folder), mode="stream", on_bad_image="skip")
    assert decodes == [] and len(d.train) == 144 and [Path(b.path).name for b in d.skipped] == ["truncated.png"]


def _records(n, shape):
    return lambda i: np.full(shape, i, dtype=np.uint8)


def test_two_builds_of_one_cache_both_finish(cache):
    """A second process building the same cache finishes first: the first one's rename loses, harmlessly."""
    shape, n = (1, 3, 4), 40
    inner = {}

    def load(i):
        if i == 0 and not inner:
            inner["result"] = open_or_build("k" * 32, n, shape, _records(n, shape), describe="inner",
                                            log=open(os.devnull, "w"))
        return np.full(shape, i, dtype=np.uint8)

    c, built = open_or_build("k" * 32, n, shape, load, describe="outer", log=open(os.devnull, "w"))
    assert inner["result"][1] is True and built is True
    assert finished(cache) == [cache / ("k" * 32)] and building(cache) == []
    assert c.read(np.arange(n))[:, 0, 0, 0].tolist() == list(range(n))


def test_positioned_reads_in_any_order(cache):
    shape, n = (2, 3, 3), 50
    c, built = open_or_build("r" * 32, n, shape, _records(n, shape), describe="records",
                             log=open(os.devnull, "w"))
    assert built and isinstance(c, ImageCache) and c.nbytes == n * 18
    rows = [7, 3, 4, 5, 5, 49, 0, 48]  # unsorted, a run, a repeat, both ends
    x = c.read(rows)
    assert x.shape == (8, 2, 3, 3) and x.dtype == torch.uint8
    assert x[:, 1, 2, 2].tolist() == rows and bool((x == x[:, :1, :1, :1]).all())
    assert torch.equal(c.read_all()[rows], x)
    again, built = open_or_build("r" * 32, n, shape, _records(n, shape), describe="records")
    assert built is False and torch.equal(again.read(rows), x)


def test_reads_from_threads_agree(cache):
    """Positioned reads share no file offset: the trainer's prefetch thread and the main thread both read."""
    shape, n = (1, 8, 8), 300
    c, _ = open_or_build("t" * 32, n, shape, lambda i: np.full(shape, i % 251, np.uint8), describe="t",
                         log=open(os.devnull, "w"))
    bad = []

    def reader(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            rows = rng.integers(0, n, 17)
            if c.read(rows)[:, 0, 0, 0].tolist() != (rows % 251).tolist():
                bad.append(seed)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
