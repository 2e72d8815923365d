"""Hostile and careless data (issue 19): every malformed CSV, IDX file, CIFAR batch, folder or image is one
CnnkitError naming the file, what is wrong and what to do; never a traceback, never a silently wrong data set,
never code run."""
import gzip
import os
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data import BadImagesError, load_data
from cnnkit.data.images import BadImage, open_image
from cnnkit.data.sources import load_source, read_idx
from cnnkit.errors import CnnkitError
from cnnkit.preprocess import Preprocess


@pytest.fixture()
def imgs(tmp_path):
    """Six 8×8 grayscale PNGs in tmp_path/img/."""
    (tmp_path / "img").mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    return tmp_path


def _csv(folder, text, encoding="utf-8", name="labels.csv"):
    p = folder / name
    p.write_bytes(text.encode(encoding))
    return p


# --- CSV ---------------------------------------------------------------------------------------------------
def test_a_latin1_csv_names_the_byte_and_the_line(imgs):
    p = _csv(imgs, "path,label\nimg/0.png,cat\nimg/1.png,caf\u00e9\n", "latin-1")
    with pytest.raises(CnnkitError, match=re.escape(f"{p} is not UTF-8 (byte 0xe9 at line 3); save it as UTF-8")):
        load_source(f"csv:{p}")


def test_a_csv_with_a_byte_order_mark_has_no_phantom_class(imgs):
    rows = "path,label\n" + "".join(f"img/{i}.png,{'ab'[i % 2]}\n" for i in range(6))
    p = _csv(imgs, "\ufeff" + rows, "utf-8")
    src = load_source(f"csv:{p}")
    assert src.classes == ["a", "b"] and len(src.splits["train"]) == 6


def test_a_header_row_of_other_names_is_not_a_class(imgs):
    p = _csv(imgs, "image_path,class\n" + "".join(f"img/{i}.png,{'ab'[i % 2]}\n" for i in range(6)))
    assert load_source(f"csv:{p}").classes == ["a", "b"]


def test_a_file_with_two_labels_names_both_labels_and_lines(imgs):
    p = _csv(imgs, "img/0.png,a\nimg/1.png,b\n./img/0.png,b\n")
    with pytest.raises(CnnkitError, match=re.escape("lists ./img/0.png twice with two labels: 'a' (line 1) and 'b' (line 3)")):
        load_source(f"csv:{p}")


def test_a_duplicated_row_is_refused_naming_both_lines(imgs):
    p = _csv(imgs, "path,label\nimg/0.png,a\nimg/1.png,b\nimg/0.png,a\n")
    with pytest.raises(CnnkitError, match=re.escape("lists img/0.png twice, lines 2 and 4 (label 'a'); remove the "
                                                    "duplicate row")):
        load_source(f"csv:{p}")


@pytest.mark.parametrize("row,says", [
    ("img/2.png,", "line 3: img/2.png has an empty label"),
    ("img/2.png,   ", "line 3: img/2.png has an empty label"),
    (",c", "line 3: no image path before the label 'c'"),
])
def test_an_empty_label_or_path_is_refused_naming_its_line(imgs, row, says):
    p = _csv(imgs, f"img/0.png,a\nimg/1.png,b\n{row}\n")
    with pytest.raises(CnnkitError, match=re.escape(says)):
        load_source(f"csv:{p}")


def test_a_csv_field_too_large_is_one_line(imgs):
    p = _csv(imgs, "img/0.png,a\nimg/1.png,b\nimg/2.png," + "x" * 200_000 + "\n")
    with pytest.raises(CnnkitError, match=r"labels\.csv, line 3: not a CSV row \(field larger than field limit"):
        load_source(f"csv:{p}")


# --- class names and file names with control characters ---------------------------------------------------
@pytest.mark.parametrize("bad", ["b\ncnnkit: fake line", "red\x1b[31m", "tab\there", "rtl\u202eevil", "nul\x00"])
def test_class_names_with_control_characters_are_refused(imgs, bad):
    if "\x00" not in bad:  # no file system allows NUL in a name
        folder = imgs / "f"
        for c in ("a", bad):
            (folder / c).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / c / "0.png")
        with pytest.raises(CnnkitError, match="contains a control character") as e:
            load_source(f"folder:{folder}")
        assert repr(bad) in str(e.value) and "rename it" in str(e.value) and "\n" not in str(e.value)
    q = '"' + bad.replace('"', '""') + '"'
    p = _csv(imgs, f"img/0.png,a\nimg/1.png,{q}\n")
    with pytest.raises(CnnkitError, match=re.escape(f"({p}, line 2) contains a control character")) as e:  # starts on 2
        load_source(f"csv:{p}")
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


