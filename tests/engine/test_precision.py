"""`--precision`: bf16 autocast where the machine runs it faster, fp32 elsewhere, chosen per machine and said.

The choice follows the CPU's flags (AVX-512 BF16 or AMX: bf16; AVX2 only: fp32, where bf16 is emulated and
measured 7x slower); these tests give `cpu_info` a /proc/cpuinfo of each kind, so they check the rule on any
machine, and train for real to check that the precision chosen is the one used and recorded.
"""
import json

import pytest
import torch

import cnnkit
from cnnkit import _device
from cnnkit._device import cpu_info, pick_precision
from cnnkit.errors import CnnkitError

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n"
        "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu avx2\n\n")
AVX2 = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz\n"
        "flags\t\t: fpu sse2 avx avx2 fma\n\n")
SAPPHIRE = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "flags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n\n")


def _cpu(monkeypatch, tmp_path, text: str) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    real = _device.cpu_info
    monkeypatch.setattr(_device, "cpu_info", lambda p=str(path): real(p))


def test_cpu_info_reads_the_name_and_the_first_cpus_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(ZEN4)
    info = cpu_info(str(path))
    assert info["name"] == "AMD EPYC 9654 96-Core Processor"
    assert {"avx2", "avx512f", "avx512_bf16"} <= info["flags"] and "fpu" in info["flags"]
    assert cpu_info(str(tmp_path / "missing"))["flags"] == frozenset()  # no /proc: nothing assumed


@pytest.mark.parametrize("text, expected", [(ZEN4, "bf16"), (SAPPHIRE, "bf16"), (AVX2, "fp32"), ("", "fp32")])
def test_auto_is_bf16_only_on_cpus_with_bf16_instructions(monkeypatch, tmp_path, text, expected):
    _cpu(monkeypatch, tmp_path, text)
    precision, why = pick_precision("auto", torch.device("cpu"))
    assert precision == expected
    assert why.startswith("auto: ")
    if expected == "fp32":
        assert "emulated" in why


def test_an_explicit_choice_wins_and_bf16_on_an_avx2_cpu_is_warned_of(monkeypatch, tmp_path):
    _cpu(monkeypatch, tmp_path, AVX2)
    assert pick_precision("fp32", torch.device("cpu")) == ("fp32", "--precision")
    precision, why = pick_precision("bf16", torch.device("cpu"))
    assert precision == "bf16" and "slower" in why
    _cpu(monkeypatch, tmp_path, ZEN4)
    assert pick_precision("fp32", torch.device("cpu"))[0] == "fp32"
    with pytest.raises(CnnkitError, match="--precision 'fp16' is not one of auto, fp32, bf16"):
        pick_precision("fp16", torch.device("cpu"))


def test_the_precision_is_used_said_and_recorded(tmp_path, capsys):
    """Two runs from the same seed: bf16 rounding changes the weights (so autocast really ran), fp32 is what
    the header and model.json say, and the config keeps what was asked (a resume chooses for its machine)."""
    from safetensors.torch import load_file

    weights = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        cnnkit.train("digits", epochs=1, out=str(out), precision=precision, report=False)
        header = capsys.readouterr().out.splitlines()[1]
        assert f" in {precision} (--precision)" in header
        meta = json.loads((out / "model.json").read_text())
        assert meta["trained_on"]["precision"] == precision and meta["train"]["precision"] == precision
        weights[precision] = load_file(out / "model.safetensors")
    assert torch.allclose(weights["fp32"]["fc1.weight"], weights["bf16"]["fc1.weight"], atol=0.05)
    assert not torch.equal(weights["fp32"]["fc1.weight"], weights["bf16"]["fc1.weight"])


def test_the_cli_refuses_an_unknown_precision_in_one_line(capsys):
    from cnnkit.cli import main

    assert main(["train", "--data", "digits", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'fp16' is not one of auto, fp32, bf16" in err
