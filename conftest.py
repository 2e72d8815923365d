"""For every test and doctest: the decoded-image cache in a temporary folder of this test session, never the
user's ~/.cache/cnnkit."""
import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_image_cache():
    folder = tempfile.mkdtemp(prefix="cnnkit-test-cache-")
    old = os.environ.get("CNNKIT_CACHE")
    os.environ["CNNKIT_CACHE"] = folder
    yield folder
    if old is None:
        os.environ.pop("CNNKIT_CACHE", None)
    else:
        os.environ["CNNKIT_CACHE"] = old
    shutil.rmtree(folder, ignore_errors=True)
