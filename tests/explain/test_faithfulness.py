"""Deletion and insertion (Petsiuk et al. 2018) on models whose right answer is known, and the sanity cascade."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnkit
from cnnkit.explain import faithfulness as fa
from cnnkit.explain.sanity import cascade, table_lines


CHECKER = (torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2 * 2.0 - 1  # ±1, a fine texture


class Region(nn.Module):
    """Two classes; class 1's logit is the match of the top-left 6×6 block with a ±1 checkerboard, class 0's
    is 0: the evidence for class 1 sits in that block, and only there (and a blur wipes it out, as RISE's
    insertion baseline intends)."""

    def forward(self, x):
        z = (x[:, :, :6, :6] * CHECKER).mean((1, 2, 3))
        return torch.stack([torch.zeros_like(z), z], 1)


def bright_blocks(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=g)
    x[:, :, :6, :6] += 2.0 * CHECKER  # p(class 1) high
    return x


def test_auc_of_known_curves():
    assert fa.auc(np.array([[1.0, 1.0, 1.0]])).tolist() == [1.0]
    assert fa.auc(np.array([[1.0, 0.0, 0.0, 0.0, 0.0]])).tolist() == [0.125]  # a drop at the first step
    assert fa.auc(np.array([[0.0, 0.5, 1.0]])).tolist() == [0.5]


def test_the_oracle_order_beats_random_and_its_reverse_loses():
    model = Region()
    x = bright_blocks()
    oracle = torch.zeros(len(x), 16, 16)
    oracle[:, :6, :6] = 10 + x[:, 0, :6, :6] * CHECKER  # exactly the pixels that carry the evidence, most first
    good = fa.deletion_insertion(model, x, oracle, 1, steps=16)
    rand = fa.deletion_insertion(model, x, None, 1, steps=16)
    bad = fa.deletion_insertion(model, x, -oracle, 1, steps=16)
    # removing the block first sends p(1) to 0.5 after 36 of 256 pixels; adding it first restores p(1) as soon
    assert good.deletion.mean() < rand.deletion.mean() - 0.1
    assert good.insertion.mean() > rand.insertion.mean() + 0.1  # (a random order takes the whole curve)
    assert bad.deletion.mean() > rand.deletion.mean() and bad.insertion.mean() < rand.insertion.mean()
    # the curves start at the image's own probability (deletion) and end at it (insertion)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[:, 1].numpy()
    np.testing.assert_allclose(good.deletion_curve[:, 0], p, atol=1e-6)
    np.testing.assert_allclose(good.insertion_curve[:, -1], p, atol=1e-6)
    # the deletion curve ends at the baseline, zeros in normalised space: logit 0 for both classes
    np.testing.assert_allclose(good.deletion_curve[:, -1], 0.5, atol=1e-6)
    assert fa.verdict(good.summary(), rand.summary()) == "beats a random order on both"
    assert fa.verdict(bad.summary(), rand.summary()).startswith("no better than a random order")


def test_ties_are_broken_at_random_and_seeded():
    model = Region()
    x = bright_blocks(3)
    flat = torch.zeros(3, 16, 16)  # a blank map ranks nothing: it must score like a random order, not like raster
    a = fa.deletion_insertion(model, x, flat, 1, steps=8, seed=3)
    b = fa.deletion_insertion(model, x, flat, 1, steps=8, seed=3)
    np.testing.assert_array_equal(a.deletion, b.deletion)
    raster = torch.arange(256, 0, -1).float().expand(3, 256).reshape(3, 16, 16)  # top rows first: the block early
    r = fa.deletion_insertion(model, x, raster, 1, steps=8)
    assert a.deletion.mean() > r.deletion.mean() + 0.05


def test_the_maps_of_a_trained_model_beat_random(digits_run):
    """On the digits run, each method's maps of the predicted class beat random orders on both scores."""
    from cnnkit.explain.attribution import METHODS, attribute
    from cnnkit.run import load_run_data

    tm = cnnkit.load_model(digits_run)
    val = load_run_data(tm).val
    x = tm.prepare(val.get(torch.arange(48)))
    rand = fa.deletion_insertion(tm.model, x, None, tm.model(x).argmax(1).tolist(), steps=10).summary()
    for m in METHODS:
        a = attribute(tm.model, x, None, method=m)
        s = fa.deletion_insertion(tm.model, x, a.signed, a.target, steps=10).summary()
        assert s["deletion"] < rand["deletion"] and s["insertion"] > rand["insertion"], (m, s, rand)


