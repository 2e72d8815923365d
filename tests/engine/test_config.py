"""Defaults come from the data and the preset; explicit options win; bad values are named."""
import dataclasses

import pytest

from cnnkit.engine.config import DATA_MODES, PRESETS, TrainConfig, apply_preset, check, help_of, resolve
from cnnkit.errors import CnnkitError


def test_defaults_follow_the_data():
    small = resolve(TrainConfig(), n_train=1437, size=(8, 8))
    assert (small.model, small.epochs, small.batch_size, small.augment) == ("simplecnn", 30, 64, "light")
    assert small.lr == 3e-3 and small.label_smoothing == 0.1
    big = resolve(TrainConfig(), n_train=45_000, size=(28, 28))
    assert (big.model, big.epochs, big.batch_size, big.augment) == ("simplecnn", 12, 128, "standard")
    photos = resolve(TrainConfig(optimizer="sgd"), n_train=800, size=(128, 128))
    assert photos.model == "simplecnn_bn" and photos.lr == 0.05


def test_fast_preset_and_explicit_options_win():
    fast = resolve(TrainConfig(preset="fast"), n_train=48_000, size=(28, 28))
    for key, value in PRESETS["fast"].items():
        assert getattr(fast, key) == value
    mine = resolve(TrainConfig(preset="fast", epochs=7, model="simplecnn"), n_train=48_000, size=(28, 28))
    assert mine.epochs == 7 and mine.model == "simplecnn" and mine.batch_size == PRESETS["fast"]["batch_size"]
    assert mine.model_kwargs == {}  # fastcnn's arguments are not given to another network
    theirs = resolve(TrainConfig(preset="fast", model_kwargs={"widths": [16, 32]}), n_train=48_000, size=(28, 28))
    assert theirs.model_kwargs == {"dropout": 0.0, "widths": [16, 32]}
    assert apply_preset(TrainConfig(preset="fast")).val_fraction == PRESETS["fast"]["val_fraction"]


@pytest.mark.parametrize("cfg", [TrainConfig(), TrainConfig(preset="fast"), TrainConfig(optimizer="sgd", epochs=3)])
def test_resolving_twice_changes_nothing(cfg):
    """api.train resolves once to name the run directory and hands the result to the Trainer, which resolves again."""
    once = resolve(cfg, n_train=48_000, size=(28, 28))
    assert resolve(once, n_train=48_000, size=(28, 28)) == once


@pytest.mark.parametrize("kw,needle", [
    ({"preset": "turbo"}, "--preset 'turbo'"), ({"optimizer": "lion"}, "--optimizer 'lion'"),
    ({"scheduler": "step"}, "--scheduler 'step'"), ({"epochs": 0}, "--epochs must be at least 1"),
    ({"batch_size": -4}, "--batch-size"), ({"patience": 0}, "--patience"),
])
def test_bad_values_are_named(kw, needle):
    with pytest.raises(CnnkitError, match=needle.replace("(", r"\(")):
        resolve(TrainConfig(**kw), n_train=100, size=(28, 28))


@pytest.mark.parametrize("kw,needle", [
    ({"weight_decay": -0.1}, "--weight-decay must be at least 0, got -0.1"),
    ({"data_mode": "ram"}, "--data-mode 'ram' is not one of auto, memory, stream"),
    ({"augment": "standrd"}, "did you mean 'standard'?"), ({"lr": 0.0}, "--lr must be positive"),
    ({"label_smoothing": 1.0}, "--label-smoothing must be less than 1"), ({"on_bad_image": "ignore"}, "fail, skip"),
])
def test_check_names_the_flag_before_any_data_is_read(kw, needle):
    with pytest.raises(CnnkitError, match=needle.replace("?", r"\?")):
        check(TrainConfig(**kw))
    assert check(TrainConfig()) == TrainConfig()  # None means "from the data": not an error


def test_every_option_is_documented_and_the_new_ones_default_to_the_data():
    for f in dataclasses.fields(TrainConfig):
        assert len(help_of(f.name)) > 5, f"TrainConfig.{f.name} has no reason"
    cfg = TrainConfig()
    assert cfg.flips is None and cfg.data_mode == "auto" and DATA_MODES == ("auto", "memory", "stream")
    assert TrainConfig().model_kwargs is not TrainConfig().model_kwargs  # a fresh dict each time