def test_a_class_folder_whose_name_is_not_utf8_is_refused(tmp_path):
    folder = tmp_path / "f"
    (folder / "a").mkdir(parents=True)
    os.mkdir(os.fsencode(folder) + b"/caf\xe9")
    for c in (b"a", b"caf\xe9"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.fsdecode(os.fsencode(folder) + b"/" + c + b"/0.png"))
    with pytest.raises(CnnkitError, match=re.escape("class name 'caf\\udce9' ('folder ") + ".*" +
                       re.escape("caf\\udce9') is not UTF-8 text; rename it")) as e:
        load_source(f"folder:{folder}")
    str(e.value).encode("utf-8")  # printable as it is


def test_a_file_name_cannot_forge_a_line_of_output(tmp_path):
    folder = tmp_path / "f"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / c / "0.png")
    evil = folder / "a" / "evil\ncnnkit: fake line.png"
    evil.write_bytes(b"not an image")
    with pytest.raises(BadImagesError) as e:
        load_data(f"folder:{folder}")
    assert "\n" not in str(e.value) and "evil\\ncnnkit: fake line.png" in str(e.value)
    assert str(BadImage("x\x1b[2Jy.png", "corrupt")) == "'x\\x1b[2Jy.png': corrupt"


# --- folders ------------------------------------------------------------------------------------------------
def test_empty_class_folders_are_refused_by_name(tmp_path):
    folder = tmp_path / "f"
    for c in ("a", "b", "empty1", "empty2"):
        (folder / c).mkdir(parents=True)
    for c in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / c / "0.png")
    (folder / "empty2" / "notes.txt").write_text("not an image")
    with pytest.raises(CnnkitError, match=re.escape(f"{folder}: class folder(s) with no images")) as e:
        load_source(f"folder:{folder}")
    assert "empty1/, empty2/; remove them or add images" in str(e.value)


# --- CIFAR batches ------------------------------------------------------------------------------------------
def _cifar(folder, batch, meta=None):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    if meta is not None:
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump(meta, f, protocol=2)
    return folder


def _batch(n=10, labels=None, data=None):
    return {b"data": np.zeros((n, 3072), np.uint8) if data is None else data,
            b"labels": [i % 10 for i in range(n)] if labels is None else labels}


@pytest.mark.parametrize("batch,meta,file,says", [
    (_batch(data=np.zeros((10, 3000), np.uint8)), None, "data_batch_1",
     "b'data' is a uint8 array of shape [10, 3000]; a CIFAR-10 batch holds a uint8 array of N×3072"),
    (_batch(data=np.zeros((10, 3072), np.float32)), None, "data_batch_1", "b'data' is a float32 array"),
    (_batch(data=b"\0" * 30720), None, "data_batch_1", "b'data' is a bytes;"),
    ([1, 2, 3], None, "data_batch_1", "holds a list, not a CIFAR-10 batch (a dict with b'data' and b'labels')"),
    ({b"labels": [0]}, None, "data_batch_1", "has no b'data'/b'labels' entries"),
    (_batch(), {b"label_names": 5}, "batches.meta", "b'label_names' must be a list of at least 2 class names, got int"),
    (_batch(), {b"label_names": [b"a", 7]}, "batches.meta", "b'label_names' must be a list of at least 2 class names"),
    (_batch(), {b"label_names": [b"cat", b"cat"]}, "batches.meta", "names a class twice"),
    (_batch(), {b"label_names": [b"cat", b"\xff"]}, "batches.meta", "is not UTF-8 text"),
    (_batch(), {b"label_names": [b"cat", b"dog\nfake"]}, "batches.meta", "contains a control character"),
    (_batch(labels=[0, 1, 2, 3, 4]), None, "data_batch_1", "has 10 images but 5 labels; the counts must match"),
    (_batch(labels=["a"] * 10), None, "data_batch_1", "b'labels' must be a list of integers (one per image), got a "
                                                      "list holding str"),
    (_batch(labels=[0] * 9 + [12]), None, "data_batch_1", "image 9 has label 12; labels must run from 0 to 9"),
    (_batch(labels=[0] * 9 + [-1]), None, "data_batch_1", "image 9 has label -1"),
    (_batch(labels=[0] * 9 + [2]), {b"label_names": [b"cat", b"dog"]}, "data_batch_1",
     "image 9 has label 2; labels must run from 0 to 1 (2 classes)"),
])
def test_malformed_cifar_batches_are_one_line_naming_the_file(tmp_path, batch, meta, file, says):
    folder = _cifar(tmp_path / "c", batch, meta)
    with pytest.raises(CnnkitError, match=re.escape(f"{folder / file}")) as e:
        load_data(f"cifar10:{folder}")
    assert says in str(e.value)


