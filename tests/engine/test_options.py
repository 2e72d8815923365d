"""`cnnkit train`'s flags are made from TrainConfig: one per field, no default of their own, bad values one line."""
import argparse
import dataclasses

import pytest

from cnnkit import api
from cnnkit.cli import main
from cnnkit.cli import train as train_cli
from cnnkit.engine.config import PRESETS, TrainConfig, apply_preset, flag, help_of


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    return p


def options(*argv) -> dict:
    return train_cli.config_options(parser().parse_args(list(argv)))


def test_every_field_has_a_flag_with_its_help_and_no_default():
    actions = {a.dest: a for a in parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        a = actions.get(f.name)
        assert a is not None, f"TrainConfig.{f.name} has no flag"
        assert flag(f.name) in a.option_strings and a.default is argparse.SUPPRESS
        assert help_of(f.name) and help_of(f.name).replace("None:", "default:") in a.help
    assert actions["optimizer"].choices == ("adamw", "sgd", "adam")
    assert actions["data_mode"].choices == ("auto", "memory", "stream")
    assert {"--channels-last", "--no-channels-last"} <= set(actions["channels_last"].option_strings)
    assert {"--report", "--no-report", "--flips", "--no-flips"} <= {s for a in actions.values() for s in a.option_strings}
    from cnnkit.cli._common import nonneg_float, positive_int

    assert actions["epochs"].type is positive_int and actions["weight_decay"].type is nonneg_float


def test_only_typed_options_are_passed():
    assert options() == {}
    got = options("--weight-decay", "0.01", "--no-channels-last", "--flips", "--model-kwargs", '{"small_input": true}',
                  "--data-mode", "stream", "--max-pixels", "1000")
    assert got == {"weight_decay": 0.01, "channels_last": False, "flips": True, "model_kwargs": {"small_input": True},
                   "data_mode": "stream", "max_pixels": 1000}
    cfg = TrainConfig(**got)
    assert cfg.weight_decay == 0.01 and cfg.momentum == 0.9 and cfg.label_smoothing is None


def test_a_flag_left_out_does_not_override_the_preset():
    fast = apply_preset(TrainConfig(**options("--preset", "fast")))
    assert fast.epochs == PRESETS["fast"]["epochs"] == 4 and fast.model == "fastcnn" and fast.lr == 8e-3
    assert fast.model_kwargs == {"dropout": 0.0} and fast.report_background is True
    mine = apply_preset(TrainConfig(**options("--preset", "fast", "--epochs", "7", "--label-smoothing", "0")))
    assert mine.epochs == 7 and mine.label_smoothing == 0 and mine.batch_size == PRESETS["fast"]["batch_size"]


@pytest.fixture
def calls(monkeypatch):
    """api.train and api.resume replaced by recorders: these tests check what the CLI passes, not training."""
    seen = []

    def fake(name):
        def record(*args, **kw):
            seen.append((name, args, kw))
            return {"run_dir": "runs/x", "val_acc": 0.5, "stopped": None}
        return record

    monkeypatch.setattr(api, "train", fake("train"))
    monkeypatch.setattr(api, "resume", fake("resume"))
    return seen


def test_cli_passes_the_typed_options_to_api_train(capsys, calls):
    assert main(["train", "--weight-decay", "0.01", "--preset", "fast", "--no-report"]) == 0
    (name, args, kw), = calls
    kw.pop("log_stream")
    assert name == "train" and args == () and kw == {"weight_decay": 0.01, "preset": "fast", "report": False}
    assert "val_acc=0.5000" in capsys.readouterr().out


def test_resume_takes_only_what_may_change(capsys, calls, tmp_path):
    assert main(["train", "--resume", str(tmp_path), "--epochs", "12", "--data", "digits", "--no-report"]) == 0
    (name, args, kw), = calls
    kw.pop("log_stream")
    assert name == "resume" and args == (str(tmp_path),) and kw == {"epochs": 12, "data": "digits", "report": False}
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1", "--seed", "3", "--epochs", "12"]) == 2
    err = capsys.readouterr().err
    assert "drop --lr, --seed" in err and "--epochs" not in err.split("drop")[1].split("(")[0]
    assert len(calls) == 1


@pytest.mark.parametrize("argv,needle", [
    (["--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
    (["--optimizer", "sgdd"], "argument --optimizer: 'sgdd' is not one of adamw, sgd, adam; did you mean 'sgd'?"),
    (["--augment", "standrd"], "did you mean 'standard'?"),
    (["--weight_decay", "0.1"], "did you mean '--weight-decay'"),
    (["--channels-last", "no"], "unrecognized arguments: no"),
    (["--weight-decay", "-1"], "--weight-decay must be at least 0, got -1.0"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--val-fraction", "1.5"], "--val-fraction must be less than 1"),
    (["--model-kwargs", "{small_input: true}"], "--model-kwargs '{small_input: true}' is not JSON"),
    (["--model-kwargs", "[1]"], "--model-kwargs must be a JSON object"),
])
def test_bad_values_are_one_line(capsys, calls, argv, needle):
    try:
        code = main(["train", *argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err.splitlines()[0] and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2 and calls == []  # (argparse adds "see --help"); nothing trained


def test_help_lists_the_generated_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for text in ("--weight-decay", "--no-channels-last", "--data-mode {auto,memory,stream}", "--model-kwargs JSON",
                 "--resume RUN_DIR", "SGD only (default: 0.9)"):
        assert text in out
