"""The stratified train/val split (cnnkit.data.dataset.stratified_split)."""
import numpy as np
import pytest

from cnnkit.data.dataset import stratified_split


@pytest.mark.parametrize("fraction", [0.04, 0.1, 0.2, 0.5])
def test_split_is_a_partition_with_each_class_in_proportion(fraction):
    y = np.repeat(np.arange(5), [500, 300, 120, 60, 20])
    tr, va = stratified_split(y, fraction, seed=3)
    assert len(va) == int(np.ceil(fraction * len(y)))
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)))  # disjoint and complete
    want = fraction * np.bincount(y)
    assert np.all(np.abs(np.bincount(y[va], minlength=5) - want) < 1)  # within one image of the exact share


def test_split_follows_the_seed():
    y = np.repeat(np.arange(3), 100)
    a, b, c = (stratified_split(y, 0.2, seed=s)[1] for s in (0, 0, 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_class_keeps_at_least_one_training_image():
    y = np.array([0] * 10 + [1] + [2, 2])
    tr, va = stratified_split(y, 0.5, seed=0)
    assert 1 in y[tr] and 2 in y[tr] and 2 in y[va] and 0 in y[va]
