"""cnnkit's error types: each message names the offending input, what was expected, and the fix.

The CLI prints these as one line (no stack trace) and exits with status 2.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class CnnkitError(Exception):
    """A user-facing error: bad input, bad flag, unknown name. Its message is the whole story."""


class UnknownNameError(CnnkitError, KeyError):
    """An unknown name (model, kernel, sample, data source): lists the valid ones and a 'did you mean'."""

    def __init__(self, what: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        self.name, self.valid = name, valid
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown {what} '{name}'.{hint} Valid: {', '.join(valid)}.")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class InputSizeError(CnnkitError, ValueError):
    """An input shape a model or op cannot take."""


def refused_pickle(e: BaseException, limit: int = 160) -> str:
    """What `torch.load(weights_only=True)` refused, as one plain line: PyTorch's message is several lines with
    colour codes, the part that names the refused global somewhere in the middle."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(e))
    found = re.search(r"[^\n]*unsupported (?:global|operand)[^\n]*", text, re.I)
    line = found.group(0) if found else next((s for s in text.splitlines() if s.strip()), "content weights_only refuses")
    line = "".join(ch if ch.isprintable() else " " for ch in line).strip().rstrip(".")
    return line if len(line) <= limit else line[:limit - 1] + "…"
