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
    # the layer: chosen on 64 of the run's validation images (HiResCAM is most faithful at the finer stage here)
    choice = info["gradcam"]["layer_choice"]
    assert info["gradcam"]["layer"] == choice["layer"] == "pool1" and info["gradcam"]["class"] == cls
    assert choice["images"] == 64 and choice["stages"]["pool1"]["beats_random"] and not choice["declined"]
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


def test_out_given_as_an_existing_file_is_one_clear_line(tmp_path, capsys):
    f = tmp_path / "taken.png"
    f.write_bytes(b"x")
    assert main(["explain", "simplecnn", "camera", "--out", str(f), "--img-size", "32"]) == 2
    err = capsys.readouterr().err
    assert f"{f} is an existing file, not a folder" in err and "--out" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert f.read_bytes() == b"x"  # left alone


@pytest.mark.xdist_group("explain_run")
def test_method_faithfulness_and_sanity(digits_run, tmp_path, capsys):
    val = cnnkit.load_data("digits", img_size=16).val
    path = tmp_path / "digit.png"
    Image.fromarray(val.x[3, 0].numpy()).save(path)
    base = ["explain", str(digits_run), str(path), "--layers", "pool2"]
    auto = run_json(capsys, *base, "--out", str(tmp_path / "a"), "--json", "--compare")
    att = auto["attribution"]
    assert att == auto["gradcam"] and att["method"] == "hirescam" and att["head"] == "spatial"  # flatten head
    f = att["faithfulness"]
    assert sorted(f["methods"]) == ["gradcam", "gradcam++", "hirescam", "layercam"]
    assert f["deletion"] == f["methods"]["hirescam"]["deletion"] and 0 <= f["deletion"] <= 1 and 0 <= f["insertion"] <= 1
    assert f["random"]["orders"] == 4 and "zeros in normalised space" in f["deletion_baseline"]
    assert "blur" in f["insertion_baseline"] and f["verdict"]
    lc = run_json(capsys, *base, "--out", str(tmp_path / "b"), "--json", "--method", "layercam", "--no-faithfulness")
    assert lc["attribution"]["method"] == "layercam" and "faithfulness" not in lc["attribution"]
    assert main([*base, "--out", str(tmp_path / "c"), "--sanity", "--method", "gradcam"]) == 0
    text = capsys.readouterr().out
    assert "Grad-CAM at pool2 (spatial head)" in text and "deletion" in text and "random order" in text
    assert "cascading model randomisation" in text and "verdict: passes" in text and "fc2" in text
    assert main([*base, "--out", str(tmp_path / "d"), "--method", "gradcamm"]) == 2
    assert "invalid choice: 'gradcamm'" in capsys.readouterr().err


@pytest.mark.xdist_group("explain_run")
def test_a_blank_map_is_labelled_in_json_text_and_image(digits_run, tmp_path, capsys):
    """A real blank map: a (validation image, class) of the digits run whose Grad-CAM has no positive evidence."""
    from cnnkit.explain.attribution import attribute

    tm = cnnkit.load_model(digits_run)
    val = cnnkit.load_data("digits", img_size=16).val
    x = tm.prepare(val.x[:40])
    found = None
    for t in range(10):
        a = attribute(tm.model, x, t, method="gradcam")
        k = next((k for k, b in enumerate(a.blank) if b), None)
        if k is not None:
            found = (k, t)
            break
    assert found, "no blank Grad-CAM among 40 images × 10 classes"
    k, t = found
    path = tmp_path / "digit.png"
    Image.fromarray(val.x[k, 0].numpy()).save(path)
    argv = ["explain", str(digits_run), str(path), "--layers", "pool2", "--method", "gradcam", "--target", str(t)]
    info = run_json(capsys, *argv, "--out", str(tmp_path / "j"), "--json")
    att = info["attribution"]
    assert att["blank"] is True and att["shown"] == "signed map"
    assert att["reason"].startswith("blank: no positive evidence") and f"'{tm.classes[t]}'" in att["reason"]
    assert main([*argv, "--out", str(tmp_path / "t")]) == 0
    assert "blank: no positive evidence" in capsys.readouterr().out
    # and a map with evidence says nothing of the kind
    hires = run_json(capsys, "explain", str(digits_run), str(path), "--layers", "pool2", "--out", str(tmp_path / "h"),
                     "--json", "--no-faithfulness")
    assert hires["attribution"]["blank"] is False and hires["attribution"]["reason"] is None