def test_a_well_formed_small_cifar_batch_still_loads(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
    folder = _cifar(tmp_path / "c", _batch(20, data=data, labels=np.array([i % 2 for i in range(20)])),
                    {b"label_names": [b"cat", b"dog"]})
    d = load_data(f"cifar10:{folder}", val_fraction=0.25)
    assert d.classes == ["cat", "dog"] and len(d.train) + len(d.val) == 20


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "labels", "meta"])
def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = _System(marker)
    batch = evil if where == "top" else _batch(labels=evil) if where == "labels" else _batch()
    folder = _cifar(tmp_path / "c", batch, {b"label_names": evil} if where == "meta" else None)
    with pytest.raises(CnnkitError, match=r"is not a CIFAR-10 batch file \(UnpicklingError: refusing to load "
                                          r"(posix|os)\.system"):
        load_data(f"cifar10:{folder}")
    assert not marker.exists()


# --- IDX ---------------------------------------------------------------------------------------------------
def _idx(dims, payload=b"", ndim=None):
    head = bytes([0, 0, 8, len(dims) if ndim is None else ndim])
    return head + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@pytest.mark.parametrize("raw,says,gz_says", [
    (_idx([2 ** 31, 28, 28], b"\0" * 100), "is truncated: header says [2147483648, 28, 28] = 1,683,627,180,032 values, "
                                           "found 100", "bytes of memory available; a damaged or crafted file?"),
    (_idx([2 ** 32 - 1] * 4, b"\0" * 100), "= 340,282,366,604,025,813,516,997,721,482,669,850,625 values, found 100",
     "= 340,282,366,604,025,813,516,997,721,482,669,850,625 bytes, more than the"),
    (_idx([3, 2, 2], b"\0" * 11), "is truncated: header says [3, 2, 2] = 12 values, found 11", None),
    (_idx([3, 2, 2], b"\0" * 13), "is longer than its header says: header says [3, 2, 2] = 12 values, found 13",
     "is longer than its header says: header says [3, 2, 2] = 12 values, found more than 12"),
    (bytes([0, 0, 8, 3, 0, 0]), "is truncated inside its header (6 bytes)", None),
    (_idx([], b"\0"), "its IDX header says 0 dimensions; expected 1 (labels) or 3 (images)", None),
    (_idx([1] * 9), "its IDX header says 9 dimensions", None),
    (_idx([0, 28, 28]), "its IDX header says [0, 28, 28]: no values", None),
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0" * 4, "is not an IDX file of unsigned bytes (magic 00000d01", None),
    (b"", "is not an IDX file of unsigned bytes (magic empty", None),
])
def test_idx_headers_are_checked_before_anything_is_allocated(tmp_path, raw, says, gz_says):
    """A plain file's header must match its length, a gzipped one's fit in memory (it is then read in chunks):
    neither allocates what a header claims before the bytes are there."""
    for gz in (False, True):
        p = tmp_path / ("f.gz" if gz else "f")
        p.write_bytes(gzip.compress(raw) if gz else raw)
        with pytest.raises(CnnkitError, match=re.escape(f"{p}")) as e:
            read_idx(p)
        assert (gz_says if gz and gz_says else says) in str(e.value)


def test_a_gzipped_idx_claiming_more_than_memory_is_refused_unread(tmp_path, monkeypatch):
    import cnnkit.data.sources as sources

    monkeypatch.setattr(sources, "available_memory", lambda: 1000)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx([10, 28, 28], b"\0" * 7840)))
    with pytest.raises(CnnkitError, match=re.escape(f"{p}: its IDX header says [10, 28, 28] = 7,840 bytes, more "
                                                    "than the 1,000 bytes of memory available")):
        read_idx(p)


