"""`cnnkit finetune-report`: three strategies × shots trained for real on digits (tiny settings), the subsets
exactly k per class, the linear probe's body untouched and the fine-tune's changed, and bad flags refused."""
import json

import pytest
import torch

from cnnkit.cli import main
from cnnkit.models import create_model
from cnnkit.run import format as fmt


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "report"
    code = main(["finetune-report", "--data", "digits", "--out", str(out), "--shots", "3,6", "--epochs", "2",
                 "--img-size", "32", "--json"])
    assert code == 0
    return out, json.loads((out / "finetune.json").read_text())


def test_every_strategy_at_every_shot_is_trained_and_scored(report):
    out, rep = report
    assert [(r["strategy"], r["per_class"]) for r in rep["rows"]] == [
        (s, k) for k in (3, 6) for s in ("linear probe", "fine-tune", "from scratch")]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rep["rows"])
    assert rep["scored_on"].startswith("val") and any("no test split" in n for n in rep["notes"])
    html = (out / "finetune.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and rep["reading"] in html


def test_each_run_trained_on_exactly_k_images_per_class(report):
    out, rep = report
    for r in rep["rows"]:
        split = json.loads((out / "runs" / r["run_dir"].rsplit("/", 1)[-1] / fmt.SPLIT).read_text())
        meta = json.loads((out / "runs" / r["run_dir"].rsplit("/", 1)[-1] / fmt.META).read_text())
        assert meta["data"]["sizes"]["train"] == 10 * r["per_class"] == r["train_images"]
        assert split is not None


def test_the_probe_keeps_the_imagenet_body_and_fine_tuning_changes_it(report):
    out, _ = report
    pretrained = create_model("mobilenet_v2", pretrained=True, in_channels=1, num_classes=10).state_dict()
    # the weights after the last epoch (the saved best may be the head-only first epoch)
    last = lambda name: fmt.load_state(out / "runs" / name / fmt.STATE)["model"]  # noqa: E731
    probe, tuned, scratch = last("linear-probe-3"), last("fine-tune-3"), last("from-scratch-3")
    key = "features.6.conv.0.0.weight"  # a convolution in the middle of the body
    assert torch.equal(probe[key], pretrained[key])
    assert not torch.equal(tuned[key], pretrained[key])
    assert not torch.allclose(scratch[key], pretrained[key], atol=1e-2)


@pytest.mark.parametrize("argv, message", [
    (["--shots", "10,x"], "is not a list of positive whole numbers"),
    (["--shots", "0"], "is not a list of positive whole numbers"),
    (["--model", "simplecnn"], "simplecnn has no pretrained weights"),
])
def test_bad_flags_are_one_line_before_any_training(capsys, tmp_path, argv, message):
    try:
        code = main(["finetune-report", "--data", "digits", "--out", str(tmp_path / "o"), *argv])
    except SystemExit as e:  # argparse's own errors: usage line and exit status 2
        code = e.code
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
