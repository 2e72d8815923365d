"""Every data source on real files in their real formats: the shared Fashion-MNIST IDX files, and small
CIFAR batches, IDX files, folders and CSVs the tests write."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cnnkit.data import BadImagesError, load_data
from cnnkit.data.sources import read_idx
from cnnkit.errors import CnnkitError, UnknownNameError
from idx_files import write_idx


def test_digits_split_is_fixed_and_stratified():
    a, b = load_data("digits", seed=0), load_data("digits", seed=5)
    assert len(a.train) == 1437 and len(a.val) == 360
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.x, b.val.x)  # fixed, whatever the seed
    counts = torch.bincount(a.val.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class
    assert a.channels == 1 and a.size == (8, 8) and a.train.x.dtype == torch.uint8 and int(a.train.x.max()) == 255


def test_fashion_mnist_from_the_shared_gz_files(fmnist_dir):
    d = load_data(f"fashion-mnist:{fmnist_dir}")
    assert (len(d.train), len(d.val), len(d.split("test"))) == (45_000, 5_000, 10_000)
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
    assert torch.bincount(d.split("test").y).tolist() == [1000] * 10
    assert 0.25 < d.mean[0] < 0.32 and 0.3 < d.std[0] < 0.4


def test_idx_reader_matches_torchvision_on_its_own_layout(tmp_path, fmnist_small):
    """torchvision's FashionMNIST(download=False) reads ROOT/FashionMNIST/raw/*-ubyte: write that, read both."""
    xtr, ytr, xte, yte = fmnist_small
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", xtr)
    write_idx(raw / "train-labels-idx1-ubyte", ytr)
    write_idx(raw / "t10k-images-idx3-ubyte", xte)
    write_idx(raw / "t10k-labels-idx1-ubyte", yte)
    theirs = torchvision.datasets.FashionMNIST(str(tmp_path), train=True, download=False)
    assert np.array_equal(read_idx(raw / "train-images-idx3-ubyte"), theirs.data.numpy())
    ours = load_data(f"fashion-mnist:{tmp_path}", val_fraction=0.2)
    assert len(ours.train) + len(ours.val) == 3000 and len(ours.split("test")) == 600
    torch.testing.assert_close(ours.split("test").x[:, 0], torch.from_numpy(xte.copy()))
    # gzipped and plain files read the same
    write_idx(tmp_path / "g.gz", xte, gz=True)
    assert np.array_equal(read_idx(tmp_path / "g.gz"), xte)


def test_truncated_idx_is_named(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") * 3 + b"\0" * 5)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\0" * 10)
    with pytest.raises(CnnkitError, match="train-images-idx3-ubyte is truncated"):
        load_data(f"mnist:{tmp_path}")


def _write_cifar(folder, n_per_batch=20, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per_batch}, f, protocol=2)
        batches.append((data, labels))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, f, protocol=2)
    return batches


def test_cifar10_batches_in_the_real_format(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    d = load_data(f"cifar10:{tmp_path}", val_fraction=0.25)
    assert d.classes[0] == "airplane" and d.channels == 3 and d.size == (32, 32)
    assert len(d.train) + len(d.val) == 100 and len(d.split("test")) == 20
    test_x = torch.from_numpy(batches[-1][0].reshape(-1, 3, 32, 32))
    assert torch.equal(d.split("test").x, test_x)
    assert d.split("test").y.tolist() == batches[-1][1]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cnnkit-pwned-cifar",))


def test_malicious_cifar_batch_is_refused_without_running_code(tmp_path):
    _write_cifar(tmp_path)
    marker = "/tmp/cnnkit-pwned-cifar"
    if os.path.exists(marker):
        os.unlink(marker)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f)
    with pytest.raises(CnnkitError, match="data_batch_1 is not a CIFAR-10 batch"):
        load_data(f"cifar10:{tmp_path}")
    assert not os.path.exists(marker)


