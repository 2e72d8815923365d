"""`cnnkit explain`: the files it writes, its JSON, its errors, on a trained run and on every registered model."""
import json

import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.explain.explainer import SAMPLES, explain, load_image


def run_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.xdist_group("explain_run")
def test_explain_a_trained_run(digits_run, tmp_path, capsys):
    tm = cnnkit.load_model(digits_run)
    path = tmp_path / "digit.png"
    Image.fromarray(cnnkit.load_data("digits", img_size=16).val.x[0, 0].numpy()).save(path)
    out = tmp_path / "ex"
    info = run_json(capsys, "explain", str(digits_run), str(path), "--out", str(out), "--json", "--data", "digits",
                    "--channels", "3", "--per-channel", "5")
    names = sorted(p.split("/")[-1] for p in info["files"])
    assert names == ["feature_maps_pool1.png", "feature_maps_pool2.png", "filters.png", "gradcam.png",
                     "patches_pool1.png", "patches_pool2.png", "receptive_fields.png"]
    assert sorted(p.name for p in out.iterdir()) == names  # every file written is listed, nothing else
    for f in info["files"]:
        w, h = png_size(f)
        assert w >= 300 and h >= 200
    # the prediction is the model's own
    (cls, p), = tm.predict([path], top_k=1)[0]
    assert info["prediction"]["class"] == cls and info["prediction"]["probability"] == pytest.approx(p, abs=1e-5)
    assert info["trained"] is True and info["model"] == "simplecnn" and info["input"] == [1, 16, 16]
    assert info["gradcam"]["layer"] == "pool2" and info["gradcam"]["class"] == cls
    assert list(info["feature_maps"]) == ["pool1", "pool2"] and info["feature_maps"]["pool2"]["shape"] == [64, 4, 4]
    assert [u["layer"] for u in info["receptive_fields"]] == ["pool1", "pool2"]
    assert [m["kernel"] for m in info["filters"]["matches"]] == ["sobel_x", "sobel_y", "horizontal_edge", "laplacian"]
    assert all(-1 <= m["cosine"] <= 1 and 0 <= m["filter"] < 32 for m in info["filters"]["matches"])
    patches = info["patches"]
    assert patches["data"] == "digits val" and patches["images"] == 360
    rows = patches["layers"]["pool2"]
    assert len(rows) == 3 and all(len(r["activations"]) == 5 for r in rows)
    assert all(r["activations"] == sorted(r["activations"], reverse=True) for r in rows)
    # --target by name: Grad-CAM for another class, the prediction unchanged
    other = next(c for c in tm.classes if c != cls)
    info2 = run_json(capsys, "explain", str(digits_run), str(path), "--out", str(tmp_path / "ex2"), "--json",
                     "--target", other, "--layers", "pool1")
    assert info2["gradcam"]["class"] == other and info2["prediction"]["class"] == cls
    assert sorted(p.split("/")[-1] for p in info2["files"]) == ["feature_maps_pool1.png", "filters.png",
                                                              "gradcam.png", "receptive_fields.png"]


@pytest.mark.parametrize("name", [n for n in cnnkit.list_models() if n != "mlp"])  # mlp: tests/models/test_mlp.py
def test_every_registered_model_untrained(name, tmp_path):
    info = explain(name, "astronaut", tmp_path, img_size=32, num_classes=5)
    with torch.device("meta"):  # only its stage names are needed: no weights
        model = cnnkit.create_model(name, num_classes=5, input_size=(32, 32))
    assert info["trained"] is False and "untrained" in info["note"] and info["input"] == [3, 32, 32]
    assert list(info["feature_maps"]) == list(model.stage_names)
    assert len(info["files"]) == 3 + len(model.stage_names)
    assert 0 <= info["prediction"]["probability"] <= 1
    assert sum(t["probability"] for t in info["top5"]) == pytest.approx(1.0, abs=1e-4)  # 5 classes: all of them
    for u in info["receptive_fields"]:
        top, left, bottom, right = u["box"]
        assert 0 <= top <= bottom < 32 and 0 <= left <= right < 32
    for f in info["files"]:
        png_size(f)


def test_text_output_and_errors(tmp_path, capsys):
    assert main(["explain", "lenet5", "camera", "--out", str(tmp_path), "--img-size", "32"]) == 0
    text = capsys.readouterr().out
    assert "untrained" in text and "predicted '" in text and "wrote 6 files" in text
    assert main(["explain", "lenet5", "camra", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown sample image (or image file) 'camra'. Did you mean 'camera'?" in err and "astronaut" in err
    assert main(["explain", "resnet181", "camera", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'resnet18'?" in capsys.readouterr().err
    assert main(["explain", "simplecnn", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err
    argv = ["explain", "simplecnn", "camera", "--out", str(tmp_path), "--img-size", "32"]
    assert main([*argv, "--layers", "conv9"]) == 2
    assert "unknown layer 'conv9'. Did you mean 'conv2'" in capsys.readouterr().err
    assert main([*argv, "--target", "1000"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "no-run"), "camera", "--out", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_every_sample_loads_offline():
    for name in SAMPLES:
        im = load_image(name)
        assert min(im.size) >= 100, name
