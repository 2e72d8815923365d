"""`cnnkit compare`: every column measured for real on scikit-learn's digits, the MLP indifferent to pixel order,
and bad model names or sizes refused before anything trains."""
import json
import subprocess
import sys

import pytest

import cnnkit
from cnnkit.errors import CnnkitError, UnknownNameError


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    return cnnkit.compare("digits", ["mlp", "lenet5"], epochs=3, img_size=16, out=out, quiet=True)


def test_every_column_is_measured(result):
    from cnnkit.explain.compare import COLUMNS

    rows = {r["model"]: r for r in result["models"]}
    assert list(rows) == ["mlp", "lenet5"] and result["evaluated_on"] == "val"  # digits has no test split
    for r in rows.values():
        assert all(r.get(k) is not None for k, _, _ in COLUMNS if k != "receptive_field"), r
        for k in ("val_acc", "test_acc", "train_acc", "shift1_acc", "shift2_acc", "shift4_acc", "permuted_acc"):
            assert 0 <= r[k] <= 1
        assert r["gap"] == pytest.approx(r["train_acc"] - r["val_acc"], abs=1e-4)
    assert rows["mlp"]["params"] == 16 * 16 * 1024 + 1024 + 1024 * 10 + 10   # flatten → 1,024 → 10
    assert rows["lenet5"]["params"] == 61_706 and rows["lenet5"]["receptive_field"] == 32
    assert rows["mlp"]["receptive_field"] is None  # no convolution: nothing to report
    assert rows["mlp"]["val_acc"] > 0.85 and rows["lenet5"]["val_acc"] > 0.5
    # an MLP sees its inputs as an unordered list: one fixed permutation of the pixels changes nothing but noise
    assert abs(rows["mlp"]["permuted_acc"] - rows["mlp"]["val_acc"]) < 0.05
    # a shift of 4 px on a 16 px digit costs both a lot; of 1 px, less than of 4
    assert rows["mlp"]["shift1_acc"] > rows["mlp"]["shift4_acc"]


def test_page_json_and_runs_are_kept(result):
    from pathlib import Path

    out = Path(result["out"])
    saved = json.loads((out / "compare.json").read_text())
    assert saved["models"] == result["models"]
    page = (out / "compare.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and "lenet5" in page
    for r in result["models"]:
        assert (Path(r["run_dir"]) / "model.safetensors").is_file()
        assert (Path(r["permuted_run"]) / "model.safetensors").is_file()
    perm = json.loads((out / "permutation.json").read_text())["permutation"]
    assert sorted(perm) == list(range(256))


def test_unknown_model_is_refused_before_anything_trains(tmp_path):
    with pytest.raises(UnknownNameError, match="lenet"):
        cnnkit.compare("digits", ["mlp", "lenet"], out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_model_that_cannot_take_the_size_says_which(tmp_path):
    with pytest.raises(CnnkitError, match="alexnet cannot take this data.s 1x8x8 images.*--img-size"):
        cnnkit.compare("digits", ["mlp", "alexnet"], out=tmp_path / "y")  # alexnet needs 15x15


def test_the_out_folder_is_claimed_once(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    with pytest.raises(CnnkitError, match="not an empty folder"):
        cnnkit.compare("digits", ["mlp"], out=tmp_path / "taken")
    assert (tmp_path / "taken" / "x").read_text() == "mine"
    with pytest.raises(CnnkitError):  # the data cannot be read: the folder it claimed is given back
        cnnkit.compare("nope:x", ["mlp"], out=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_cli_bad_input_is_one_line():
    out = subprocess.run([sys.executable, "-m", "cnnkit", "compare", "--models", "mlp,nope", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown model in --models 'nope'" in out.stderr and "Traceback" not in out.stderr
