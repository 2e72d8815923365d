"""Both NumPy convolutions against torch.nn.functional.conv2d: outputs and gradients, swept over kernel size,
stride, padding (numbers, 'valid', 'same'), dilation, channels, batch size and groups."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError, InputSizeError
from cnnkit.ops import conv2d, conv2d_backward, conv2d_loop, conv2d_loop_backward
from cnnkit.ops.conv import conv_pads


def torch_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


def sweep(kernels, strides, paddings, dilations, shapes):
    """(k, stride, padding, dilation, (batch, in, out)) combinations PyTorch accepts ('same' needs stride 1)."""
    return [c for c in itertools.product(kernels, strides, paddings, dilations, shapes)
            if not (c[2] == "same" and c[1] != 1)]


def ids(c):
    k, s, p, d, (n, ci, co) = c
    return f"k{k}-s{s}-p{p}-d{d}-n{n}-c{ci}to{co}"


pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel lengths")

FULL = sweep([1, 2, 3, 5], [1, 2, 3], [0, 1, 2, "valid", "same"], [1, 2], [(1, 1, 1), (3, 3, 4)])
SMALL = sweep([1, 2, 3], [1, 2], [0, 1, "same"], [1, 2], [(1, 1, 1), (2, 2, 3)])


@pytest.mark.parametrize("case", FULL, ids=map(ids, FULL))
def test_conv2d_equals_torch(check_op, case):
    k, s, p, d, (n, ci, co) = case
    check_op(conv2d, conv2d_backward, torch_conv, [(n, ci, 11, 12), (co, ci, k, k), (co,)],
             kw=dict(stride=s, padding=p, dilation=d))


@pytest.mark.parametrize("case", SMALL, ids=map(ids, SMALL))
def test_conv2d_loop_equals_torch(check_op, case):
    k, s, p, d, (n, ci, co) = case
    check_op(conv2d_loop, conv2d_loop_backward, torch_conv, [(n, ci, 6, 7), (co, ci, k, k), (co,)],
             kw=dict(stride=s, padding=p, dilation=d))


@pytest.mark.parametrize("op", [(conv2d, conv2d_backward), (conv2d_loop, conv2d_loop_backward)], ids=["vec", "loop"])
@pytest.mark.parametrize("ci,co,groups", [(4, 6, 2), (4, 8, 4), (3, 3, 3)], ids=["g2", "g4", "depthwise"])
def test_groups(check_op, op, ci, co, groups):
    check_op(*op, torch_conv, [(2, ci, 7, 6), (co, ci // groups, 3, 3), (co,)],
             kw=dict(stride=1, padding=1, dilation=1, groups=groups))


@pytest.mark.parametrize("op", [(conv2d, conv2d_backward), (conv2d_loop, conv2d_loop_backward)], ids=["vec", "loop"])
@pytest.mark.parametrize("padding", [(2, 1), "same"])
def test_rectangular_kernel_and_pairs_without_bias(check_op, op, padding):
    stride = (1, 1) if padding == "same" else (1, 2)
    check_op(*op, torch_conv, [(2, 3, 9, 8), (5, 3, 2, 3), None],
             kw=dict(stride=stride, padding=padding, dilation=(2, 1)))


def test_same_padding_is_asymmetric_like_torch():
    # a 4-wide kernel needs 3 columns of zeros: torch puts 1 on the left and 2 on the right
    assert conv_pads("same", (4, 4), (1, 1), (1, 1)) == (1, 2, 1, 2)
    assert conv_pads("same", (3, 2), (2, 3), (1, 1)) == (2, 2, 1, 2)
    x = np.random.default_rng(0).standard_normal((1, 1, 6, 5))
    assert conv2d(x, np.ones((1, 1, 4, 2)), padding="same").shape == (1, 1, 6, 5)


def test_unbatched_image_like_torch(rng):
    x, w, b = rng.standard_normal((3, 8, 8)), rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    y = conv2d(x, w, b, padding=1)
    assert y.shape == (2, 8, 8)
    np.testing.assert_allclose(y, F.conv2d(*map(torch.tensor, (x, w, b)), padding=1).numpy(), rtol=1e-12)
    dx, dw, db = conv2d_backward(np.ones_like(y), x, w, b, padding=1)
    assert dx.shape == x.shape and dw.shape == w.shape and db.tolist() == [64.0, 64.0]
    np.testing.assert_allclose(conv2d_loop(x, w, b, padding=1), y, rtol=1e-12)


def test_float32_stays_float32_and_matches_torch(rng):
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    w, b = rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    y = conv2d(x, w, b, padding=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, F.conv2d(*map(torch.from_numpy, (x, w, b)), padding=1).numpy(), rtol=1e-4, atol=1e-5)
    assert all(g.dtype == np.float32 for g in conv2d_backward(y, x, w, b, padding=1))


def test_integer_images_compute_in_float64():
    y = conv2d(np.arange(16).reshape(1, 1, 4, 4), np.ones((1, 1, 2, 2), dtype=int))
    assert y.dtype == np.float64 and y[0, 0, 0].tolist() == [10.0, 14.0, 18.0]  # 0+1+4+5, 1+2+5+6, …


@pytest.mark.parametrize("kw,error,needle", [
    (dict(weight=np.zeros((2, 4, 3, 3))), InputSizeError, "expects 4 input channels, got input of shape (1, 3, 5, 5)"),
    (dict(padding="same", stride=2), CnnkitError, "padding='same' needs stride 1"),
    (dict(padding="full"), CnnkitError, "'valid' or 'same', got 'full'"),
    (dict(weight=np.zeros((1, 3, 7, 7))), InputSizeError, "larger than the padded input 5×5"),
    (dict(weight=np.zeros((1, 3, 3, 3)), dilation=3), InputSizeError, "dilation 3×3, so 7×7"),
    (dict(bias=np.zeros(3)), InputSizeError, "bias must have shape (2,)"),
    (dict(stride=0), CnnkitError, "stride must be at least 1"),
    (dict(groups=2), InputSizeError, "groups=2 expects 6 input channels"),
])
@pytest.mark.parametrize("op", [conv2d, conv2d_loop])
def test_errors_name_the_problem(op, kw, error, needle):
    args = dict(x=np.zeros((1, 3, 5, 5)), weight=np.zeros((2, 3, 3, 3)), bias=None)
    args.update(kw)
    with pytest.raises(error) as e:
        op(**args)
    assert needle in str(e.value)


def test_backward_checks_the_output_gradient_shape():
    with pytest.raises(InputSizeError, match=r"grad_out must have the output's shape \(1, 2, 3, 3\)"):
        conv2d_backward(np.zeros((1, 2, 5, 5)), np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 3, 3)))
