"""Every registered model: forward and backward at every supported size, the exact parameter counts, and
weight compatibility with torchvision."""
import pytest
import torch
import torchvision.models as tvm

from cnnkit import create_model, list_models
from cnnkit.errors import InputSizeError, UnknownNameError

SIZES = [(1, 28, 28), (3, 32, 32), (3, 224, 224)]
TORCHVISION = {"alexnet": tvm.alexnet, "vgg16": tvm.vgg16, "resnet18": tvm.resnet18, "resnet50": tvm.resnet50,
               "googlenet": lambda: tvm.googlenet(aux_logits=False, init_weights=True),
               "efficientnet_b0": tvm.efficientnet_b0, "mobilenet_v2": tvm.mobilenet_v2,
               "convnext_tiny": tvm.convnext_tiny}


def test_registry_has_the_lesson_models():
    assert set(list_models()) == {"simplecnn", "simplecnn_bn", "lenet5", "alexnet", "vgg16", "resnet18",
                                  "resnet50", "googlenet", "efficientnet_b0", "fastcnn", "mobilenet_v2",
                                  "convnext_tiny", "mlp"}


def test_lazy_models_are_exactly_what_their_module_registers():
    import importlib

    from cnnkit.models import _registry

    for module in set(_registry._LAZY.values()):
        importlib.import_module(module)
    declared = {n for n, m in _registry._LAZY.items()}
    registered_by_lazy_modules = {n for n, fn in _registry._MODELS.items()
                                  if fn.__module__ in set(_registry._LAZY.values())}
    assert declared == registered_by_lazy_modules


def test_training_a_small_model_does_not_import_torchvision():
    """torchvision's import costs 1.4 s of every command; only the classic architectures need it."""
    import subprocess
    import sys

    code = ("import sys, cnnkit, cnnkit.cli.train; from cnnkit import create_model; create_model('fastcnn'); "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("shape", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name, shape):
    model = create_model(name, num_classes=7, in_channels=shape[0], input_size=shape[1:])
    model.train()
    x = torch.randn(2, *shape)
    y = model(x)
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()
    y.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.get_classifier().weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name,classes,expected", [
    ("simplecnn", 10, 545_098), ("simplecnn_bn", 2, 102_082), ("lenet5", 10, 61_706),
    ("resnet50", 1000, 25_557_032), ("resnet18", 1000, 11_689_512), ("vgg16", 1000, 138_357_544),
    ("alexnet", 1000, 61_100_840), ("efficientnet_b0", 1000, 5_288_548), ("mobilenet_v2", 1000, 3_504_872),
    ("convnext_tiny", 1000, 28_589_128),
])
def test_parameter_counts(name, classes, expected):
    in_ch = 1 if name == "lenet5" else 3
    model = create_model(name, num_classes=classes, in_channels=in_ch)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_simplecnn_flatten_follows_the_input():
    assert create_model("simplecnn", input_size=(32, 32)).fc1.in_features == 4096
    assert create_model("simplecnn", input_size=(28, 28), in_channels=1).fc1.in_features == 64 * 7 * 7
    with pytest.raises(InputSizeError, match="built for 32x32"):
        create_model("simplecnn")(torch.zeros(1, 3, 28, 28))


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_weight_compatible_with_torchvision(name):
    """At 3×224×224 the state dict is torchvision's, key for key, and gives the same output."""
    ours = create_model(name, num_classes=1000, input_size=(224, 224)).eval()
    theirs = TORCHVISION[name]().eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("name", [n for n in list_models()
                                  if n not in ("simplecnn", "lenet5", "fastcnn", "mlp")])
@pytest.mark.parametrize("small", [False, True])
def test_declared_minimum_input_is_exact(name, small):
    """min_input_size is the smallest input torch itself accepts; below it, our clear error comes first."""
    model = create_model(name, small_input=small).eval()
    low, c = model.min_input_size, model.in_channels
    with torch.no_grad():
        model.forward_head(model.forward_features(torch.zeros(1, c, low, low)))
        if low > 1:
            with pytest.raises(RuntimeError):
                model.forward_head(model.forward_features(torch.zeros(1, c, low - 1, low - 1)))
            with pytest.raises(InputSizeError, match="too small"):
                model(torch.zeros(1, c, low - 1, low - 1))


def test_small_input_stem_is_chosen_from_the_input_size():
    assert create_model("resnet18", input_size=(32, 32)).small_input
    assert not create_model("resnet18", input_size=(224, 224)).small_input
    assert not create_model("resnet18").small_input
    # the small stem keeps a 4×4 map at the last stage instead of 1×1
    fmap = create_model("resnet18", input_size=(32, 32)).eval().forward_features(torch.zeros(1, 3, 32, 32))
    assert fmap.shape[-2:] == (4, 4)


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(UnknownNameError) as e:
        create_model("resnet5O")
    assert "did you mean 'resnet50'" in str(e.value).lower() and "vgg16" in str(e.value)


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="dropuot"):
        create_model("alexnet", dropuot=0.1)


def test_wrong_channels_say_what_to_do():
    with pytest.raises(InputSizeError, match="in_channels=1"):
        create_model("resnet18")(torch.zeros(1, 1, 64, 64))


@pytest.mark.parametrize("name", list_models())
def test_uniform_interface(name):
    model = create_model(name, num_classes=5, input_size=(32, 32)).eval()
    x = torch.randn(1, model.in_channels, 32, 32)
    maps = model.feature_maps(x)
    assert list(maps) == list(model.stage_names) and all(m.dim() == 4 for m in maps.values())
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)
    with pytest.raises(UnknownNameError):
        model.feature_maps(x, ["no_such_layer"])
