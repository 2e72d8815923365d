from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A small trained run: simplecnn on the built-in digits, upscaled to 16×16, 4 epochs (~98% val accuracy)."""
    import cnnkit

    out = tmp_path_factory.mktemp("explain") / "digits-run"
    result = cnnkit.train("digits", epochs=4, img_size=16, out=str(out), quiet=True)
    assert result["val_acc"] > 0.9, result
    return Path(result["run_dir"])