def test_sanity_cascade_on_a_trained_model(digits_run):
    tm = cnnkit.load_model(digits_run)
    from cnnkit.run import load_run_data

    x = tm.prepare(load_run_data(tm).val.get(torch.arange(8)))
    before = {k: v.clone() for k, v in tm.model.state_dict().items()}
    res = cascade(tm.model, x)
    assert [r["randomised"] for r in res["rows"]] == ["fc2", "fc1", "conv2", "conv1"]  # top first
    assert all(-1 <= r["spearman"] <= 1 for r in res["rows"])
    assert res["passed"] and res["verdict"].startswith("passes") and abs(res["rows"][-1]["spearman"]) < 0.5
    assert all(torch.equal(before[k], v) for k, v in tm.model.state_dict().items())  # the user's model untouched
    text = "\n".join(table_lines(res))
    assert "Spearman" in text and "verdict: passes" in text


def test_sanity_fails_a_map_that_ignores_the_weights():
    """A model whose map is the input itself whatever its weights (an identity layer read by a fixed sum): the
    cascade cannot change it, and the verdict says so."""

    class Fixed(nn.Module):
        stage_names = ("ident",)

        def __init__(self):
            super().__init__()
            self.ident = nn.Identity()
            self.scale = nn.Linear(1, 1)  # a weight to randomise; it only scales the logit (kept positive)

        def forward(self, x):
            s = self.ident(x).sum((1, 2, 3), keepdim=False)[:, None]
            z = s * (self.scale.weight.abs() + 0.1).squeeze()
            return torch.cat([z, -z], 1)

    x = torch.rand(4, 1, 8, 8) + 0.1
    res = cascade(Fixed(), x, 0, method="hirescam", layer="ident")
    assert not res["passed"] and res["verdict"].startswith("fails") and res["rows"][-1]["spearman"] > 0.99


@pytest.mark.parametrize("size, sigma", [(16, 5.0), (32, 5.0), (32, 1.5), (15, 2.0)])
def test_the_blur_is_torchvisions(size, sigma):
    """The insertion baseline's blur, written in torch (no torchvision import), equals torchvision's
    `gaussian_blur` (same kernel size and sigma, as `blurred` calls it) on real images (scanned digits)."""
    TF = pytest.importorskip("torchvision.transforms.functional")
    ds = cnnkit.load_data("digits", img_size=size, seed=0)
    x = ds.val.get(torch.arange(6)).float() / 255  # pixels in [0, 1]
    assert 0 <= x.min() and x.max() <= 1
    side = min(x.shape[-2:])
    k = int(min(2 * round(2 * sigma) + 1, side if side % 2 else side - 1))
    assert k >= 3
    ours = fa.blurred(x, sigma)
    assert ours.shape == x.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours, TF.gaussian_blur(x, [k, k], [sigma, sigma]), atol=1e-6, rtol=0)
    # normalised (as the scores see it; values beyond 1, so torchvision's own float32 rounding is ~1e-6 of them),
    # and three channels, each blurred on its own
    z = (x - x.mean()) / x.std()
    three = torch.cat([z, z.flip(-1), z.flip(-2)], 1)
    torch.testing.assert_close(fa.blurred(three, sigma), TF.gaussian_blur(three, [k, k], [sigma, sigma]),
                               atol=1e-6, rtol=1e-6)
    # in float64 the two agree to rounding: the same kernel, padding and arithmetic
    torch.testing.assert_close(fa.gaussian_blur(three.double(), k, sigma),
                               TF.gaussian_blur(three.double(), [k, k], [sigma, sigma]), atol=1e-12, rtol=0)
