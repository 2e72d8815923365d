"""Shared by the benchmarks: the machine description, result JSON, and the table printer."""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what decides a fast path on a CPU


def _cpuinfo() -> dict:
    """The first processor's entries in /proc/cpuinfo ({} where there is none): cnnkit's own reading."""
    from cnnkit._device import cpu_info

    return cpu_info()["fields"]


def machine() -> dict:
    """Which machine a figure came from: the CPU's name, family/model and the flags that choose a fast path.

    Flags are matched as whole words: a substring test would read 'avx512f' into 'avx512fp16'. Several
    machines report the same virtualised name ('AMD EPYC') with and without AVX-512, so the name alone does
    not say which CPU it was; family/model/stepping and the flags do.
    """
    import torch

    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    has = {f: f in flags for f in CPU_FLAGS}
    cpu = info.get("model name") or platform.processor() or platform.machine()
    family = ", ".join(f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info)
    try:
        capability = torch.backends.cpu.get_cpu_capability()  # the kernels torch dispatches to here
    except AttributeError:
        capability = None
    return {
        "cpu": cpu, "cpu_vendor": info.get("vendor_id"), "cpu_family_model": family or None,
        "cpu_flags": has, "torch_cpu_capability": capability,
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "avx512": has["avx512f"], "amx": has["amx_tile"],  # kept: older results and benches read these two
        "torch": torch.__version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def cpu_line(m: dict | None = None) -> str:
    """One line naming the CPU for a table's caption: 'AMD EPYC (cpu family 26, model 2, …; avx2 avx512f …)'."""
    m = m or machine()
    flags = " ".join(f for f, on in m.get("cpu_flags", {}).items() if on) or "none of " + "/".join(CPU_FLAGS)
    fam = f"{m['cpu_family_model']}; " if m.get("cpu_family_model") else ""
    return f"{m['cpu']} ({fam}{flags}; torch kernels {m.get('torch_cpu_capability')}, {m['cores']} cores)"


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (VmHWM; since the last `reset_peak_rss`)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start the peak (VmHWM, and with it ru_maxrss) again from the current RSS, so the next step's peak is
    its own (Linux's /proc/self/clear_refs). False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def spread(values: list[float]) -> dict:
    """{'median', 'min', 'max', 'runs'} of repeated measurements (None-free)."""
    import statistics

    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """columns: (key, header). Values are formatted as given (strings) or with :g."""
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    table = [[h for _, h in columns]] + [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
