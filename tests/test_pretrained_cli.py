"""`cnnkit predict|explain MODEL --pretrained` and `cnnkit models` as a user runs them: ImageNet names for a
real photo, one clear line for every mistake."""
import json
from pathlib import Path

import pytest

from cnnkit.cli import main

CATS = {"tabby", "tiger cat", "Egyptian cat"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_a_photo_with_imagenet_weights(capsys):
    code, out, _ = run(capsys, "predict", "mobilenet_v2", "--pretrained", "chelsea", "--top-k", "2", "--json")
    assert code == 0
    pred = json.loads(out)["predictions"][0]
    assert pred["image"] == "chelsea" and pred["top"][0]["class"] in CATS and len(pred["top"]) == 2


def test_explain_a_pretrained_network_on_a_real_photo(capsys, tmp_path):
    code, out, _ = run(capsys, "explain", "mobilenet_v2", "chelsea", "--pretrained", "--out", tmp_path, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["trained"] and info["prediction"]["class"] in CATS and info["input"] == [3, 224, 224]
    assert list(info["feature_maps"]) == ["features.1", "features.3", "features.6", "features.13", "features.18"]
    # the hierarchy: each stage's receptive field is larger than the one before
    sizes = [u["rf_size"][0] for u in info["receptive_fields"]]
    assert sizes == sorted(sizes) and sizes[0] < 10 and sizes[-1] >= 224
    assert (tmp_path / "gradcam.png").is_file() and (tmp_path / "feature_maps_features.18.png").is_file()
    # Grad-CAM explains the predicted class; every file listed is written; no "untrained" note
    assert info["gradcam"]["class"] == info["prediction"]["class"] and "note" not in info
    maps = [f"feature_maps_{s}.png" for s in info["feature_maps"]]
    assert sorted(Path(f).name for f in info["files"]) == sorted(["gradcam.png", "receptive_fields.png",
                                                                   "filters.png", *maps])
    assert all(Path(f).is_file() and Path(f).stat().st_size > 1000 for f in info["files"])
    assert info["filters"]["layer"] == "features.0.0" and info["filters"]["shape"][:2] == [32, 3]


@pytest.mark.parametrize("argv, message", [
    (["predict", "mobilenet_v2", "chelsea"], "mobilenet_v2 is a model name: add --pretrained"),
    (["predict", "simplecnn", "--pretrained", "chelsea"], "simplecnn has no pretrained weights; models with"),
    (["predict", "mobilenet_v2", "--weights", "IMAGENET9", "chelsea"], "--weights IMAGENET9: no such file"),
    (["explain", "mobilenet_v2", "chelsea", "--pretrained", "--img-size", "64", "--out", "x"],
     "--img-size and --num-classes are for an untrained model"),
])
def test_mistakes_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code != 0 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_models_says_which_weights_are_here(capsys):
    code, out, _ = run(capsys, "models", "--json")
    weights = json.loads(out)["pretrained"]
    assert code == 0 and "googlenet" not in weights
    v1 = [w for w in weights["mobilenet_v2"] if w["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"][0]
    assert v1["path"].endswith("mobilenet_v2-b0353104.pth")
