"""Equivariance, measured: exact for a convolution on the valid interior, approximate after pooling; the layers
chosen before and after each pooling; `cnnkit explain --shift` on a trained run; its errors."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data.transforms import shift as shift_batch
from cnnkit.errors import CnnkitError, UnknownNameError
from cnnkit.explain.equivariance import centred_correlation, figure, measure, parse_shift, table_lines
from cnnkit.explain.explainer import load_image


def prepare(t: torch.Tensor) -> torch.Tensor:
    """A normalisation whose black is not 0, so the fill differs from the convolutions' zero padding."""
    return (t.float() / 255 - 0.5) / 0.25


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """A real photo (smooth regions and edges), 1×40×40 uint8."""
    return np.asarray(load_image("camera").convert("L").resize((40, 40)))[None].copy()


def plain_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).eval()


def by_layer(eq) -> dict:
    return {r.layer: r for r in eq.layers}


def test_a_convolution_is_exactly_equivariant_on_the_valid_interior(camera):
    net = plain_cnn()
    eq = measure(net, camera, (4, -2), prepare=prepare)  # 4 right, 2 up: a multiple of stride 2, not of 4
    r = by_layer(eq)
    assert [(x.layer, x.kind) for x in eq.layers] == [("1", "before pooling"), ("2", "after pooling"),
                                                      ("4", "before pooling"), ("5", "after pooling")]
    assert [x.stride for x in eq.layers] == [[1, 1], [2, 2], [2, 2], [4, 4]]
    for name, cells in (("1", [4, -2]), ("2", [2, -1]), ("4", [2, -1])):
        assert r[name].exact and r[name].compared == cells
        assert r[name].correlation == pytest.approx(1.0, abs=1e-6)
        assert r[name].unshifted_correlation < 0.95  # the map did move: where it was, it no longer matches
    # conv1's 3×3 field: columns 5..38 see only pixels both images share (4 px of black on the left; the right
    # edge's zero padding where the original had pixels), rows 1..36 (2 px pushed out at the top, 2 of black below)
    assert r["1"].valid == [36, 34] and r["1"].rf_size == [3, 3]
    # the last pooling: 2 px up is half a cell at stride 4; compared at the nearest, a whole cell; not exact
    assert not r["5"].exact and r["5"].expected == [1.0, -0.5] and r["5"].compared == [1, -1]
    assert 0 < r["5"].correlation < 0.999

    # elementwise: every valid unit equals its partner; the box is tight (one cell wider and some differ)
    x = prepare(torch.stack([torch.from_numpy(camera), shift_batch(torch.from_numpy(camera)[None], -2, 4)[0]]))
    with torch.no_grad():
        a = net[:2](x)
    new, moved = a[1], shift_batch(a[:1], -2, 4)[0]
    assert torch.allclose(new[:, 1:37, 5:39], moved[:, 1:37, 5:39], atol=1e-5)
    assert (new[:, 1:37, 4] - moved[:, 1:37, 4]).abs().max() > 1e-2  # column 4 sees the black fill
    # without leaving out the border the match is not exact: the exclusion is what makes 1.0 true
    assert centred_correlation(new, moved) < 0.999


def test_pooling_makes_it_approximate(camera):
    net = plain_cnn()
    r = by_layer(measure(net, camera, (1, 0), prepare=prepare))
    assert r["1"].exact and r["1"].correlation == pytest.approx(1.0, abs=1e-6)
    # after max-pooling a 1-px shift is half a cell: no whole-cell shift matches the map
    assert not r["2"].exact and r["2"].expected == [0.5, 0.0] and r["2"].compared == [1, 0]
    assert 0 < r["2"].correlation < 0.999
    # a shift of 2 px is a whole cell after the pooling: exact again
    r2 = by_layer(measure(net, camera, (2, 0), prepare=prepare))
    assert r2["2"].exact and r2["2"].correlation == pytest.approx(1.0, abs=1e-6)


