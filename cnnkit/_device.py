"""Choosing the torch device from a flag: auto, cpu, cuda, cuda:N."""
from __future__ import annotations

import torch

from .errors import CnnkitError


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA if available, else the CPU. A CUDA device asked for where none exists is one clear line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise CnnkitError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CnnkitError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None


PRECISIONS = ("auto", "fp32", "bf16")
#: the CPU instructions that make bf16 autocast pay on a CPU (AVX-512 BF16: AMD Zen 4 and later, Intel Cooper
#: Lake/Sapphire Rapids; AMX: Intel Sapphire Rapids and later)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """The CPU's model name, instruction-set flags and the first processor's entries ("fields": family, model,
    stepping, ...), from /proc/cpuinfo (Linux); elsewhere the name `platform` gives, no flags and no fields (so
    nothing is assumed of the CPU)."""
    import platform

    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    name = fields.get("model name") or platform.processor() or platform.machine()
    return {"name": name, "flags": flags, "fields": fields}


def pick_precision(name: str, device: torch.device) -> tuple[str, str]:
    """(precision, why): `--precision auto` is bf16 autocast where it trains faster, fp32 elsewhere.

    Measured on a fastcnn training step (batch 128, channels_last): on an AMD EPYC with AVX-512 BF16, 19 ms
    in bf16 against 24 ms in fp32 (1.25x faster, the same accuracy: bench/preset_search.py); on AVX2-only CPUs,
    bf16 was 7x slower (it is emulated). On a GPU, bf16 where the GPU supports it (tensor cores)."""
    if name not in PRECISIONS:
        raise CnnkitError(f"--precision {name!r} is not one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        if name == "auto":
            return ("bf16", "auto: the GPU has bf16 tensor cores") if ok else ("fp32", "auto: this GPU has no bf16")
        if name == "bf16" and not ok:
            raise CnnkitError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp32")
        return name, "--precision"
    if device.type != "cpu":
        if name == "auto":
            return "fp32", f"auto: bf16 autocast is not used on {device.type}"
        return name, "--precision"
    has = [f for f in BF16_FLAGS if f in cpu_info()["flags"]]
    if name == "auto":
        if has:
            return "bf16", f"auto: this CPU has {has[0].upper().replace('_', ' ', 1)}"
        return "fp32", "auto: no bf16 instructions on this CPU (bf16 there is emulated, ~7x slower)"
    if name == "bf16" and not has:
        return "bf16", "--precision; this CPU has no bf16 instructions, so expect it to be several times slower"
    return name, "--precision"
