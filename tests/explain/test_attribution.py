"""The class activation maps against their formulas written out by hand, the head detection, and blank maps."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnkit
from cnnkit.errors import UnknownNameError
from cam_oracle import layer_grad

from cnnkit.explain.attribution import AUTO_FLATTEN, METHODS, attribute, head_kind, resolve_method


def act_and_grad(model, layer, x, targets):
    """A and dy/dA as float64 arrays."""
    a, g = layer_grad(model, layer, x, targets)
    return a.detach().double().numpy(), g.detach().double().numpy()


def by_hand(method, a, g):
    """Each method's signed map, from the papers' formulas, in NumPy with explicit loops over channels."""
    n, c, h, w = a.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        for k in range(c):
            A, G = a[i, k], g[i, k]
            if method == "gradcam":
                out[i] += G.mean() * A
            elif method == "hirescam":
                out[i] += G * A  # elementwise gradient × activation, summed over channels
            elif method == "layercam":
                out[i] += np.maximum(G, 0) * A
            elif method == "gradcam++":
                den = 2 * G ** 2 + A.sum() * G ** 3
                alpha = np.divide(G ** 2, den, out=np.zeros_like(G), where=den != 0)
                out[i] += (alpha * np.maximum(G, 0)).sum() * A
    return out


@pytest.mark.parametrize("name", ["simplecnn", "fastcnn", "resnet18"])
@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_its_formula(name, method):
    torch.manual_seed(1)
    model = cnnkit.create_model(name, num_classes=6, in_channels=1, input_size=(28, 28)).eval()
    x = torch.randn(3, 1, 28, 28)
    targets = [0, 4, 5]
    res = attribute(model, x, targets, method=method)
    assert res.method == method and res.target == targets
    a, g = act_and_grad(model, res.layer, x, targets)
    want = by_hand(method, a, g)
    scale = np.abs(want).max()
    assert scale > 0
    np.testing.assert_allclose(res.raw.double().numpy() / scale, want / scale, atol=2e-5)
    # the shown maps: the signed one scaled by its largest magnitude, the positive part by its peak
    assert res.cam.shape == res.signed.shape == (3, 28, 28)
    assert float(res.signed.abs().amax()) == pytest.approx(1.0)
    for k in range(3):
        assert res.blank[k] == (float(res.cam[k].max()) == 0.0)
        if not res.blank[k]:
            assert float(res.cam[k].max()) == pytest.approx(1.0) and res.reasons[k] is None
    assert not model.training


def test_cam_equals_gradcam_for_a_global_average_pool_head():
    """Zhou et al.'s CAM for GAP + linear is sum_k w_ck A_k; Grad-CAM's weights are w_ck / (h w): the same map."""
    torch.manual_seed(0)
    model = cnnkit.create_model("resnet18", num_classes=5, in_channels=1, input_size=(28, 28)).eval()
    x = torch.randn(4, 1, 28, 28)
    targets = [0, 1, 2, 3]
    g = attribute(model, x, targets, method="gradcam")
    assert g.head == "global-pool" and g.layer == "layer4"
    with torch.no_grad():
        a = model.feature_maps(x, ["layer4"])["layer4"]
    w = model.get_classifier().weight  # classes × channels
    cam = torch.einsum("nk,nkij->nij", w[targets], a)
    h, wd = a.shape[-2:]
    cam = cam.detach()
    torch.testing.assert_close(g.raw * (h * wd), cam, rtol=1e-4, atol=1e-5 * float(cam.abs().max()))
    # and `auto` picks Grad-CAM (= CAM) for this head
    assert attribute(model, x, targets).method == "gradcam"


def test_head_kind_and_auto():
    x = torch.randn(1, 1, 28, 28)
    kinds = {n: head_kind(cnnkit.create_model(n, in_channels=1, input_size=(28, 28)).eval(), x)
             for n in ("simplecnn", "fastcnn", "resnet18")}
    assert kinds == {"simplecnn": "spatial", "fastcnn": "spatial", "resnet18": "global-pool"}
    assert resolve_method("auto", "spatial") == AUTO_FLATTEN and resolve_method("auto", "global-pool") == "gradcam"
    assert resolve_method("layercam", "spatial") == "layercam"
    with pytest.raises(UnknownNameError, match="Did you mean 'hirescam'"):
        resolve_method("hirescan", "spatial")


class NegativeHead(nn.Module):
    """conv → ReLU ('act') → flatten → linear whose weights for class 0 are all negative: every position of
    the non-negative activations lowers class 0's score, so no map of class 0 has positive evidence."""
    stage_names = ("act",)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 2)
        with torch.no_grad():
            self.conv.bias.fill_(0.5)  # activations > 0 somewhere on any input
            self.fc.weight[0] = -torch.rand(4 * 8 * 8) - 0.1
            self.fc.weight[1] = torch.rand(4 * 8 * 8) + 0.1

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


