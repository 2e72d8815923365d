"""Explanations that can be trusted: the sanity checks of Adebayo et al. 2018 ("Sanity Checks for Saliency
Maps"), applied to cnnkit's Grad-CAM.

1. Model randomisation: a map that stays the same when the learned weights are replaced by random ones
   explains the architecture or the image, not what the model learned. Grad-CAM of a model trained on real
   images (Fashion-MNIST) and of the same architecture re-initialised must differ: mean Spearman rank
   correlation < 0.5 (also for the cascading variant, with only the classifier re-initialised).
2. Localisation on a data set with a known answer: the class is decided by one region (a bright blob in the
   top-left quadrant) among distractors everywhere (noise and bright bars, in every quadrant and in both
   classes); the trained model's map must peak in that region.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

import cnnkit
from cnnkit.explain.gradcam import gradcam


def fit(model, x, y, epochs, batch=64, lr=3e-3, seed=0):
    """A plain training loop: AdamW, cross-entropy, shuffled mini-batches."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def spearman_per_image(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return [float(spearmanr(u.flatten().numpy(), v.flatten().numpy())[0]) for u, v in zip(a, b)]


@pytest.fixture(scope="module")
def fmnist_model(fmnist_small):
    xtr, ytr, xte, yte = fmnist_small
    norm = lambda a: (torch.from_numpy(np.array(a)).float()[:, None] / 255 - 0.286) / 0.353  # noqa: E731
    torch.manual_seed(0)
    model = cnnkit.create_model("simplecnn", num_classes=10, in_channels=1, input_size=(28, 28))
    fit(model, norm(xtr), torch.from_numpy(ytr.astype(np.int64)), epochs=2)
    xt, yt = norm(xte), torch.from_numpy(yte.astype(np.int64))
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    assert acc > 0.75, f"the model did not learn (test accuracy {acc:.3f}): the randomisation test would be void"
    return model, xt[:32]


@pytest.mark.slow
@pytest.mark.parametrize("reinit", ["all weights", "classifier only"])
def test_randomised_weights_change_the_map(fmnist_model, reinit):
    model, x = fmnist_model
    trained = gradcam(model, x)  # each image's predicted class
    if reinit == "all weights":
        torch.manual_seed(1)
        other = cnnkit.create_model("simplecnn", num_classes=10, in_channels=1, input_size=(28, 28)).eval()
    else:  # cascading randomisation, top layers first: the head goes, the convolutions stay
        other = copy.deepcopy(model)
        torch.manual_seed(2)
        for name in ("fc1", "fc2"):
            other.get_submodule(name).reset_parameters()
    random = gradcam(other, x, trained.target)  # the same classes, so only the weights differ
    # the shown maps (ReLU'd, upsampled); a random model's map can be all zero (nothing raises the score):
    # no ranking to compare, so those images are left out of this mean and counted
    flat = lambda g: g.cam.flatten(1).amax(1) > 0  # noqa: E731
    assert flat(trained).float().mean() >= 0.9, "the trained model's maps should almost all have content"
    both = flat(trained) & flat(random)
    assert both.sum() >= 8
    rho_shown = float(np.mean(spearman_per_image(trained.cam[both], random.cam[both])))
    # the raw layer-resolution maps before the ReLU: defined for every image
    raw_t = gradcam(model, x, trained.target, relu=False).raw
    raw_r = gradcam(other, x, trained.target, relu=False).raw
    rho_raw = float(np.mean(spearman_per_image(raw_t, raw_r)))
    print(f"\n{reinit}: mean Spearman, shown maps {rho_shown:.3f} over {int(both.sum())} of {len(x)} images; "
          f"raw maps {rho_raw:.3f}")
    assert rho_shown < 0.5 and rho_raw < 0.5
    # the control: the same model gives the same map (so a low correlation is the weights' doing)
    assert np.mean(spearman_per_image(trained.cam, gradcam(model, x, trained.target).cam)) > 0.999


S, Q = 32, 16  # image side, quadrant side


def blobs_and_bars(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1: a bright Gaussian blob somewhere in the top-left quadrant; class 0: none. Both: noise
    everywhere and 1-3 bright bars anywhere (the top-left quadrant included)."""
    yy, xx = np.mgrid[0:S, 0:S]
    x = rng.uniform(0, 90, size=(n, S, S))
    y = rng.integers(0, 2, n)
    for k in range(n):
        for _ in range(rng.integers(1, 4)):
            length = int(rng.integers(6, 12))
            cy, cx = rng.integers(0, S - length, 2)
            if rng.random() < 0.5:
                x[k, cy:cy + 2, cx:cx + length] += 150
            else:
                x[k, cy:cy + length, cx:cx + 2] += 150
        if y[k]:
            cy, cx = rng.uniform(3, Q - 3, 2)
            x[k] += 160 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0 ** 2))
    return torch.from_numpy(np.clip(x, 0, 255) / 255).float()[:, None], torch.from_numpy(y).long()


@pytest.mark.slow
def test_map_peaks_in_the_region_that_decides_the_class():
    rng = np.random.default_rng(0)
    x, y = blobs_and_bars(1200, rng)
    xt, yt = blobs_and_bars(200, rng)
    mean, std = x.mean(), x.std()
    x, xt = (x - mean) / std, (xt - mean) / std
    torch.manual_seed(0)
    model = fit(cnnkit.create_model("simplecnn", num_classes=2, in_channels=1, input_size=(S, S)), x, y, epochs=4)
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    assert acc > 0.9, f"test accuracy {acc:.3f}: the model did not learn the rule"
    pos = xt[yt == 1]

    def in_region(m) -> tuple[float, float]:
        cam = gradcam(m, pos, 1).cam
        peak = cam.flatten(1).argmax(1)
        hit = ((peak // S < Q) & (peak % S < Q)).float().mean()
        mass = (cam[:, :Q, :Q].sum((1, 2)) / cam.sum((1, 2)).clamp_min(1e-12)).mean()
        return float(hit), float(mass)

    hit, mass = in_region(model)
    torch.manual_seed(5)
    untrained = cnnkit.create_model("simplecnn", num_classes=2, in_channels=1, input_size=(S, S)).eval()
    untrained_hit, _ = in_region(untrained)
    print(f"\n{len(pos)} positive test images: map peak in the top-left quadrant {hit:.3f} (untrained model "
          f"{untrained_hit:.3f}); mean share of the map's mass there {mass:.3f} (a quarter of the image)")
    assert hit >= 0.9 and mass > 0.6
    assert untrained_hit <= hit - 0.25  # the localisation is learned, not a property of the architecture