def test_a_strided_convolution_without_pooling(camera):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1), nn.ReLU()).eval()
    eq = measure(net, camera, (0, 2), prepare=prepare)
    assert [(x.layer, x.kind) for x in eq.layers] == [("0", "stage output")]
    assert eq.layers[0].exact and eq.layers[0].correlation == pytest.approx(1.0, abs=1e-6)
    odd = measure(net, camera, (0, 1), prepare=prepare).layers[0]
    assert not odd.exact and 0 < odd.correlation < 0.999


def test_centred_correlation():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 5, 5, generator=g, dtype=torch.float64)
    # each channel centred on its own mean: a constant offset per channel changes nothing
    assert centred_correlation(a, 2 * a + torch.tensor([1.0, -5.0, 9.0]).view(3, 1, 1)) == pytest.approx(1.0)
    assert centred_correlation(a, torch.ones_like(a)) is None
    b = torch.rand(3, 5, 5, generator=g, dtype=torch.float64)
    flat = np.corrcoef((a - a.mean((1, 2), keepdim=True)).ravel(), (b - b.mean((1, 2), keepdim=True)).ravel())[0, 1]
    assert centred_correlation(a, b) == pytest.approx(flat, abs=1e-9)


@pytest.mark.parametrize("name, expected", [
    ("simplecnn", [("relu1", "before pooling"), ("pool1", "after pooling"), ("relu2", "before pooling"),
                   ("pool2", "after pooling")]),
    ("simplecnn_bn", [("block1.2", "before pooling"), ("block1", "after pooling"), ("block2.2", "before pooling"),
                      ("block2", "after pooling"), ("block3.2", "before pooling"), ("block3", "after pooling")]),
    ("lenet5", [("relu1", "before pooling"), ("s2", "after pooling"), ("relu3", "before pooling"),
                ("s4", "after pooling"), ("c5", "stage output")]),
    ("resnet18", [("layer1", "stage output"), ("layer2", "stage output"), ("layer3", "stage output"),
                  ("layer4", "stage output")]),
])
def test_layers_before_and_after_each_pooling(name, expected):
    m = cnnkit.create_model(name, num_classes=3, in_channels=1, input_size=(32, 32)).eval()
    img = (torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    eq = measure(m, img, (2, 0))
    assert [(r.layer, r.kind) for r in eq.layers] == expected
    first = eq.layers[0]
    assert first.exact and first.correlation == pytest.approx(1.0, abs=1e-6)


def test_named_layers_and_errors(camera):
    net = plain_cnn()
    eq = measure(net, camera, "2,0", layers=["2"], prepare=prepare)
    assert [(r.layer, r.kind) for r in eq.layers] == [("2", "layer")]
    assert parse_shift("-1, 3") == (-1, 3) and parse_shift("2x0") == (2, 0)
    for bad in ("abc", "1", "1,2,3", "1.5,0"):
        with pytest.raises(CnnkitError, match="is not a shift: expected DX,DY"):
            parse_shift(bad)
    with pytest.raises(CnnkitError, match="does not move the image"):
        parse_shift("0,0")
    with pytest.raises(CnnkitError, match=r"moves the whole image out of its 40x40 frame.*\|DX\| < 40"):
        measure(net, camera, (40, 0))
    with pytest.raises(UnknownNameError, match="unknown layer '9'"):
        measure(net, camera, (1, 0), layers=["9"])
    flat = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 38 * 38, 3))
    with pytest.raises(CnnkitError, match="layer '2' gives no feature map"):
        measure(flat, camera, (1, 0), layers=["2"])
    with pytest.raises(CnnkitError, match="has no convolution, so no feature map to shift"):
        measure(nn.Sequential(nn.Flatten(), nn.Linear(1600, 3)), camera, (1, 0))


