"""Feature maps, filters against the hand-made kernels, receptive-field boxes, top-activating patches."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnkit
from cnnkit.preprocess import Preprocess
from cnnkit.explain import features as feat
from cnnkit.explain.receptive_field import receptive_field
from cnnkit.ops.kernels import get_kernel

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def test_the_lessons_kernels():
    k = feat.handmade_kernels()
    assert list(k) == ["sobel_x", "sobel_y", "horizontal_edge", "laplacian"]
    assert k["sobel_x"].tolist() == SOBEL_X.tolist()
    assert k["horizontal_edge"].tolist() == [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]
    assert k["laplacian"].tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]


def test_a_planted_sobel_filter_is_found():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, size=(16, 1, 3, 3))
    w[5, 0] = 0.3 * SOBEL_X + rng.normal(0, 0.01, size=(3, 3))
    w[9, 0] = -get_kernel("laplacian")  # the opposite sign: cosine -1, never the best match for laplacian
    m = {x.kernel: x for x in feat.match_kernels(w)}
    assert m["sobel_x"].filter == 5 and m["sobel_x"].cosine > 0.99
    assert m["sobel_x"].beats_chance and m["sobel_x"].verdict == "a match (beats chance)"
    # the other kernels' best cosines among 16 random filters: no better than chance (16 random 3×3: 95% ~0.8)
    assert all(not m[k].beats_chance and m[k].verdict == "no better than chance" for k in ("sobel_y", "laplacian"))
    assert m["laplacian"].filter != 9
    assert feat.cosine(w[9, 0], get_kernel("laplacian")) == pytest.approx(-1.0)
    assert m["sobel_x"].compared_at == [3, 3]
    # sobel_x and sobel_y are orthogonal: the planted filter is no match for sobel_y
    assert feat.cosine(SOBEL_X, get_kernel("sobel_y")) == 0.0


def test_rgb_filters_are_compared_by_their_channel_mean():
    w = np.zeros((4, 3, 3, 3))
    w[2] = np.stack([SOBEL_X * 1.0, SOBEL_X * 2.0, SOBEL_X * 0.5])  # the same edge in every colour
    w[3, 0] = SOBEL_X
    w[3, 1] = -SOBEL_X  # red minus green: no response at all on a gray image
    m = feat.match_kernels(w, {"sobel_x": SOBEL_X})[0]
    assert m.filter == 2 and m.cosine == pytest.approx(1.0)
    assert feat.cosine(w[3].mean(0), SOBEL_X) == 0.0


def test_larger_filters_are_compared_with_the_resized_kernel():
    r = feat.resize_kernel(SOBEL_X, (5, 5))
    assert r[:, 2].tolist() == [0.0] * 5  # the zero column stays in the middle
    assert r[0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0] and r[2, 0] == -2.0 and r[2, 4] == 2.0
    w = np.random.default_rng(1).normal(0, 0.05, size=(6, 1, 5, 5))
    w[4, 0] = r
    m = feat.match_kernels(w, {"sobel_x": SOBEL_X})[0]
    assert (m.filter, m.compared_at) == (4, [5, 5]) and m.cosine > 0.99


@pytest.mark.parametrize("name,conv,shape", [
    ("simplecnn", "conv1", (32, 3, 3, 3)),
    ("lenet5", "c1", (6, 1, 5, 5)),
    ("alexnet", "features.0", (64, 3, 11, 11)),
    ("resnet18", "conv1", (64, 3, 7, 7)),
    ("googlenet", "conv1.conv", (64, 3, 7, 7)),
])
def test_first_conv(name, conv, shape):
    model = cnnkit.create_model(name, in_channels=shape[1], input_size=(224, 224))
    assert feat.first_conv(model) is model.get_submodule(conv)
    assert feat.learned_filters(model).shape == shape


def test_channels_ranked_by_mean_activation():
    act = torch.zeros(4, 3, 3)
    act[2] = 5.0
    act[0, 0, 0] = 9.0  # one bright unit: mean 1.0
    act[3] = -1.0
    assert feat.rank_channels(act) == [2, 0, 1, 3]


def test_most_active_unit_and_its_box():
    model = cnnkit.create_model("simplecnn", num_classes=2, in_channels=1, input_size=(32, 32))
    with torch.no_grad():  # conv1 channel 7 detects brightness; everything else is silent
        for p in model.parameters():
            p.zero_()
        model.conv1.weight[7, 0, 1, 1] = 1.0
        model.conv2.weight[3, 7, 1, 1] = 1.0
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 21, 10] = 1.0
    maps = feat.stage_maps(model, x)
    units = {u.layer: u for u in feat.most_active_units(model, maps, (1, 32, 32))}
    assert (units["pool1"].channel, units["pool1"].i, units["pool1"].j) == (7, 10, 5)
    assert (units["pool2"].channel, units["pool2"].i, units["pool2"].j) == (3, 5, 2)
    for layer, u in units.items():
        top, left, bottom, right = u.box
        assert top <= 21 <= bottom and left <= 10 <= right  # the box holds the bright pixel
        rf = receptive_field(model, (1, 32, 32), layer)
        assert u.box == feat.clip_box(rf.box(u.i, u.j), (32, 32)) and u.rf_size == list(rf.size)
    assert units["pool1"].rf_size == [4, 4] and units["pool2"].rf_size == [10, 10]
    assert feat.clip_box((-3.0, -3.0, 6.0, 40.0), (32, 32)) == [0, 0, 6, 31]


def test_top_patches_find_the_planted_images():
    model = cnnkit.create_model("simplecnn", num_classes=2, in_channels=1, input_size=(16, 16))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.conv1.weight[2, 0] = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])  # a Sobel channel
        model.conv1.bias[5] = 0.1  # a constant channel: active everywhere, on average the most
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 20, size=(50, 1, 16, 16), dtype=np.uint8))
    for n, (r, c) in {7: (4, 8), 31: (10, 3)}.items():  # two images with a dark-to-bright vertical edge
        images[n, 0, r - 1:r + 2, c:] = 250
    found = feat.top_patches(model, images, Preprocess(1, (16, 16), (0.0,), (1.0,)), ["pool1"], channels=2,
                             per_channel=3)
    rows = found["pool1"]
    assert [r.channel for r in rows] == [5, 2]
    sobel = rows[1]
    assert sorted(sobel.images[:2]) == [7, 31]
    for n, box, patch in zip(sobel.images[:2], sobel.boxes[:2], sobel.patches[:2]):
        top, left, bottom, right = box
        assert bottom - top + 1 == 4 and right - left + 1 == 4  # pool1's receptive field
        assert patch.shape[1:] == (min(bottom, 15) - max(top, 0) + 1, min(right, 15) - max(left, 0) + 1)
        assert patch.max() == 250 and patch.min() < 20  # the edge is in the patch: bright and dark


def test_stage_maps_reject_a_flat_layer():
    model = cnnkit.create_model("simplecnn")
    with pytest.raises(cnnkit.CnnkitError, match="not a feature map"):
        feat.stage_maps(model, torch.zeros(1, 3, 32, 32), ["fc1"])


def test_no_conv_layer():
    with pytest.raises(cnnkit.CnnkitError, match="no Conv2d"):
        feat.first_conv(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_chance_level_of_the_cosine():
    assert feat.chance_cosine(32, 9) == (0.65, 0.83)
    assert feat.chance_cosine(64, 121)[1] < 0.3  # 11×11 filters rarely look like a kernel by chance
    # untrained (Kaiming-uniform) first layers sit at that chance level
    torch.manual_seed(0)
    best = [feat.match_kernels(nn.Conv2d(1, 32, 3).weight.detach().double().numpy(), {"sobel_x": SOBEL_X})[0]
            for _ in range(60)]
    assert best[0].chance == [0.65, 0.83]
    assert abs(float(np.median([m.cosine for m in best])) - 0.65) < 0.05


def test_random_filters_beat_chance_one_time_in_twenty():
    """The chance level is the 95th percentile of the best cosine of random filters of the same shape: fresh
    Kaiming-uniform layers (what PyTorch draws) are called a match about 5% of the time, not more."""
    torch.manual_seed(0)
    hits = [m.beats_chance for _ in range(200)
            for m in feat.match_kernels(nn.Conv2d(1, 32, 3).weight.detach().double().numpy(), {"sobel_x": SOBEL_X})]
    assert 0.01 <= float(np.mean(hits)) <= 0.10


def test_random_weights_are_called_random():
    torch.manual_seed(0)
    for name in ("simplecnn", "fastcnn", "resnet18"):
        w = feat.learned_filters(cnnkit.create_model(name, in_channels=1, input_size=(28, 28)))
        s = feat.filter_structure(w)
        assert s["random_like"] and s["statistic"] <= s["chance99"]
        v = feat.filters_verdict(feat.match_kernels(w), s, trained=None)
        assert v.startswith("indistinguishable from random weights") or "beating chance" in v
    # an untrained model is called random whatever the statistics say
    assert feat.filters_verdict([], {"statistic": 0.9, "chance99": 0.1, "random_like": False},
                                trained=False).startswith("random weights (untrained model)")
    # smooth filters (what training on photos gives) have structure far beyond chance
    rng = np.random.default_rng(0)
    smooth = np.ones((32, 1, 3, 3)) * rng.normal(size=(32, 1, 1, 1)) + 0.1 * rng.normal(size=(32, 1, 3, 3))
    s = feat.filter_structure(smooth)
    assert not s["random_like"] and s["statistic"] > 0.9


def test_trained_filters_are_not_random(digits_run):
    tm = cnnkit.load_model(digits_run)
    s = feat.filter_structure(feat.learned_filters(tm.model))
    assert not s["random_like"], s
