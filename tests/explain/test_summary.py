"""The summary's figures: shapes, parameters, MACs (against torch's FlopCounterMode) and receptive fields
(against the published values and against the gradient's support)."""
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cnnkit import create_model, list_models
from cnnkit.errors import InputSizeError
from cnnkit.explain.receptive_field import receptive_field
from cnnkit.explain.summary import compare_fc, summarize


def test_simplecnn_table():
    s = summarize(create_model("simplecnn"), (3, 32, 32))
    shapes = [r.output_shape for r in s.layers if r.name in ("conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2")]
    assert shapes == [[32, 32, 32], [32, 16, 16], [64, 16, 16], [64, 8, 8], [4096], [128], [10]]
    assert s.layer("conv1").params == 896
    assert s.total_params == s.trainable_params == 545_098 and s.non_trainable_params == 0
    assert s.layer("conv1").macs == 32 * 32 * 32 * 3 * 9
    assert s.layer("fc1").macs == 4096 * 128
    # conv1 3x3 → 3, pool 2 → 4, conv 3 → 8, pool 2 → 10
    assert [s.layer(n).receptive_field for n in ("conv1", "pool1", "conv2", "pool2")] == [3, 4, 8, 10]


def test_frozen_parameters_are_counted_as_non_trainable():
    model = create_model("simplecnn")
    model.conv1.requires_grad_(False)
    s = summarize(model, (3, 32, 32))
    assert s.non_trainable_params == 896 and s.trainable_params == 545_098 - 896


def test_resnet50_totals():
    s = summarize(create_model("resnet50"), (3, 224, 224))
    assert s.total_params == 25_557_032
    assert s.layer("layer4").output_shape == [2048, 7, 7]
    assert s.layer("layer4").receptive_field == 427


@pytest.mark.parametrize("name,layer,expected", [
    ("alexnet", "features.12", 195), ("vgg16", "features.30", 212), ("resnet50", "layer4", 427),
    ("convnext_tiny", "features.1", 76), ("convnext_tiny", "features.2", 80),
])
def test_published_receptive_fields(name, layer, expected):
    """Araujo et al., Distill 2019, and torchvision's ResNet-50 (v1.5) last stage. ConvNeXt-T by hand: the 4×4
    stride-4 stem, then three blocks whose 7×7 depthwise convolutions add 6×4 pixels each (4 + 72 = 76; the
    2×2 stride-2 downsampling adds 4); its blocks run channels-last (permute, LayerNorm, Linear), which the
    tracker must follow without losing the positions."""
    assert receptive_field(create_model(name), (3, 224, 224), layer).size == (expected, expected)


def test_receptive_field_equals_the_gradient_support():
    """With no padding, unit (0,0) depends on exactly the input pixels inside its computed field."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.Conv2d(2, 2, 5, stride=2, dilation=2),
                        nn.AvgPool2d(3, stride=1), nn.Conv2d(2, 1, 3))
    for m in net:
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 0.1, 1.0)
    x = torch.zeros(1, 1, 80, 80, requires_grad=True)
    net(x)[0, 0, 0, 0].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    rf = receptive_field(net, (1, 80, 80), "4")
    assert (rows.min().item(), rows.max().item()) == (rf.left[0], rf.right[0])
    assert rf.size[0] == rows.max().item() + 1


@pytest.mark.parametrize("name", list_models())
def test_macs_match_torch_flop_counter(name):
    model = create_model(name, input_size=(64, 64)).eval()
    shape = (model.in_channels, 64, 64)
    s = summarize(model, shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    assert s.macs == counter.get_total_flops() // 2
    assert s.total_params == sum(p.numel() for p in model.parameters())


def test_compare_fc_is_the_lessons_figure():
    s = summarize(create_model("simplecnn", input_size=(224, 224)), (3, 224, 224))
    fc = compare_fc((3, 224, 224), 1024, s.layer("conv1"))
    assert fc["fc_params"] == 154_141_696 and fc["conv_params"] == 896


def test_too_small_input_is_a_clear_error():
    with pytest.raises(InputSizeError, match="too small for alexnet"):
        summarize(create_model("alexnet"), (3, 32, 32))