@pytest.mark.parametrize("method", METHODS)
def test_all_negative_evidence_is_labelled_blank(method):
    torch.manual_seed(0)
    model = NegativeHead().eval()
    x = torch.randn(2, 1, 8, 8)
    res = attribute(model, x, 0, method=method, layer="act", classes=["coat", "bag"])
    if method in ("layercam", "gradcam++"):  # they weigh by ReLU(gradient), 0 everywhere here: a zero map
        assert res.blank == [True, True] and "zero everywhere" in res.reasons[0]
        assert float(res.signed.abs().max()) == 0
    else:
        assert res.blank == [True, True]
        assert "no positive evidence" in res.reasons[0] and "'coat'" in res.reasons[0] and "act" in res.reasons[0]
        assert float(res.signed.max()) <= 0 and float(res.signed.min()) == pytest.approx(-1.0)
    assert float(res.cam.abs().max()) == 0
    info = res.info(0)
    assert info["blank"] is True and info["reason"] == res.reasons[0] and info["shown"] == "signed map"
    # class 1 (all-positive weights) has evidence everywhere the activations are positive
    pos = attribute(model, x, 1, method=method, layer="act")
    assert pos.blank == [False, False] and pos.reasons == [None, None]


def test_blank_label_on_the_figure():
    from cnnkit.explain import plots

    model = NegativeHead().eval()
    x = torch.randn(1, 1, 8, 8)
    res = attribute(model, x, 0, method="gradcam", layer="act")
    img = np.zeros((1, 8, 8), np.uint8)
    fig = plots.gradcam_figure(img, res.cam[0].numpy(), title="t", signed=res.signed[0].numpy(), blank=True,
                               label=res.label)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("BLANK: no positive evidence") == 2  # on the map and on the overlay
    assert any("signed map" in ax.get_title() for ax in fig.axes)
    plain = plots.gradcam_figure(img, np.ones((8, 8)), title="t")
    assert not any("BLANK" in t.get_text() for ax in plain.axes for t in ax.texts)


def test_the_server_explanation_flags_a_blank_map(digits_run):
    """network.explanation (the server's /explanations answer): a blank map comes with its reason and the
    signed map and overlay to show instead; a map with evidence has neither."""
    from cnnkit.explain.network import explanation

    tm = cnnkit.load_model(digits_run)
    val = cnnkit.load_data("digits", img_size=16).val
    x = tm.prepare(val.x[:40])
    pairs = [(k, t) for t in range(10) for k, b in enumerate(attribute(tm.model, x, t, method="gradcam").blank) if b]
    assert pairs, "no blank Grad-CAM among 40 images × 10 classes"
    k, t = pairs[0]
    e = explanation(tm, val.x[k].numpy(), t, method="gradcam")
    assert e["blank"] is True and "no positive evidence" in e["reason"] and e["method"] == "gradcam"
    assert e["signed_overlay"].startswith("data:image/png;base64,") and np.asarray(e["signed"]).max() <= 0
    assert np.asarray(e["signed"]).min() == pytest.approx(-1.0)
    ok = explanation(tm, val.x[k].numpy(), int(tm.model(x[k:k + 1]).argmax()))  # auto, the predicted class
    assert ok["method"] == "hirescam" and ok["blank"] is False and ok["reason"] is None and "signed" not in ok