def test_table_and_figure(camera, tmp_path):
    from cnnkit.explain.plots import save_png

    eq = measure(plain_cnn(), camera, (1, 0), prepare=prepare)
    lines = table_lines(eq)
    assert lines[2].split() == ["layer", "kind", "stride", "map", "shift", "r", "shifted", "r", "unshifted", "valid",
                                "units"]
    assert lines[3].split()[:5] == ["1", "before", "pooling", "1", "1,0"] and lines[3].split()[5] == "1.0000"
    assert lines[4].split()[3:5] == ["2", "0.5~1,0"]
    assert any(line.strip().startswith("0.5~1: at that stride") for line in lines)
    fig = figure(eq)
    assert len(fig.subfigs) == 1 + len(eq.layers)  # the two images, then one row per layer
    assert all(len(sf.axes) == 4 for sf in fig.subfigs[1:])
    assert "r = 1.0000" in fig.subfigs[1]._suptitle.get_text()
    with Image.open(save_png(fig, tmp_path / "eq.png")) as im:
        assert im.size[0] > 800 and im.size[1] > 1000


@pytest.mark.xdist_group("explain_run")
def test_explain_shift_on_a_trained_run(digits_run, tmp_path, capsys):
    path = tmp_path / "digit.png"
    Image.fromarray(cnnkit.load_data("digits", img_size=16).val.x[0, 0].numpy()).save(path)
    argv = ["explain", str(digits_run), str(path), "--out", str(tmp_path / "ex")]
    assert main([*argv, "--shift", "2,0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    eq = info["equivariance"]
    assert eq["shift"] == [2, 0] and eq["input"] == [1, 16, 16]
    rows = {r["layer"]: r for r in eq["layers"]}
    assert list(rows) == ["relu1", "pool1", "relu2", "pool2"]
    assert [r["kind"] for r in eq["layers"]] == ["before pooling", "after pooling"] * 2
    assert [r["stride"] for r in eq["layers"]] == [[1, 1], [2, 2], [2, 2], [4, 4]]
    assert [r["valid"] for r in eq["layers"]] == [[16, 12], [8, 5], [8, 3], [4, 1]]
    for name in ("relu1", "pool1", "relu2"):  # 2 px is a whole number of cells up to stride 2: exact
        assert rows[name]["exact"] and rows[name]["correlation"] == pytest.approx(1.0, abs=1e-5)
        assert rows[name]["unshifted_correlation"] < 0.9
    p2 = rows["pool2"]  # half a cell at stride 4
    assert not p2["exact"] and p2["expected"] == [0.5, 0.0] and p2["compared"] == [1, 0]
    assert 0 < p2["correlation"] < 0.999
    files = [f for f in info["files"] if f.endswith("equivariance.png")]
    assert len(files) == 1
    with Image.open(files[0]) as im:
        assert im.format == "PNG" and im.size[0] > 800
    # text: the table; a negative shift written with '='; named layers
    assert main([*argv, "--shift=-1,1", "--layers", "pool1"]) == 0
    text = capsys.readouterr().out
    assert "equivariance: the image shifted by dx,dy = -1,1 px" in text
    row = next(line.split() for line in text.splitlines() if line.strip().startswith("pool1 "))
    assert row[1:4] == ["layer", "2", "-0.5~-1,0.5~1"] and 0 < float(row[4]) < 0.999


def test_explain_shift_errors(digits_run, tmp_path, capsys):
    argv = ["explain", str(digits_run), "camera", "--out", str(tmp_path / "bad")]
    for flag, message in (("abc", "--shift 'abc' is not a shift: expected DX,DY"),
                          ("1000,0", "--shift 1000,0 moves the whole image out of its 16x16 frame")):
        assert main([*argv, "--shift", flag]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()  # nothing written
    assert main(["explain", "mlp", "camera", "--img-size", "16", "--out", str(tmp_path / "mlp"), "--shift", "2,0"]) == 2
    err = capsys.readouterr().err
    assert "mlp has no convolution" in err and len(err.strip().splitlines()) == 1
