"""Export: ONNX (dynamic batch) and TorchScript, equal to eager to 1e-4; predict --engine onnx."""
import json

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.export import export_model, onnx_session


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    cnnkit.train("digits", out=str(out), epochs=2, quiet=True)
    return out


@pytest.mark.parametrize("name,shape", [("simplecnn_bn", (3, 32, 32)), ("resnet18", (1, 28, 28))])
def test_onnx_equals_eager_at_any_batch_size(tmp_path, name, shape):
    model = cnnkit.create_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1:]).eval()
    info = export_model(model, shape[0], shape[1:], tmp_path / "m.onnx", "onnx")
    assert info["max_abs_diff"] <= 1e-4
    sess = onnx_session(tmp_path / "m.onnx")
    for batch in (1, 7):
        x = torch.randn(batch, *shape)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)


def test_torchscript_equals_eager(tmp_path):
    model = cnnkit.create_model("lenet5", in_channels=1, input_size=(28, 28)).eval()
    export_model(model, 1, (28, 28), tmp_path / "m.pt", "torchscript")
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-4, rtol=1e-4)


def test_cli_export_and_onnx_predict(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "onnx", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"].endswith("model.onnx") and info["max_abs_diff"] <= 1e-4
    data = cnnkit.load_data("digits")
    images = [data.val.x[i].numpy() for i in range(16)]
    torch_probs = cnnkit.load_model(run_dir).predict_proba(images)
    onnx_probs = cnnkit.load_model(run_dir, engine="onnx").predict_proba(images)
    torch.testing.assert_close(onnx_probs, torch_probs, atol=1e-5, rtol=1e-4)


def test_bad_format_is_refused(tmp_path):
    with pytest.raises(CnnkitError, match="--format 'tflite'"):
        export_model(cnnkit.create_model("simplecnn"), 3, (32, 32), tmp_path / "m", "tflite")