def test_a_damaged_gzip_is_one_line(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    good = gzip.compress(_idx([2, 2, 2], b"\1" * 8))
    p.write_bytes(good[:-6])  # the CRC and length trailer cut off
    with pytest.raises(CnnkitError, match=re.escape(f"{p} cannot be read as an IDX file")):
        read_idx(p)
    p.write_bytes(good[:12] + bytes(b ^ 0xFF for b in good[12:20]) + good[20:])  # scrambled deflate data
    with pytest.raises(CnnkitError, match=re.escape(f"{p}")):
        read_idx(p)


def _mnist(folder, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train-images-idx3-ubyte").write_bytes(_idx(list(images.shape), images.tobytes()))
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx(list(labels.shape), labels.tobytes()))
    return folder


@pytest.mark.parametrize("images,labels,says", [
    (np.zeros((10, 4, 4), np.uint8), np.arange(10, dtype=np.uint8) + 3, "train-labels-idx1-ubyte holds label 12 "
                                                                         "(at item 7); mnist has 10 classes, 0-9"),
    (np.zeros((10, 16), np.uint8), np.arange(10, dtype=np.uint8), "train-images-idx3-ubyte holds an array of shape "
                                                                  "[10, 16]; expected N×H×W images and N labels"),
    (np.zeros((10, 4, 4), np.uint8), np.zeros((10, 1), np.uint8), "train-labels-idx1-ubyte holds an array of shape"),
    (np.zeros((10, 4, 4), np.uint8), np.zeros(5, np.uint8), "has 10 images but"),
])
def test_idx_images_and_labels_are_checked(tmp_path, images, labels, says):
    folder = _mnist(tmp_path / "m", images, labels)
    with pytest.raises(CnnkitError, match=re.escape(says)):
        load_data(f"mnist:{folder}")


# --- 16-bit images ------------------------------------------------------------------------------------------
def test_a_16_bit_copy_is_the_8_bit_original_in_a_3_channel_data_set(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "f"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(4):
            g = rng.integers(0, 256, (20, 20), dtype=np.uint8)
            Image.fromarray(g).save(folder / c / f"{i}.png")
            Image.fromarray(g.astype(np.uint16) * 257).save(folder / c / f"{i}_16.png")
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / c / "colour.png")
    assert Image.open(folder / "a" / "0_16.png").mode == "I;16"
    d = load_data(f"folder:{folder}", val_fraction=0.25)
    assert d.channels == 3 and d.preprocess.bits == 16
    x = {path: split.x[k] for split in (d.train, d.val) for k, path in enumerate(split.paths)}
    copies = [path for path in x if path.endswith("_16.png")]
    assert len(copies) == 8
    for path in copies:  # not saturated, not stretched: the original's pixels
        assert torch.equal(x[path], x[path.replace("_16.png", ".png")]), path
    for c in (1, 3):  # predict's path: the file, through a run's preprocessing
        p = Preprocess(c, (12, 12), (0.5,) * c, (0.25,) * c)
        assert np.array_equal(p.load(folder / "a" / "0_16.png"), p.load(folder / "a" / "0.png"))


# --- large images: bounded before decoding, decoded small --------------------------------------------------
def test_a_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (1732, 2309, 3), dtype=np.uint8)  # 4 MP
    Image.fromarray(a).save(tmp_path / "big.jpg", quality=70)
    im = open_image(tmp_path / "big.jpg", draft=(64, 64))
    assert min(im.size) >= 64 and im.size[0] * im.size[1] <= 2309 * 1732 / 16  # 1/8 of each side: 1/64 the pixels
    assert Preprocess(3, (64, 64), (0,) * 3, (1,) * 3).load(tmp_path / "big.jpg").shape == (3, 64, 64)
    with pytest.raises(BadImagesError, match=r"big\.jpg: 2309x1732 = 3,999,188 pixels is over the limit of 1,000,000"):
        open_image(tmp_path / "big.jpg", max_pixels=1_000_000)


def test_predict_decodes_one_batch_at_a_time(tmp_path):
    """500 photos never sit decoded in memory at once: a batch is classified before the next is decoded (here,
    the images of the first batch come out before a missing file in the second is even opened)."""
    from cnnkit.run.predictor import Predictor

    for i in range(6):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
    paths = [str(tmp_path / f"{i}.png") for i in range(6)] + [str(tmp_path / "missing.png")]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    pred = Predictor(model, Preprocess(1, (8, 8), (0.5,), (0.25,)), ["a", "b"], name="t")
    got = []
    with pytest.raises(BadImagesError, match="missing.png: no such file"):
        for item, top in pred.predict_iter(paths, batch_size=3):
            got.append(item)
    assert got == paths[:6]


# --- a run's split.json (a file from a run directory: never trusted) ---------------------------------------
@pytest.mark.parametrize("path,value,says", [
    (("splits", "train"), 5, "splits.train must be one of train/val/test"),
    (("splits", "train", "train"), [[1]], "splits.train.train must be a list of file keys or item numbers"),
    (("splits", "val", "train"), None, "splits.val.train must be a list"),
    (("splits", "bogus"), {}, "splits.bogus must be one of train/val/test"),
    (("classes",), 5, "classes must be a list of names"),
    (("files",), 3, "files must map each file"),
    (("source",), 3, "source.fingerprints must be an object"),
])
def test_a_malformed_split_json_is_one_line(path, value, says):
    import copy

    m = copy.deepcopy(load_data("digits").manifest())
    t = m
    for k in path[:-1]:
        t = t[k]
    t[path[-1]] = value
    with pytest.raises(CnnkitError, match=re.escape(f"split.json is malformed ({says}")):
        load_data("digits", manifest=m)


def test_a_nul_byte_in_a_csv_path_is_one_line(tmp_path):
    """Found by the fuzzing suite: Path.resolve raised ValueError ("embedded null byte") past every check."""
    from cnnkit.data.sources import load_csv_source

    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("path,label\nx\x00y,cat\na.png,dog\n")
    with pytest.raises(CnnkitError, match=r"line 2: the image path .* holds a NUL byte"):
        load_csv_source(tmp_path / "l.csv", "csv:l.csv")
