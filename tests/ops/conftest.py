"""The oracle for cnnkit.ops: run a NumPy op and its torch.nn.functional twin on the same fresh random
float64 inputs and compare the outputs and every gradient (tinygrad's `helper_test_op`, as a fixture)."""
import zlib

import numpy as np
import pytest
import torch

RTOL = 1e-5  # relative error allowed, in float64 (the ops actually agree to ~1e-14)


def rel_err(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours − theirs| / max |theirs|: an error relative to the size of the values (0 when equal)."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"shape {ours.shape} != torch's {theirs.shape}"
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-12)
    return float(np.abs(ours - theirs).max(initial=0.0)) / scale


def helper_test_op(rng: np.random.Generator, np_op, np_backward, torch_op, inputs, *, grads=None, kw=None,
                   torch_kw=None, state=(), rtol: float = RTOL) -> dict:
    """Check `np_op(*inputs, **kw)` against `torch_op(*inputs, **torch_kw)`, forward and backward.

    inputs: a shape (a tuple: fresh standard-normal float64 values), an array (used as given, copied), or
    None. grads: the positions of the inputs to differentiate (default: every float input);
    `np_backward(grad_out, *inputs, **kw)` must return their gradients in that order (one array, or a
    tuple). state: positions of inputs the op updates in place (BatchNorm's running statistics), compared
    after the forward pass. The output gradient is random too. Returns the relative errors.
    """
    kw = kw or {}
    torch_kw = kw if torch_kw is None else torch_kw
    arrays = [rng.standard_normal(a) if isinstance(a, tuple) else (None if a is None else np.array(a))
              for a in inputs]
    if grads is None:
        grads = [i for i, a in enumerate(arrays) if a is not None and np.issubdtype(a.dtype, np.floating)]
    tensors = [None if a is None else torch.tensor(a.copy(), requires_grad=i in grads) for i, a in enumerate(arrays)]
    ours_in = [None if a is None else a.copy() for a in arrays]

    expected = torch_op(*tensors, **torch_kw)
    ours = np_op(*ours_in, **kw)
    errors = {"out": rel_err(ours, expected.detach().numpy())}
    for i, a in enumerate(arrays):  # an op must not write into its inputs (except the declared state)
        if a is not None and i not in state:
            assert np.array_equal(ours_in[i], a), f"the forward pass modified input {i}"
    for i in state:
        errors[f"state{i}"] = rel_err(ours_in[i], tensors[i].detach().numpy())

    grad_out = rng.standard_normal(tuple(expected.shape))
    expected.backward(torch.tensor(grad_out))
    back_in = [None if a is None else a.copy() for a in arrays]
    got = np_backward(grad_out.copy(), *back_in, **kw)
    got = got if isinstance(got, tuple) else (got,)
    got = [g for g in got if g is not None]
    assert len(got) == len(grads), f"backward returned {len(got)} gradients for inputs {grads}"
    for i, g in zip(grads, got):
        errors[f"grad{i}"] = rel_err(g, tensors[i].grad.numpy())
    for i, a in enumerate(arrays):
        if a is not None and i not in state:
            assert np.array_equal(back_in[i], a), f"the backward pass modified input {i}"
    bad = {k: v for k, v in errors.items() if not v <= rtol}
    assert not bad, f"relative errors above {rtol}: {bad}"
    return errors


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Fresh random numbers, different for every test, the same on every run (seeded by the test's id)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def check_op(rng):
    """`check_op(np_op, np_backward, torch_op, inputs, **options)`: `helper_test_op` with this test's rng."""
    return lambda *a, **k: helper_test_op(rng, *a, **k)