def test_csv_of_paths_and_labels(tmp_path, fmnist_small):
    xtr, ytr, _, _ = fmnist_small
    (tmp_path / "img").mkdir()
    rows = ["path,label"]
    for i in range(40):
        Image.fromarray(xtr[i]).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{'top' if ytr[i] in (0, 2, 4, 6) else 'other'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    d = load_data(f"csv:{tmp_path / 'labels.csv'}", val_fraction=0.25)
    assert d.classes == ["other", "top"] and d.channels == 1 and d.size == (28, 28)
    assert len(d.train) + len(d.val) == 40
    for i in range(40):  # every image lands in one split, pixel for pixel
        path = str((tmp_path / "img" / f"{i}.png").resolve())
        split = d.train if path in d.train.paths else d.val
        assert torch.equal(split.x[split.paths.index(path), 0], torch.from_numpy(xtr[i].copy()))


def test_folder_with_train_and_val(png_folder):
    d = load_data(f"folder:{png_folder}")
    assert d.classes == ["sneaker", "trouser", "tshirt"]
    assert (len(d.train), len(d.val)) == (144, 36) and d.channels == 1 and d.size == (28, 28)


def test_single_folder_is_split_stratified(png_folder, tmp_path):
    flat = tmp_path / "flat"
    for cls in ("sneaker", "trouser", "tshirt"):
        shutil.copytree(png_folder / "train" / cls, flat / cls)
    d = load_data(f"folder:{flat}", val_fraction=0.25, seed=1)
    assert len(d.train) == 108 and len(d.val) == 36
    assert torch.bincount(d.val.y).tolist() == [12, 12, 12]


def test_bad_images_are_each_named_before_training(png_folder):
    cls = png_folder / "train" / "tshirt"
    good = (cls / "001.png").read_bytes()
    (cls / "truncated.png").write_bytes(good[: len(good) // 2])
    (cls / "one_byte.png").write_bytes(b"\x89")
    (cls / "notes.png").write_text("this is not an image\n")
    with pytest.raises(BadImagesError) as e:
        load_data(f"folder:{png_folder}")
    msg = str(e.value)
    for name in ("truncated.png", "one_byte.png", "notes.png"):
        assert str(cls / name) in msg
    assert "3 unreadable" in msg and "--on-bad-image skip" in msg
    d = load_data(f"folder:{png_folder}", on_bad_image="skip")
    assert len(d.train) == 144 and len(d.skipped) == 3


def test_decompression_bomb_is_refused(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("L", (16, 16), 10 * i).save(tmp_path / cls / f"{i}.png")
    Image.new("L", (6000, 6000)).save(tmp_path / "a" / "bomb.png")  # 36 MP of zeros: a ~40 KB file
    with pytest.raises(BadImagesError, match=r"bomb\.png: 6000x6000 = 36,000,000 pixels is over the limit"):
        load_data(f"folder:{tmp_path}", max_pixels=10_000_000)


def test_exif_orientation_and_mixed_modes(tmp_path):
    """A portrait photo stored landscape with EXIF orientation 6 is read upright; RGB+gray → 3 channels."""
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("L", (20, 10), 0).save(tmp_path / cls / f"g{i}.png")
    im = Image.new("RGB", (20, 10), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 10, 10))  # left half blue, right half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    im.save(tmp_path / "a" / "rotated.jpg", exif=exif.tobytes(), quality=95)
    from cnnkit.data.images import open_image

    upright = open_image(tmp_path / "a" / "rotated.jpg")
    assert upright.size == (10, 20)
    a = np.asarray(upright)
    assert a[2, 5, 2] > 200 and a[17, 5, 0] > 200  # blue on top, red below after the rotation
    d = load_data(f"folder:{tmp_path}", img_size=16, val_fraction=0.25)
    assert d.channels == 3 and d.size == (16, 16)


@pytest.mark.parametrize("spec,err", [
    ("digts", UnknownNameError), ("folder:/no/such/dir", CnnkitError), ("fashion-mnist:/no/such", CnnkitError),
    ("csv:/no/such.csv", CnnkitError), ("cifar10", CnnkitError),
])
def test_bad_specs_are_clear(spec, err):
    with pytest.raises(err):
        load_data(spec)
