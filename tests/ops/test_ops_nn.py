"""Networks built from the NumPy layers against the same networks in torch.nn (weights copied over):
every layer's output and every parameter's gradient on one batch, SGD's updates, and the LeNet-5-shaped
network trained on the real digits."""
import numpy as np
import pytest
import torch
import torch.nn as tnn

from cnnkit.errors import CnnkitError
from cnnkit.ops import nn
from cnnkit.ops.scratch import digits_split, lenet_digits, train_digits



def rel_err(ours, theirs) -> float:
    """max |ours − theirs| / max |theirs|, as in conftest's helper."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max()) / max(float(np.abs(theirs).max()), 1e-12)


def torch_twin(seq: nn.Sequential) -> tnn.Sequential:
    """The same network in torch.nn, float64, with our weights and buffers loaded (strictly: same keys)."""
    def twin(layer):
        if isinstance(layer, nn.Conv2d):
            w = layer.weight.data
            return tnn.Conv2d(w.shape[1] * layer.kw["groups"], w.shape[0], w.shape[2:], bias=layer.bias is not None,
                              **layer.kw)
        if isinstance(layer, nn.Linear):
            return tnn.Linear(layer.weight.data.shape[1], layer.weight.data.shape[0], bias=layer.bias is not None)
        if isinstance(layer, nn.BatchNorm2d):
            return tnn.BatchNorm2d(len(layer.running_mean), eps=layer.eps, momentum=layer.momentum)
        simple = {nn.ReLU: lambda kw: tnn.ReLU(), nn.Flatten: lambda kw: tnn.Flatten(**kw),
                  nn.MaxPool2d: lambda kw: tnn.MaxPool2d(**kw), nn.AvgPool2d: lambda kw: tnn.AvgPool2d(**kw),
                  nn.GlobalAvgPool2d: lambda kw: tnn.AdaptiveAvgPool2d(1)}
        if isinstance(layer, nn.Dropout):
            return tnn.Dropout(layer.p)
        return simple[type(layer)](getattr(layer, "kw", {}))

    t = tnn.Sequential(*map(twin, seq.layers)).double()
    t.load_state_dict({k: torch.tensor(np.asarray(v, dtype=np.float64) if v.dtype.kind == "f" else v)
                       for k, v in seq.state_dict().items()}, strict=True)
    return t


def compare_on_one_batch(ours: nn.Sequential, x: np.ndarray, y: np.ndarray, tol: float = 1e-10) -> dict:
    """Forward and backward one batch through both networks; assert every layer's output, the loss, the
    input's gradient and every parameter's gradient agree. Returns the errors by name."""
    theirs = torch_twin(ours)
    theirs.train(ours.training)
    for ol, tl in zip(ours.layers, theirs):
        tl.train(ol.training)
    errors = {}
    h, ht = x, torch.tensor(x, requires_grad=True)
    xt = ht
    for i, (ol, tl) in enumerate(zip(ours.layers, theirs)):
        h, ht = ol(h), tl(ht)
        errors[f"out {i} {type(ol).__name__}"] = rel_err(h, ht.detach().numpy())
    loss_fn = nn.CrossEntropyLoss()
    loss, loss_t = loss_fn(h, y), tnn.functional.cross_entropy(ht, torch.tensor(y))
    errors["loss"] = abs(loss - loss_t.item()) / abs(loss_t.item())
    ours.zero_grad()
    dx = ours.backward(loss_fn.backward())
    loss_t.backward()
    errors["grad input"] = rel_err(dx, xt.grad.numpy())
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        errors[f"grad {name}"] = rel_err(p.grad, tparams[name].grad.numpy())
    assert set(dict(ours.named_parameters())) == set(tparams)
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"differs from torch: {bad}"
    return errors


def test_lenet_digits_gradients_equal_torch_layer_by_layer():
    x_tr, y_tr, _, _ = digits_split()
    net = lenet_digits(seed=3, dtype=np.float64)
    errors = compare_on_one_batch(net, x_tr[:32].astype(np.float64), y_tr[:32])
    assert {"grad 0.weight", "grad 0.bias", "grad 3.weight", "grad 7.weight", "grad 9.bias"} <= set(errors)
    assert len([k for k in errors if k.startswith("grad ") and k != "grad input"]) == 8  # 4 layers × (w, b)


def test_every_layer_type_equals_torch_in_training_mode(rng):
    r = np.random.default_rng(1)
    net = nn.Sequential(
        # no bias before BatchNorm: its gradient is exactly 0 (BN subtracts the mean), so only rounding is left
        nn.Conv2d(3, 8, 3, padding="same", bias=False, rng=r, dtype=np.float64), nn.BatchNorm2d(8, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, stride=1, padding=2, dilation=2, groups=2, bias=False, rng=r, dtype=np.float64),
        nn.AvgPool2d(2), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Flatten(), nn.Dropout(0.5, rng=r),
        nn.Linear(8, 5, rng=r, dtype=np.float64),
    )
    net.train()
    net[9].eval()  # dropout's random mask is checked against torch's in test_ops_layers
    compare_on_one_batch(net, rng.standard_normal((6, 3, 12, 12)), rng.integers(0, 5, 6))
    # the running statistics moved exactly like torch's, and inference mode agrees too
    net.eval()
    compare_on_one_batch(net, rng.standard_normal((4, 3, 12, 12)), rng.integers(0, 5, 4))


def test_batchnorm_running_stats_follow_torch_over_several_steps(rng):
    ours, theirs = nn.BatchNorm2d(4, momentum=0.3, dtype=np.float64), tnn.BatchNorm2d(4, momentum=0.3).double()
    for _ in range(3):
        x = rng.standard_normal((5, 4, 3, 3)) * 2 + 1
        ours(x), theirs(torch.tensor(x))
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_sgd_steps_equal_torch_sgd(rng, momentum, weight_decay):
    w0 = rng.standard_normal((3, 4))
    ours = nn.Parameter(w0.copy())
    theirs = torch.tensor(w0.copy(), requires_grad=True)
    opt, opt_t = nn.SGD([ours], lr=0.1, momentum=momentum, weight_decay=weight_decay), \
        torch.optim.SGD([theirs], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for _ in range(4):
        g = rng.standard_normal((3, 4))
        opt.zero_grad(), opt_t.zero_grad()
        ours.grad += g
        theirs.grad = torch.tensor(g)
        opt.step(), opt_t.step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12)
    assert not np.allclose(ours.data, w0)


def test_layers_need_a_forward_before_backward_and_valid_settings():
    with pytest.raises(CnnkitError, match="backward called before forward"):
        nn.ReLU().backward(np.ones(3))
    with pytest.raises(CnnkitError, match="lr > 0"):
        nn.SGD([], lr=0)
    net = lenet_digits()
    with pytest.raises(CnnkitError, match="missing"):
        net.load_state_dict({})


def test_dropout_layer_draws_a_new_mask_each_step_and_is_identity_in_eval():
    layer, x = nn.Dropout(0.5, rng=np.random.default_rng(0)), np.ones((4, 100))
    a, b = layer(x), layer(x)
    assert not np.array_equal(a, b) and set(np.unique(a)) == {0.0, 2.0}
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), b)  # the last mask, scaled
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)


def test_state_dict_uses_torch_names():
    keys = set(lenet_digits().state_dict())
    assert keys == set(tnn.Sequential(tnn.Conv2d(1, 6, 3), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 3),
                                      tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(64, 64), tnn.ReLU(),
                                      tnn.Linear(64, 10)).state_dict())
    assert sum(p.data.size for p in lenet_digits().parameters()) == 60 + 880 + 4160 + 650  # 5,750


@pytest.mark.slow
def test_scratch_lenet_learns_the_real_digits():
    r = train_digits()  # the defaults: 20 epochs, SGD lr 0.1 (cosine), momentum 0.9, batch 32, seed 0
    assert r["val_acc"] >= 0.95, r["history"][-3:]
    assert r["val_size"] == 360 and r["train_size"] == 1437 and r["epochs"] == len(r["history"]) == 20
    assert r["history"][-1]["loss"] < r["history"][0]["loss"] / 10
