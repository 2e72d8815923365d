"""The runnable examples in cnnkit.ops's docstrings run, and print what they say."""
import doctest
import importlib

import pytest

MODULES = ["_util", "activations", "conv", "kernels", "linear", "loss", "nn", "norm", "pool", "scratch"]


@pytest.mark.parametrize("name", ["cnnkit.ops"] + [f"cnnkit.ops.{m}" for m in MODULES])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
