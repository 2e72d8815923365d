"""`cnnkit convolve` and `cnnkit scratch-train`."""
import json

import numpy as np
import pytest
from PIL import Image
from scipy.signal import correlate2d

from cnnkit.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_convolve_sample_json_matches_scipy(capsys, tmp_path):
    out_png = tmp_path / "edges.png"
    code, out, _ = run(capsys, "convolve", "camera", "--kernel", "sobel_x", "--out", out_png, "--json")
    d = json.loads(out)
    assert code == 0 and d["shape"] == [510, 510] and d["input_shape"] == [512, 512] and d["kernel"] == "sobel_x"
    import skimage.data

    expected = correlate2d(skimage.data.camera() / 255.0, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], mode="valid")
    for stat in ("min", "max", "mean", "std"):
        assert d["stats"][stat] == pytest.approx(getattr(expected, stat)(), rel=1e-9, abs=1e-12)
    png = np.asarray(Image.open(out_png))
    assert png.shape == (510, 510) and png.dtype == np.uint8
    assert png.min() == 0 or png.max() == 255  # scaled for viewing: the full range is used
    assert d["out"] == str(out_png) and not list(tmp_path.glob(".convolve-*"))  # no temp file left


def test_convolve_a_user_image_the_lesson_square(capsys, tmp_path):
    square = np.zeros((5, 5), np.uint8)
    square[1:4, 1:4] = 255
    src = tmp_path / "square.png"
    Image.fromarray(square).save(src)
    code, out, _ = run(capsys, "convolve", src, "--kernel", "sobel_x", "--padding", "1", "--out",
                       tmp_path / "gx.png", "--json")
    d = json.loads(out)
    assert code == 0 and d["shape"] == [5, 5] and d["padding"] == 1
    assert d["stats"]["min"] == -4.0 and d["stats"]["max"] == 4.0 and d["stats"]["mean"] == 0.0
    png = np.asarray(Image.open(tmp_path / "gx.png"))
    # the edge map of the lesson: [1, 1, 0, −1, −1]·[1, 3, 4, 3, 1]; 0 is mid-grey, ±4 white/black
    assert png[2].tolist() == [255, 255, 128, 0, 0] and png[0, 2] == 128


def test_convolve_matrix_stride_same_and_side_by_side(capsys, tmp_path):
    code, out, _ = run(capsys, "convolve", "chelsea", "--kernel", "[[1,0,-1],[2,0,-2],[1,0,-1]]", "--stride", 2,
                       "--padding", 1, "--out", tmp_path / "c.png", "--side-by-side")
    assert code == 0
    assert "sample chelsea (grayscale): 300×451" in out and "150×226 (stride 2, padding 1)" in out
    assert "raw     min" in out and "kernel  matrix 3×3: [1 0 -1; 2 0 -2; 1 0 -1]" in out
    w, h = Image.open(tmp_path / "c.png").size
    assert h == 300 and w == 451 + 8 + 452  # the map, 150×226, resized to the photo's height
    code, out, _ = run(capsys, "convolve", "coffee", "--kernel", "gaussian", "--padding", "same",
                       "--out", tmp_path / "sub" / "g.png", "--json")
    d = json.loads(out)
    assert d["shape"] == [400, 600] and 0 <= d["stats"]["min"] < d["stats"]["max"] <= 1  # a blur stays in 0…1
    assert (tmp_path / "sub" / "g.png").is_file()


@pytest.mark.parametrize("argv,needle", [
    (["camra", "--kernel", "box"], "Did you mean 'camera'?"),
    (["missing/photo.png", "--kernel", "box"], "no such image file: 'missing/photo.png'"),
    (["camera", "--kernel", "sobelx"], "Did you mean 'sobel_x'?"),
    (["camera", "--kernel", "[[1,2],[3]]"], "expected a matrix like '[[1,0,-1],[2,0,-2],[1,0,-1]]'"),
    (["camera", "--kernel", "box", "--padding", "same", "--stride", "2"], "needs --stride 1"),
    (["camera", "--kernel", "box", "--padding", "wide"], "--padding 'wide': expected valid, same or a number"),
    (["camera", "--kernel", "box", "--stride", "0"], "--stride must be at least 1"),
    (["text", "--kernel", "[[1,0],'x']"], "it is not a list of rows"),
])
def test_convolve_errors_are_one_line(capsys, tmp_path, argv, needle):
    code, out, err = run(capsys, "convolve", *argv, "--out", tmp_path / "x.png")
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_convolve_unreadable_image_and_kernel_too_large(capsys, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, _, err = run(capsys, "convolve", bad, "--kernel", "box", "--out", tmp_path / "x.png")
    assert code == 2 and f"{bad}: not an image file" in err and len(err.strip().splitlines()) == 1
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tiny)
    code, _, err = run(capsys, "convolve", tiny, "--kernel", "sobel_x", "--out", tmp_path / "x.png")
    assert code == 2 and "larger than the image 2×2" in err
    code, _, err = run(capsys, "convolve", tiny, "--kernel", "sobel_x", "--out", tmp_path / "x.jpg")
    assert code == 2 and "expected a .png file name" in err


def test_scratch_train_json_and_last_line(capsys, monkeypatch):
    monkeypatch.setenv("CNNKIT_PROGRESS_INTERVAL", "0")  # a progress line at every update (not a terminal)
    code, out, _ = run(capsys, "scratch-train", "--epochs", 2, "--json")
    d = json.loads(out)
    assert code == 0 and d["epochs"] == 2 and len(d["history"]) == 2 and 0.5 < d["val_acc"] <= 1
    assert d["params"] == 5750 and d["seconds"] > 0
    code, out, err = run(capsys, "scratch-train", "--epochs", 2)
    last = out.strip().splitlines()[-1]
    assert code == 0 and last == f"val_acc={d['val_acc']:.4f}"  # same seed, same result
    assert "epoch   2" in out + err and "steps/s" in err and "\r" not in err  # per-epoch and progress lines


def test_scratch_train_rejects_bad_settings(capsys):
    code, _, err = run(capsys, "scratch-train", "--epochs", 0)
    assert code == 2 and "--epochs must be at least 1" in err
