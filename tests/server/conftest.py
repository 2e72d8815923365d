"""A real `cnnkit serve` on a free loopback port, started as its own process and stopped after the tests."""
from pathlib import Path

import pytest
from serving import Server


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory) -> Path:
    """simplecnn trained on scikit-learn's digits at 16×16, 1 channel (4 epochs, ~95% val accuracy)."""
    import cnnkit

    out = tmp_path_factory.mktemp("serve") / "digits-run"
    result = cnnkit.train("digits", epochs=4, img_size=16, out=str(out), quiet=True)
    assert result["val_acc"] > 0.9, result
    return Path(result["run_dir"])


@pytest.fixture(scope="session")
def digits_server(serve_run):
    s = Server(f"digits={serve_run}")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def serve_digits(digits_server) -> str:
    """The base URL (http://127.0.0.1:PORT) of a server whose one model, 'digits', is `serve_run`."""
    return digits_server.url
