"""Every other NumPy op against its torch.nn.functional twin, with the same helper as the convolutions:
pooling, ReLU, BatchNorm (training and inference, running statistics), linear, flatten, dropout, global
average pooling, softmax cross-entropy."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError, InputSizeError
from cnnkit import ops

POOLS = [(k, s, p, n, c) for k, s, p, (n, c) in itertools.product([1, 2, 3], [None, 1, 2], [0, 1], [(1, 1), (3, 4)])
         if p <= k // 2]


def pool_id(case):
    k, s, p, n, c = case
    return f"k{k}-s{s}-p{p}-n{n}-c{c}"


@pytest.mark.parametrize("case", POOLS, ids=map(pool_id, POOLS))
def test_max_pool2d(check_op, case):
    k, s, p, n, c = case
    check_op(ops.max_pool2d, ops.max_pool2d_backward, F.max_pool2d, [(n, c, 7, 8)],
             kw=dict(kernel_size=k, stride=s, padding=p))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOLS, ids=map(pool_id, POOLS))
def test_avg_pool2d(check_op, case, count_include_pad):
    k, s, p, n, c = case
    check_op(ops.avg_pool2d, ops.avg_pool2d_backward, F.avg_pool2d, [(n, c, 7, 8)],
             kw=dict(kernel_size=k, stride=s, padding=p, count_include_pad=count_include_pad))


def test_max_pool2d_ties_go_to_the_first_maximum_like_torch(check_op, rng):
    x = rng.integers(0, 3, size=(2, 3, 6, 6)).astype(np.float64)  # many equal values in each window
    errors = check_op(ops.max_pool2d, ops.max_pool2d_backward, F.max_pool2d, [x],
                      kw=dict(kernel_size=3, stride=1, padding=1))
    # a tie sent to another element would be an O(1) error; what is left is the order of the additions
    assert errors["grad0"] < 1e-12


def test_pool_rectangular_and_unbatched(check_op):
    check_op(ops.max_pool2d, ops.max_pool2d_backward, F.max_pool2d, [(3, 7, 9)],
             kw=dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1)))
    check_op(ops.avg_pool2d, ops.avg_pool2d_backward, F.avg_pool2d, [(3, 7, 9)],
             kw=dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)))


def test_pool_padding_larger_than_half_the_kernel_is_refused():
    with pytest.raises(CnnkitError, match="at most half the kernel size"):
        ops.max_pool2d(np.zeros((1, 1, 4, 4)), 2, padding=2)


def test_global_avg_pool2d(check_op):
    check_op(ops.global_avg_pool2d, ops.global_avg_pool2d_backward, lambda x: F.adaptive_avg_pool2d(x, 1),
             [(3, 5, 4, 7)])


def test_relu_including_exact_zeros(check_op, rng):
    x = rng.standard_normal((4, 3, 5, 5))
    x[0, 0, :2] = 0.0  # torch's gradient at 0 is 0
    check_op(ops.relu, ops.relu_backward, F.relu, [x])


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 5), (2, 2, 1, 1)], ids=["2d", "1d", "tiny"])
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_training_updates_running_stats(check_op, rng, shape, affine, momentum):
    c = shape[1]
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    w, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    check_op(ops.batch_norm, ops.batch_norm_backward, F.batch_norm, [shape, rm, rv, w, b],
             grads=[0, 3, 4] if affine else [0], state=(1, 2),
             kw=dict(training=True, momentum=momentum, eps=1e-5))


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 5)], ids=["2d", "1d"])
def test_batch_norm_inference_uses_running_stats(check_op, rng, shape):
    c = shape[1]
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    errors = check_op(ops.batch_norm, ops.batch_norm_backward, F.batch_norm,
                      [shape, rm, rv, rng.standard_normal(c), rng.standard_normal(c)],
                      grads=[0, 3, 4], state=(1, 2), kw=dict(training=False, eps=1e-3))
    assert errors["state1"] == 0.0 and errors["state2"] == 0.0  # untouched at inference


def test_batch_norm_refuses_one_value_per_channel():
    with pytest.raises(InputSizeError, match="more than one value per channel"):
        ops.batch_norm(np.zeros((1, 3, 1, 1)), None, None, training=True)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)], ids=["2d", "3d"])
def test_linear(check_op, shape, bias):
    check_op(ops.linear, ops.linear_backward, F.linear, [shape, (4, 7), (4,) if bias else None])


def test_linear_shape_error_suggests_flatten():
    with pytest.raises(InputSizeError, match="flatten the feature maps first"):
        ops.linear(np.zeros((2, 16, 2, 2)), np.zeros((10, 64)))


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (2, 3), (1, 2)])
def test_flatten(check_op, start, end):
    check_op(ops.flatten, ops.flatten_backward, torch.flatten, [(2, 3, 4, 5)], kw=dict(start_dim=start, end_dim=end))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_with_torchs_own_mask(check_op, p):
    """torch draws its mask from its generator: draw it once (dropout of ones, same seed, same shape), then
    run our dropout with that mask next to torch's on fresh inputs: outputs and gradients must agree."""
    shape = (4, 3, 5, 5)
    torch.manual_seed(7)
    mask = (F.dropout(torch.ones(shape, dtype=torch.float64), p, training=True) != 0).numpy()
    assert 0 < mask.mean() < 1

    def torch_dropout(x, p, training):
        torch.manual_seed(7)  # the same mask again
        return F.dropout(x, p, training)

    check_op(lambda x, p, training: ops.dropout(x, p, training, mask=mask),
             lambda g, x, p, training: ops.dropout_backward(g, x, p, training, mask=mask),
             torch_dropout, [shape], kw=dict(p=p, training=True))


