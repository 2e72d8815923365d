"""The lessons' fully connected baseline: exact sizes, the same function as the lesson's network written in
PyTorch, real accuracy on digits, and one clear line where a command needs feature maps it does not have."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnkit import create_model
from cnnkit.errors import CnnkitError, InputSizeError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("shape,classes,by_hand,expected", [
    ((1, 28, 28), 10, 784 * 1024 + 1024 + 1024 * 10 + 10, 814_090),
    ((1, 8, 8), 10, 64 * 1024 + 1024 + 1024 * 10 + 10, 76_810),  # the digits
    ((3, 32, 32), 10, 3072 * 1024 + 1024 + 1024 * 10 + 10, 3_157_002),  # CIFAR-10
    ((3, 224, 224), 10, 150_528 * 1024 + 1024 + 1024 * 10 + 10, 154_151_946),  # the lessons' 224×224×3
])
def test_parameter_counts(shape, classes, by_hand, expected):
    assert by_hand == expected
    with torch.device("meta"):  # counted, not allocated (617 MB at 224×224×3)
        m = create_model("mlp", num_classes=classes, in_channels=shape[0], input_size=shape[1:])
    assert n_params(m) == expected
    assert m.fc1.weight.numel() == shape[0] * shape[1] * shape[2] * 1024  # 154,140,672 at 224×224×3


def test_the_lessons_network_written_out_in_torch():
    """flatten → Linear(C·H·W, 1024) → ReLU → Linear(1024, classes): the same outputs with the same weights."""
    ours = create_model("mlp", in_channels=1, input_size=(28, 28)).eval()
    lesson = nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 10)).eval()
    lesson.load_state_dict({"1.weight": ours.fc1.weight, "1.bias": ours.fc1.bias,
                            "3.weight": ours.fc2.weight, "3.bias": ours.fc2.bias})
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), lesson(x))
    assert [type(m) for m in ours.children()] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]  # no dropout


def test_forward_shapes_and_interface():
    m = create_model("mlp", num_classes=7, in_channels=3, input_size=(32, 32))
    x = torch.randn(5, 3, 32, 32)
    assert m(x).shape == (5, 7)
    assert m.forward_features(x).shape == (5, 1024)  # the hidden layer: no spatial map
    assert m.stage_names == () and m.feature_maps(x) == {}
    assert m.get_classifier() is m.fc2
    m.reset_classifier(3)
    assert m(x).shape == (5, 3) and m.model_kwargs["num_classes"] == 3
    with pytest.raises(InputSizeError, match=r"built for 32x32 .* input_size=\(28, 28\)"):
        m(torch.zeros(1, 3, 28, 28))
    with pytest.raises(InputSizeError, match="in_channels=1"):
        m(torch.zeros(1, 1, 32, 32))


def test_gradcam_says_there_is_no_convolution():
    from cnnkit.explain.gradcam import gradcam

    with pytest.raises(CnnkitError, match="mlp has no convolution, so no feature maps: Grad-CAM"):
        gradcam(create_model("mlp"), torch.randn(1, 3, 32, 32), 0)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    import cnnkit

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("mlp") / "run"
    result = cnnkit.train("digits", model="mlp", epochs=2, out=str(out), quiet=True)
    assert result["val_acc"] > 0.85, result  # 0.90 on 1×8×8 digits after two epochs
    return Path(result["run_dir"])


def test_trains_on_digits_and_writes_its_report(mlp_run):
    html = (mlp_run / "report.html").read_text(encoding="utf-8")
    assert "mlp is fully connected" in html and "worst-classified validation images" in html
    assert "Grad-CAM at" not in html and "First-layer filters" not in html


@pytest.mark.parametrize("source", ["run", "mlp"])
def test_explain_answers_in_one_line(mlp_run, tmp_path, capsys, source):
    from cnnkit.cli import main

    out = tmp_path / "explain"
    code = main(["explain", str(mlp_run) if source == "run" else "mlp", "camera", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "mlp has no convolution, so no feature maps" in err
    assert not out.exists()  # nothing half-written


def test_predict_and_evaluate_work(mlp_run, tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from cnnkit.cli import main

    digits = load_digits()
    png = tmp_path / "zero.png"
    Image.fromarray((digits.images[0] * 255 / 16).astype(np.uint8)).save(png)  # a 0
    assert main(["predict", str(mlp_run), str(png), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["top"][0]["class"] == str(digits.target[0])
    assert main(["evaluate", str(mlp_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.85
