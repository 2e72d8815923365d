"""The fuzzing suite's settings and its count of cases.

Every file cnnkit reads that another program could have written (model.json, train_state.pt, CSV, IDX, CIFAR
batches, image and DICOM headers) and the CLI's argument values are fuzzed with hypothesis. The property is
always the same: cnnkit either does its job with sane values, or refuses with its own error (`CnnkitError`),
one line; never another exception, never a result that is silently wrong.

Two profiles: `make test` runs a fixed, derandomised number of examples per target (`cnnkit-test`, fast and
reproducible); `make fuzz` runs many more, freshly random (`cnnkit-fuzz`, `CNNKIT_FUZZ_EXAMPLES` per target),
and writes the count of cases and findings to `CNNKIT_FUZZ_REPORT` (bench/results/fuzz.json).
"""
from __future__ import annotations

import json
import os
import platform
import time

import pytest
from fuzzcases import CASES, PROFILE


@pytest.fixture(autouse=True)
def _memory_cap():
    """An input that makes cnnkit allocate without bound must fail its test (MemoryError, or torch's "can't
    allocate memory"), not get the whole run killed by the kernel: this process's address space is capped
    during each fuzz test (torch itself maps ~3 GB), and given back after it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = 8 * 2**30
    if hard == resource.RLIM_INFINITY or hard > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    # cnnkit's own guard (cnnkit/cli/_common.py: one command's tensors at most CNNKIT_MAX_BYTES, by default half of
    # the RAM) set well inside the cap, as it is inside the RAM: an estimate that misses a copy is a finding
    old = os.environ.get("CNNKIT_MAX_BYTES")
    os.environ["CNNKIT_MAX_BYTES"] = str(2 * 2**30)
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    if old is None:
        os.environ.pop("CNNKIT_MAX_BYTES", None)
    else:
        os.environ["CNNKIT_MAX_BYTES"] = old


# --- the count, summed over xdist workers -------------------------------------------------------------------
def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand the count to the controller
        session.config.workeroutput["fuzz_cases"] = json.dumps(dict(CASES))


def pytest_testnodedown(node, error):
    CASES.update(json.loads(getattr(node, "workeroutput", {}).get("fuzz_cases", "{}")))


def pytest_terminal_summary(terminalreporter):
    if not CASES:
        return
    failed = [r.nodeid for r in terminalreporter.stats.get("failed", []) if "tests/fuzz/" in r.nodeid]
    total = sum(CASES.values())
    terminalreporter.write_line(f"fuzz ({PROFILE}): {total} cases over {len(CASES)} targets, "
                                f"{len(failed)} findings")
    out = os.environ.get("CNNKIT_FUZZ_REPORT")
    if out:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   platform.processor())
        report = {"profile": PROFILE, "date": time.strftime("%Y-%m-%d"), "cpu": cpu, "total_cases": total,
                  "cases": dict(sorted(CASES.items())), "findings": len(failed), "failed": failed}
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
