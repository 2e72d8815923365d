"""`cnnkit predict` as a user runs it: files, folders, globs and sample names in one call, CSV and JSON out,
unreadable files; and the one Predictor giving a saved image the probabilities evaluation gave its sample."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data.images import list_images
from cnnkit.run import Predictor, load_run_data
from idx_files import write_idx


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def clothes(tmp_path_factory, fmnist_small):
    """A folder of real Fashion-MNIST PNGs (train/ and val/, 3 classes) and a run trained on it."""
    xtr, ytr, _, _ = fmnist_small
    names = {0: "tshirt", 1: "trouser", 7: "sneaker"}
    root = tmp_path_factory.mktemp("predict") / "clothes"
    counts: dict[int, int] = {}
    for img, label in zip(xtr, ytr):
        k = counts.get(int(label), 0)
        if int(label) not in names or k >= 40:
            continue
        counts[int(label)] = k + 1
        d = root / ("val" if k % 5 == 0 else "train") / names[int(label)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{k:03d}.png")
    out = cnnkit.train(str(root), epochs=4, out=str(root.parent / "run"), quiet=True, report=False)
    return root, Path(out["run_dir"])


def test_a_folder_a_glob_a_sample_and_a_file_in_one_call(clothes, capsys):
    root, run_dir = clothes
    one_file = root / "train" / "sneaker" / "001.png"
    code, out, err = run(capsys, "predict", run_dir, root / "val", f"{root}/train/tshirt/*.png", "camera", one_file,
                         "--top-k", "2", "--json")
    assert code == 0, err
    got = json.loads(out)
    folder = [str(p) for p in list_images(root / "val")]
    globbed = sorted(str(p) for p in (root / "train" / "tshirt").glob("*.png"))
    assert len(folder) == 24 and len(globbed) == 32
    assert [p["image"] for p in got["predictions"]] == folder + globbed + ["camera", str(one_file)]
    assert got["run_dir"] == str(run_dir) and "unreadable" not in got
    classes = {"sneaker", "trouser", "tshirt"}
    for p in got["predictions"]:
        (c1, p1), (c2, p2) = [(t["class"], t["probability"]) for t in p["top"]]
        assert {c1, c2} <= classes and c1 != c2 and 1.0 >= p1 >= p2 >= 0.0 and p1 + p2 <= 1.0 + 1e-6
    # the model learnt something: most validation images get their folder's class
    right = sum(p["top"][0]["class"] == Path(p["image"]).parent.name for p in got["predictions"][:24])
    assert right >= 20
    # the same numbers as the Python API gives, file by file and for the sample
    pred = Predictor.from_run(run_dir)
    api = pred.predict([folder[3], "camera"], top_k=2)
    for row, top in zip([got["predictions"][3], got["predictions"][-2]], api):
        assert [t["class"] for t in row["top"]] == [c for c, _ in top]
        assert np.allclose([t["probability"] for t in row["top"]], [p for _, p in top], atol=1e-6)
    # without --json: one line per image, in the same order
    code, out, _ = run(capsys, "predict", run_dir, root / "val", "camera", "--top-k", "1")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 25 and lines[0].startswith(f"{folder[0]}: ") and lines[-1].startswith("camera: ")


def test_save_csv_writes_one_row_per_image_with_the_top_k(clothes, capsys, tmp_path):
    root, run_dir = clothes
    out_csv = tmp_path / "preds.csv"
    code, out, err = run(capsys, "predict", run_dir, root / "val", "--top-k", "3", "--save-csv", out_csv, "--json")
    assert code == 0
    got = json.loads(out)
    assert got["csv"] == str(out_csv)
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["image", "class1", "probability1", "class2", "probability2", "class3", "probability3"]
    assert len(rows) == 1 + 24 and [r[0] for r in rows[1:]] == [p["image"] for p in got["predictions"]]
    for r, p in zip(rows[1:], got["predictions"]):
        assert r[1::2] == [t["class"] for t in p["top"]] and sorted(r[1::2]) == ["sneaker", "trouser", "tshirt"]
        probs = [float(v) for v in r[2::2]]
        assert probs == [t["probability"] for t in p["top"]] and probs == sorted(probs, reverse=True)
        assert abs(sum(probs) - 1.0) < 1e-5  # top-3 of 3 classes: all of the distribution
    code, _, err = run(capsys, "predict", run_dir, root / "val", "--top-k", "1", "--save-csv", out_csv)
    assert code == 0 and f"wrote 24 predictions to {out_csv}" in err
    assert next(csv.reader(out_csv.open())) == ["image", "class1", "probability1"]


def test_batch_size_changes_memory_not_predictions(clothes, capsys):
    root, run_dir = clothes
    outs = []
    for bs in ("1", "7", "64"):
        code, out, _ = run(capsys, "predict", run_dir, root / "val", "--top-k", "3", "--batch-size", bs, "--json")
        assert code == 0
        outs.append(json.loads(out)["predictions"])
    for other in outs[1:]:
        assert [p["image"] for p in other] == [p["image"] for p in outs[0]]
        for a, b in zip(outs[0], other):
            assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
            assert np.allclose([t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=2e-6)
    code, _, err = run(capsys, "predict", run_dir, root / "val", "--batch-size", "0")
    assert code == 2 and "--batch-size must be at least 1, got 0" in err and len(err.strip().splitlines()) == 1


def test_an_unreadable_file_stops_or_is_skipped(clothes, capsys, tmp_path):
    root, run_dir = clothes
    images = tmp_path / "mixed"
    images.mkdir()
    for name in ("a.png", "c.png"):
        (images / name).write_bytes((root / "val" / "trouser" / "000.png").read_bytes())
    good = (root / "val" / "tshirt" / "000.png").read_bytes()
    (images / "b.png").write_bytes(good[: len(good) // 2])  # truncated: found only when decoded
    code, out, err = run(capsys, "predict", run_dir, images, "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(images / "b.png") in err
    assert "corrupt or truncated" in err

    code, out, err = run(capsys, "predict", run_dir, images, "--json", "--on-bad-image", "skip")
    got = json.loads(out)
    assert code == 0 and [p["image"] for p in got["predictions"]] == [str(images / "a.png"), str(images / "c.png")]
    assert [u["image"] for u in got["unreadable"]] == [str(images / "b.png")]
    assert "corrupt or truncated" in got["unreadable"][0]["error"]
    assert err.startswith("warning: ") and str(images / "b.png") in err
    assert all(p["top"][0]["class"] == "trouser" for p in got["predictions"])

    code, out, err = run(capsys, "predict", run_dir, images / "a.png", tmp_path / "gone.png", "--on-bad-image",
                         "skip")
    assert code == 0 and out.startswith(f"{images / 'a.png'}: trouser") and "gone.png: no such file" in err
    code, _, err = run(capsys, "predict", run_dir, "camra")
    assert code == 2 and "Did you mean 'camera'" in err and len(err.strip().splitlines()) == 1


def test_a_folder_or_glob_without_images_is_one_line(clothes, capsys, tmp_path):
    _, run_dir = clothes
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here\n")
    code, out, err = run(capsys, "predict", run_dir, empty)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"{empty} is a folder with no images" in err
    code, _, err = run(capsys, "predict", run_dir, f"{empty}/*.png")
    assert code == 2 and "matches no file" in err and len(err.strip().splitlines()) == 1


# --- a saved image predicts as its sample was evaluated ------------------------------------------------------
def _idx_source(tmp_path, fmnist_small) -> str:
    xtr, ytr, xte, yte = fmnist_small
    write_idx(tmp_path / "train-images-idx3-ubyte", xtr[:600])
    write_idx(tmp_path / "train-labels-idx1-ubyte", ytr[:600])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", xte[:100])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte[:100])
    return f"fashion-mnist:{tmp_path}"


def _csv_source(tmp_path) -> str:
    """RGB PNGs of several sizes and shapes (so they are resized and cropped), listed in a CSV."""
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    (tmp_path / "img").mkdir()
    for i in range(40):
        label = ("warm", "cool")[i % 2]
        tint = (220, 120, 40) if label == "warm" else (40, 120, 220)
        w, h = [(40, 30), (30, 44), (64, 64), (50, 20)][i % 4]
        a = np.clip(rng.normal(tint, 50, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return str(tmp_path / "labels.csv")


@pytest.mark.parametrize("source", ["digits", "fmnist", "folder", "csv"])
def test_a_saved_sample_predicts_as_evaluation_scored_it(source, tmp_path, fmnist_small, clothes, capsys):
    if source == "folder":
        run_dir = clothes[1]
    else:
        spec = {"digits": "digits", "fmnist": lambda: _idx_source(tmp_path, fmnist_small),
                "csv": lambda: _csv_source(tmp_path)}[source]
        spec = spec() if callable(spec) else spec
        options = {"img_size": 16} if source == "csv" else {}
        run_dir = Path(cnnkit.train(spec, epochs=2, out=str(tmp_path / "run"), quiet=True, report=False,
                                    **options)["run_dir"])
    pred = Predictor.from_run(run_dir)
    ds = load_run_data(pred)
    split = ds.split("test" if "test" in ds.splits else "val")
    probs = pred.probs_split(split)  # what evaluate scores
    assert probs.shape == (len(split), len(pred.classes))
    picks = [0, len(split) // 2, len(split) - 1]
    for i in picks:
        x = split.get([i])[0]
        png = tmp_path / f"sample{i}.png"
        Image.fromarray(x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()).save(png)
        assert torch.equal(torch.from_numpy(pred.image(str(png))), x)
        assert torch.allclose(pred.predict_proba([str(png)])[0], probs[i], atol=1e-5)
        if split.paths is not None:  # a file source: its own file too
            assert torch.allclose(pred.predict_proba([split.paths[i]])[0], probs[i], atol=1e-5)
    assert probs.max(1).values.mean() > 1.5 / len(pred.classes)  # a trained model, not a uniform guess
    # and the command line says the same
    png = tmp_path / f"sample{picks[1]}.png"
    code, out, _ = run(capsys, "predict", run_dir, png, "--top-k", str(len(pred.classes)), "--json")
    top = json.loads(out)["predictions"][0]["top"]
    assert code == 0
    cli = torch.tensor([next(t["probability"] for t in top if t["class"] == c) for c in pred.classes])
    assert torch.allclose(cli, probs[picks[1]], atol=1e-5)


def test_a_large_jpeg_predicts_as_evaluation_scored_it(tmp_path):
    rng = np.random.default_rng(0)
    for c, tint in (("red", (200, 60, 60)), ("blue", (60, 60, 200))):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(6):
            a = np.clip(rng.normal(tint, 60, (30, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).resize((400, 300), Image.Resampling.BICUBIC).save(
                tmp_path / "photos" / c / f"{i}.jpg", quality=90)
    run_dir = cnnkit.train(str(tmp_path / "photos"), epochs=1, img_size=32, val_fraction=0.34,
                           out=str(tmp_path / "run"), quiet=True, report=False)["run_dir"]
    pred = Predictor.from_run(run_dir)
    val = load_run_data(pred).val
    for i in range(len(val)):
        assert torch.equal(torch.from_numpy(pred.image(val.paths[i])), val.get([i])[0])
