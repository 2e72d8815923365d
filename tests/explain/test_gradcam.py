"""Grad-CAM through Captum, against Grad-CAM written out with autograd, on every registered model."""
import pytest
import torch

from cam_oracle import layer_grad

import cnnkit
from cnnkit.errors import CnnkitError, UnknownNameError
from cnnkit.explain.features import stage_maps
from cnnkit.explain.gradcam import cam_layer, gradcam, resolve_target


def oracle_cam(model, layer, x, targets):
    """Grad-CAM by the paper's formula: ReLU(sum_c mean_ij(dy/dA_c) * A_c)."""
    a, grad = layer_grad(model, layer, x, targets)
    return torch.relu((grad.mean((2, 3), keepdim=True) * a).sum(1)).detach()


@pytest.mark.parametrize("name", [n for n in cnnkit.list_models() if n != "mlp"])  # mlp: no feature maps
def test_every_model_matches_the_oracle(name):
    model = cnnkit.create_model(name, num_classes=7, in_channels=3, input_size=(32, 32)).eval()
    inplace_before = {n: m.inplace for n, m in model.named_modules() if hasattr(m, "inplace")}
    x = torch.randn(2, 3, 32, 32)
    g = gradcam(model, x, [1, 5])
    # the layer: the last stage with more than one position (LeNet-5's C5 is 1×1 at 32×32)
    maps = stage_maps(model, x)
    expected_layer = [n for n in model.stage_names if maps[n].shape[-1] * maps[n].shape[-2] > 1][-1]
    assert g.layer == expected_layer
    assert g.cam.shape == (2, 32, 32) and g.target == [1, 5]
    assert torch.isfinite(g.cam).all() and g.cam.min() >= 0 and g.cam.max() <= 1
    h, w = maps[g.layer].shape[-2:]
    assert g.raw.shape == (2, h, w)
    want = oracle_cam(model, g.layer, x, [1, 5])
    scale = want.abs().max().clamp_min(1e-30)
    assert torch.allclose(g.raw / scale, want / scale, atol=1e-4), (g.raw, want)
    for k in range(2):  # each shown map peaks at 1 unless nothing raised the score
        assert g.cam[k].max() == pytest.approx(1.0) or g.raw[k].max() <= 0
    # nothing about the model changed: eval mode, in-place flags, probabilities
    assert not model.training
    assert {n: m.inplace for n, m in model.named_modules() if hasattr(m, "inplace")} == inplace_before
    with torch.no_grad():
        assert torch.allclose(g.probs, torch.softmax(model(x), 1), atol=1e-5)


def test_default_target_is_the_prediction_and_map_is_upsampled():
    torch.manual_seed(3)
    model = cnnkit.create_model("simplecnn", num_classes=10, in_channels=1, input_size=(28, 28))
    x = torch.randn(3, 1, 28, 28)
    g = gradcam(model, x)
    assert g.target == g.probs.argmax(1).tolist()
    assert g.layer == "pool2" and g.raw.shape == (3, 7, 7) and g.cam.shape == (3, 28, 28)
    # bilinear upsampling of the 7×7 map: the brightest 4×4 block of the input-size map sits on the
    # brightest layer unit
    k = 0
    i, j = divmod(int(g.raw[k].argmax()), 7)
    r, c = divmod(int(g.cam[k].argmax()), 28)
    assert abs(r - (4 * i + 1.5)) <= 2.5 and abs(c - (4 * j + 1.5)) <= 2.5
    assert model.training  # the training flag is given back


def test_frozen_weights_still_give_a_map():
    model = cnnkit.create_model("resnet18", num_classes=4, in_channels=3, input_size=(32, 32)).eval()
    model.requires_grad_(False)
    g = gradcam(model, torch.randn(1, 3, 32, 32), 2)
    assert torch.isfinite(g.cam).all() and g.raw.abs().sum() > 0


def test_cam_layer_and_targets():
    lenet = cnnkit.create_model("lenet5", in_channels=1)
    assert cam_layer(lenet, torch.zeros(1, 1, 32, 32)) == "s4"  # C5 is 1×1
    big = cnnkit.create_model("lenet5", in_channels=1, input_size=(64, 64))
    assert cam_layer(big, torch.zeros(1, 1, 64, 64)) == "c5"  # 9×9 at 64×64
    classes = ["T-shirt", "Trouser", "Bag"]
    assert resolve_target("Bag", classes) == 2 and resolve_target("1", classes) == 1 and resolve_target(0, classes) == 0
    assert resolve_target(None, classes) is None
    with pytest.raises(UnknownNameError, match="Did you mean 'Trouser'"):
        resolve_target("Trousers", classes)
    with pytest.raises(CnnkitError, match="out of range"):
        resolve_target("3", classes)
    with pytest.raises(UnknownNameError, match="unknown layer 'nope'"):
        gradcam(lenet, torch.zeros(1, 1, 32, 32), layer="nope")
