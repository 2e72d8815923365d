import os

import pytest
import torch

# Two pytest-xdist workers on two cores: one torch thread each, or they fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
