"""Regressions found by review: the run's own data however its path is written, a claimed directory after an
early failure, one training per run directory, pixels of 16-bit and transparent images, files of other data,
--save-csv, and malformed inputs that must each be one line."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.engine import Callback
from cnnkit.errors import CnnkitError
from cnnkit.preprocess import Preprocess
from cnnkit.run import format as fmt


def _digits_folder(root: Path, n_per_class: int = 12, classes: int = 3) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in range(classes):
        idx = np.flatnonzero(d.target == c)[:n_per_class]
        (root / str(c)).mkdir(parents=True)
        for i in idx:
            Image.fromarray(np.uint8(d.images[i] * 255 / 16)).save(root / str(c) / f"{i}.png")
    return root


def test_the_runs_own_data_is_found_however_its_path_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _digits_folder(tmp_path / "pics")
    run = cnnkit.train("pics", epochs=1, out="r", quiet=True, report=False)["run_dir"]
    assert json.loads((tmp_path / "r" / "model.json").read_text())["data"]["spec"] == f"folder:{tmp_path / 'pics'}"
    for spec in (None, "pics", "./pics", f"folder:{tmp_path / 'pics'}"):
        rep = cnnkit.evaluate(run, spec, plot=False)
        assert rep["split"] == "val" and "the run's saved split" in rep["images"], spec
    monkeypatch.chdir("/")  # from elsewhere: the saved absolute path still finds it
    assert "the run's saved split" in cnnkit.evaluate(tmp_path / "r", plot=False)["images"]


class _Stop(Callback):
    def after_batch(self):
        raise KeyboardInterrupt


def test_an_early_failure_leaves_the_out_directory_usable(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        cnnkit.train("digits", epochs=1, out=str(tmp_path / "r"), quiet=True, report=False, callbacks=[_Stop()])
    assert not (tmp_path / "r" / fmt.CLAIM).exists()
    assert cnnkit.train("digits", epochs=1, out=str(tmp_path / "r"), quiet=True, report=False)["epochs"] == 1


def test_one_training_per_run_directory_at_a_time(tmp_path):
    cnnkit.train("digits", epochs=1, out=str(tmp_path / "r"), quiet=True, report=False)
    with fmt.training_lock(tmp_path / "r"):  # as if another process were training it
        with pytest.raises(CnnkitError, match="being trained by another process"):
            cnnkit.resume(tmp_path / "r", epochs=2, quiet=True)


def test_16_bit_and_transparent_images_are_the_same_pixels_for_every_model():
    im16 = Image.fromarray(np.array([[6400, 8192, 10000, 11776]], dtype=np.uint16)).convert("I;16")
    gray, rgb = Preprocess(1, (1, 4), (0,), (1,)), Preprocess(3, (1, 4), (0,) * 3, (1,) * 3)
    # one fixed scale, v / 257 (16 bits unless the data set's depth says otherwise), never each image's own range
    assert gray.image(im16)[0, 0].tolist() == [25, 32, 39, 46]
    assert (rgb.image(im16) == gray.image(im16)).all()
    # a 16-bit copy (v × 257) of an 8-bit image is that image, resized or not, for a 1- and a 3-channel model
    rng = np.random.default_rng(0)
    im8 = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    copy16 = Image.fromarray(im8.astype(np.uint16) * 257)
    assert copy16.mode == "I;16"
    for c in (1, 3):
        for size in ((37, 53), (16, 16)):
            p = Preprocess(c, size, (0,) * c, (1,) * c)
            assert np.array_equal(p.image(copy16), p.image(Image.fromarray(im8))), (c, size)
            assert np.array_equal(p.image(copy16.convert("I")), p.image(Image.fromarray(im8))), (c, size)
    clear = Image.new("LA", (4, 1), (0, 0))  # black but fully transparent: white, as the docstring says
    assert gray.image(clear).min() == 255 and rgb.image(clear).min() == 255


def test_other_data_never_overwrites_the_runs_files(tmp_path):
    run = cnnkit.train("digits", epochs=1, out=str(tmp_path / "r"), quiet=True)["run_dir"]
    own = cnnkit.evaluate(run)["confusion_matrix_png"]
    before = Path(own).read_bytes(), (Path(run) / "report.html").read_bytes()
    folder = _digits_folder(tmp_path / "other", 4)
    classes = [str(i) for i in range(10)]
    for c in classes[3:]:  # the same 10 classes, so the run can score it
        (folder / c).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / c / "blank.png")
    rep = cnnkit.evaluate(run, str(folder))
    assert rep["split"] == "all" and rep["confusion_matrix_png"] != own and Path(rep["confusion_matrix_png"]).is_file()
    from cnnkit.explain.report import build_report

    info = build_report(run, str(folder))
    assert Path(info["report"]).name == "report_other.html"
    assert (Path(own).read_bytes(), (Path(run) / "report.html").read_bytes()) == before


def test_save_csv_is_checked_before_predicting_and_has_one_column_pair_per_class(tmp_path, capsys):
    from sklearn.datasets import load_digits

    _digits_folder(tmp_path / "two", 10)
    import shutil

    shutil.rmtree(tmp_path / "two" / "2")
    run = cnnkit.train(str(tmp_path / "two"), epochs=1, out=str(tmp_path / "r"), quiet=True, report=False)["run_dir"]
    img = tmp_path / "x.png"
    Image.fromarray(np.uint8(load_digits().images[0] * 15)).save(img)
    assert main(["predict", run, str(img), "--save-csv", str(tmp_path)]) == 2
    assert "--save-csv" in (err := capsys.readouterr().err) and "is an existing folder" in err
    assert main(["predict", run, str(img), "--save-csv", str(Path(run) / "model.json")]) == 2
    assert "would overwrite a file of the run" in capsys.readouterr().err
    assert main(["predict", run, str(img), "--top-k", "3", "--save-csv", str(tmp_path / "p.csv")]) == 0
    header, row = (tmp_path / "p.csv").read_text().strip().splitlines()
    assert header == "image,class1,probability1,class2,probability2" and len(row.split(",")) == 5


@pytest.mark.parametrize("make,needle", [
    (lambda d: _digits_folder(d, 1, classes=5), "too few images per class for a validation split"),
    (lambda d: (_digits_folder(d / "f", 3), (d / "l.csv").write_text("f/0/0.png,a\nf/0/0.png,b\nf/1/1.png,b\n"),
                d / "l.csv")[-1], "twice"),
])
def test_degenerate_data_is_one_line(tmp_path, make, needle):
    spec = make(tmp_path)
    with pytest.raises(CnnkitError, match=needle):
        cnnkit.load_data(str(spec or tmp_path))


def test_a_damaged_split_json_is_named(tmp_path):
    run = cnnkit.train("digits", epochs=1, out=str(tmp_path / "r"), quiet=True, report=False)["run_dir"]
    m = json.loads((Path(run) / "split.json").read_text())
    m["splits"]["train"] = [1, 2, 3]
    (Path(run) / "split.json").write_text(json.dumps(m))
    with pytest.raises(CnnkitError, match=r"split.json: field 'splits.train' must map"):
        cnnkit.evaluate(run, plot=False)
    assert os.path.exists(Path(run) / "model.safetensors")
