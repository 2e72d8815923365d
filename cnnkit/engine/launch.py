"""`cnnkit train --nproc N`: the same training through torchrun's launcher on this machine.

cnnkit does not start or watch the processes itself: torchrun (torch.distributed.run --standalone) does, and
this module only reads what comes back. The processes' log lines (progress, the epoch lines) pass through
as they come; what torchrun itself adds when a process fails (its error log, a Python traceback of its own
ChildFailedError, a block per failed rank) is not the user's to read, so it is kept aside, and a failure is
one line: the first process's own `cnnkit: error: …` line, else where torchrun's full output was saved.

>>> launch_command(2, ["train", "--epochs", "1"])[-6:]
['--max-restarts=0', '-m', 'cnnkit', 'train', '--epochs', '1']
>>> _is_error("cnnkit: error: --data x: no such file")
'--data x: no such file'
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

from ..errors import CnnkitError
from .distributed import check_nproc, read_env

# torchrun's own lines: its logger's ("E1208 00:20:44.681000 3600 …/api.py:1002] failed …"), and the traceback
# of its ChildFailedError with the report after it (from "Traceback" to the end: a process's own unexpected
# error is one line and a log file, cnnkit's command-line boundary sees to that)
_LAUNCHER_LOG = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ ")
_TRACEBACK = "Traceback (most recent call last):"
_ERROR = re.compile(r"^cnnkit(?: \w+)?: error: (.*)$")
# set in the processes `run` starts: their result goes back as JSON, and the command that started them prints it
CHILD_VAR = "CNNKIT_NPROC_CHILD"
# a rank that stopped because another did: its line says so, the other rank's says why
_SECONDARY = "another process of this training stopped"


def launch_command(nproc: int, cnnkit_args: list[str], *, max_restarts: int = 0) -> list[str]:
    """The torchrun command that starts `cnnkit <cnnkit_args>` on `nproc` processes of this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            f"--max-restarts={max_restarts}", "-m", "cnnkit", *cnnkit_args]


def _is_error(line: str) -> str | None:
    m = _ERROR.match(line.rstrip("\n"))
    return m.group(1) if m else None


def run(nproc: int, cnnkit_args: list[str], *, device: str = "auto", log=None) -> dict:
    """Run `cnnkit <cnnkit_args> --json` on `nproc` processes through torchrun; rank 0's JSON result.

    The processes' log lines go to `log` (default: stderr) as they come; a failure raises one CnnkitError."""
    if read_env().enabled or os.environ.get("TORCHELASTIC_RUN_ID"):
        raise CnnkitError("--nproc starts its own processes; under torchrun, leave it out")
    check_nproc(nproc, device)
    log = log or sys.stderr
    env = dict(os.environ)
    # torchrun sets 1 itself when unset, with a banner saying so; the same value, without the banner
    env.setdefault("OMP_NUM_THREADS", "1")
    env[CHILD_VAR] = "1"
    out: list[str] = []
    errors: list[str] = []
    held: list[str] = []  # torchrun's own output, kept for a log file should no process say what went wrong
    with subprocess.Popen(launch_command(nproc, [*cnnkit_args, "--json"]), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors="replace", env=env) as proc:
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
        reader.start()
        report = False
        try:
            for line in proc.stderr:
                error = _is_error(line)
                if error is not None:
                    errors.append(error)
                    continue
                report = report or line.startswith(_TRACEBACK)
                if report or _LAUNCHER_LOG.match(line):
                    held.append(line)
                else:
                    log.write(line)
                    log.flush()
            proc.wait()
        except BaseException:  # Ctrl-C, a closed log: the processes go with this one
            proc.kill()
            raise
        reader.join()
    if proc.returncode != 0:
        first = next((e for e in errors if _SECONDARY not in e), None)
        if first is not None:
            raise CnnkitError(first)
        raise CnnkitError(f"training on {nproc} processes failed (torchrun exit status {proc.returncode}): "
                          f"{_died(held) or 'no process said why'}; {_save(held)}")
    text = "".join(out)
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        raise CnnkitError(f"training on {nproc} processes printed no result ({text[-200:]!r})") from None


def _died(lines: list[str]) -> str | None:
    """The first process that died without a word, from torchrun's log line
    ("… failed (exitcode: -9) local_rank: 1 (pid: 4112) of binary: …")."""
    import signal

    for line in lines:
        m = re.search(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)", line)
        if m:
            code = int(m.group(1))
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() \
                else f"exited with status {code}"
            return f"the process of local rank {m.group(2)} {how}"
    return None


def _save(lines: list[str]) -> str:
    """torchrun's report, in a file (mode 0600) beside cnnkit's other logs; where it is, as words."""
    import tempfile
    import time

    base = os.environ.get("CNNKIT_LOG_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cnnkit", "logs")
    text = "".join(lines) or "(torchrun printed nothing)\n"
    for where in (base, None):
        try:
            if where:
                os.makedirs(where, mode=0o700, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-torchrun-", suffix=".log",
                                        dir=where)
            with os.fdopen(fd, "w", errors="replace") as f:
                f.write(text)
            return f"torchrun's report is in {path}"
        except OSError:
            continue
    return "torchrun's report could not be saved"
