"""`cnnkit lessons`: every number computed from the models, checked against the arithmetic done by hand."""
import json

import pytest

from cnnkit.cli import main
from cnnkit.explain.lessons import format_lessons, lessons

# by hand, from the layer plans (not from the models)
INPUTS = 224 * 224 * 3  # 150,528
FC_WEIGHTS = INPUTS * 1024  # 154,140,672
CONV1 = 3 * 3 * 3 * 32 + 32  # 896
SIMPLECNN_BN = ((3 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 128 + 128)  # three convolutions
                + 2 * (32 + 64 + 128)  # BatchNorm scale and shift
                + (128 * 64 + 64) + (64 * 2 + 2))  # fc1 (after global average pooling), fc2
SIMPLECNN = (3 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 8 * 8 * 128 + 128) + (128 * 10 + 10)
MLP_CIFAR = 3 * 32 * 32 * 1024 + 1024 + 1024 * 10 + 10


@pytest.fixture(scope="module")
def rows():
    return {r.key: r for r in lessons()}


def test_the_numbers_are_the_hand_computed_ones(rows):
    assert (INPUTS, FC_WEIGHTS, CONV1, SIMPLECNN_BN, SIMPLECNN) == (150_528, 154_140_672, 896, 102_082, 545_098)
    assert rows["fc_inputs"].value == INPUTS
    assert rows["fc_weights"].value == FC_WEIGHTS
    assert rows["conv1_params"].value == CONV1
    assert rows["fc_vs_conv"].value == round(FC_WEIGHTS / CONV1, 1) == 172_032.0
    assert rows["positions"].value == 224 * 224 == 50_176
    assert rows["unshared_weights"].value == 50_176 * 27 == 1_354_752
    assert rows["shared_weights"].value == 27
    assert rows["simplecnn_bn_params"].value == SIMPLECNN_BN
    assert rows["simplecnn_params"].value == SIMPLECNN
    assert rows["mlp_cifar_params"].value == MLP_CIFAR == 3_157_002


def test_where_the_lesson_differs_it_says_so(rows):
    agree = {k: r.agrees for k, r in rows.items()}
    assert agree == {"fc_inputs": True, "fc_weights": True, "conv1_params": True, "fc_vs_conv": True,
                     "positions": True, "unshared_weights": True, "shared_weights": True,
                     "simplecnn_bn_params": False, "simplecnn_params": False, "mlp_cifar_params": None}
    assert rows["simplecnn_bn_params"].lesson == "~200K"
    assert "93,248 in the three convolutions" in rows["simplecnn_bn_params"].note
    # the lesson divides weights (FC) by weights and biases (conv); the like-for-like ratios are given
    assert f"{(FC_WEIGHTS + 1024) / CONV1:,.0f}×" in rows["fc_vs_conv"].note  # 172,033×
    assert f"{FC_WEIGHTS / (CONV1 - 32):,.0f}×" in rows["fc_vs_conv"].note  # 178,404×
    # at 224×224 the CIFAR SimpleCNN's flatten is 64·56·56
    big = (3 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 56 * 56 * 128 + 128) + (128 * 10 + 10)
    assert f"{big:,}" in rows["simplecnn_params"].note


def test_table_prints_every_row(rows):
    lines: list[str] = []
    format_lessons(list(rows.values()), print_fn=lines.append)
    text = "\n".join(lines)
    for r in rows.values():
        assert r.quantity in text and r.shown in text
    assert "154,140,672  = 150M+" in text and "102,082  ≠ ~200K" in text and "172,032×" in text


def test_cli_json(capsys):
    assert main(["lessons", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    by_key = {r["key"]: r for r in d["rows"]}
    assert by_key["fc_weights"]["value"] == FC_WEIGHTS and by_key["conv1_params"]["value"] == CONV1
    assert by_key["simplecnn_bn_params"]["value"] == SIMPLECNN_BN and by_key["simplecnn_bn_params"]["agrees"] is False
    assert set(by_key["fc_inputs"]) == {"key", "quantity", "value", "shown", "lesson", "agrees", "note"}


def test_cli_table(capsys):
    assert main(["lessons"]) == 0
    out = capsys.readouterr().out
    assert "154,140,672" in out and "1,354,752" in out and "545,098" in out