@pytest.mark.parametrize("p,training", [(0.5, False), (0.0, True), (1.0, True)])
def test_dropout_edge_cases_like_torch(check_op, p, training):
    check_op(lambda x, p, training: ops.dropout(x, p, training, rng=np.random.default_rng(0)),
             lambda g, x, p, training: ops.dropout_backward(g, x, p, training, mask=np.ones(x.shape, bool)),
             F.dropout, [(3, 4)], kw=dict(p=p, training=training))


def test_dropout_keeps_the_expected_value(rng):
    x = np.ones((200, 500))
    y = ops.dropout(x, 0.3, rng=rng)
    assert set(np.unique(y).round(6)) == {0.0, round(1 / 0.7, 6)}
    assert abs((y == 0).mean() - 0.3) < 0.01 and abs(y.mean() - 1.0) < 0.02
    with pytest.raises(CnnkitError, match="needs the mask"):
        ops.dropout_backward(x, x, 0.3)
    with pytest.raises(CnnkitError, match="between 0 and 1"):
        ops.dropout(x, 1.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("n,classes", [(1, 2), (16, 10)])
def test_cross_entropy(check_op, rng, reduction, n, classes):
    target = rng.integers(0, classes, n)
    check_op(ops.cross_entropy, ops.cross_entropy_backward, F.cross_entropy, [(n, classes), target],
             kw=dict(reduction=reduction))


def test_cross_entropy_is_stable_for_huge_logits(check_op, rng):
    logits = rng.standard_normal((4, 5)) * 1000  # exp(1000) overflows: the max must be subtracted first
    check_op(ops.cross_entropy, ops.cross_entropy_backward, F.cross_entropy, [logits, np.array([0, 1, 2, 3])])
    assert np.isfinite(ops.cross_entropy(logits, np.array([0, 1, 2, 3])))


def test_cross_entropy_of_uniform_logits_is_log_classes():
    assert float(ops.cross_entropy(np.zeros((3, 10)), np.array([0, 5, 9]))) == pytest.approx(np.log(10), abs=1e-15)


@pytest.mark.parametrize("target,needle", [(np.array([0, 3]), "0…2"), (np.array([0.0, 1.0]), "integer class targets"),
                                           (np.array([0]), "shape (2,)")])
def test_cross_entropy_bad_targets(target, needle):
    with pytest.raises(CnnkitError) as e:
        ops.cross_entropy(np.zeros((2, 3)), target)
    assert needle in str(e.value)


def test_softmax_rows_sum_to_one(rng):
    p = ops.softmax(rng.standard_normal((5, 7)) * 50)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ops.log_softmax(np.array([[1.0, 2.0, 3.0]])),
                               F.log_softmax(torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), 1).numpy(),
                               rtol=1e-12)
