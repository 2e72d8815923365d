"""A real `cnnkit serve` on a free loopback port, started as its own process and stopped after the tests."""
from pathlib import Path

import pytest
from serving import Server


@pytest.fixture(scope="session")
def serve_run(digits_run) -> Path:
    """simplecnn trained on scikit-learn's digits at 16×16, 1 channel (tests/conftest.py's `digits_run`)."""
    return digits_run


@pytest.fixture(scope="session")
def digits_server(serve_run):
    s = Server(f"digits={serve_run}")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def serve_digits(digits_server) -> str:
    """The base URL (http://127.0.0.1:PORT) of a server whose one model, 'digits', is `serve_run`."""
    return digits_server.url
