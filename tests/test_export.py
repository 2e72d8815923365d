"""Export: ONNX (dynamic batch) and TorchScript take 0–255 pixels and equal eager to 1e-4; `cnnkit export`."""
import json

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.export import OnnxModel, export_model, onnx_session
from cnnkit.preprocess import Preprocess

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


def _pre(shape) -> Preprocess:
    return Preprocess(shape[0], shape[1:], (0.5,) * shape[0], (0.25,) * shape[0])


@pytest.mark.parametrize("name,shape", [("simplecnn_bn", (3, 32, 32)), ("resnet18", (1, 28, 28))])
def test_onnx_equals_eager_at_any_batch_size(tmp_path, name, shape):
    model = cnnkit.create_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1:]).eval()
    pre = _pre(shape)
    info = export_model(model, pre, tmp_path / "m.onnx", "onnx", classes=[str(i) for i in range(10)])
    assert info["max_abs_diff"] <= 1e-4
    sess = onnx_session(tmp_path / "m.onnx")
    assert [i.name for i in sess.get_inputs()] == ["pixels"] and [o.name for o in sess.get_outputs()] == ["logits"]
    for batch in (1, 7):
        x = torch.rand(batch, *shape) * 255
        got = sess.run(None, {"pixels": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(pre.normalize(x)).numpy(), atol=1e-4, rtol=1e-4)


def test_torchscript_equals_eager(tmp_path):
    model = cnnkit.create_model("lenet5", in_channels=1, input_size=(28, 28)).eval()
    pre = _pre((1, 28, 28))
    export_model(model, pre, tmp_path / "m.pt", "torchscript", classes=[str(i) for i in range(10)])
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x.float()), model(pre.normalize(x)), atol=1e-4, rtol=1e-4)


def test_export_leaves_the_callers_model_alone(tmp_path):
    model = cnnkit.create_model("simplecnn_bn", num_classes=2, in_channels=1, input_size=(28, 28)).train()
    export_model(model, _pre((1, 28, 28)), tmp_path / "m.pt", "torchscript", classes=["a", "b"])
    assert model.training  # the export works on a copy in eval mode


def test_cli_export_equals_the_runs_predictor(tmp_path, capsys):
    run_mod = pytest.importorskip("cnnkit.run", reason="cnnkit.run (Predictor) is not here yet")
    run_dir = tmp_path / "run"
    cnnkit.train("digits", out=str(run_dir), epochs=1, quiet=True, report=False)
    assert main(["export", str(run_dir), "--format", "onnx", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"].endswith("model.onnx") and info["max_abs_diff"] <= 1e-4
    p = run_mod.Predictor.from_run(run_dir)
    om = OnnxModel(info["path"])
    assert om.classes == list(p.classes) and om.preprocess == p.preprocess
    x = torch.randint(0, 256, (16, p.preprocess.channels, *p.preprocess.size), dtype=torch.uint8)
    with torch.no_grad():  # the run's temperature travels inside the graph: calibrated probabilities
        want = torch.softmax(p.model.cpu()(p.preprocess.normalize(x)) / p.temperature, 1)
    assert p.temperature != 1.0 and om.temperature == pytest.approx(p.temperature)
    torch.testing.assert_close(torch.softmax(om.logits(x), 1), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(p.probs(x), want, atol=1e-5, rtol=1e-4)


def test_bad_format_is_refused(tmp_path):
    with pytest.raises(CnnkitError, match="--format 'tflite'"):
        export_model(cnnkit.create_model("simplecnn"), _pre((3, 32, 32)), tmp_path / "m", "tflite", classes=["a"])
