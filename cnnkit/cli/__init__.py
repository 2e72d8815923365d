"""`cnnkit <command>`: a thin layer over the Python API.

Each command is one module in this package with `NAME`, `HELP`, `add_arguments(parser)` and
`run(args) -> int`; it imports heavy things inside `run`, so `cnnkit --help` stays fast. Errors a user can
fix (`CnnkitError`, a missing file) are printed as one line, `cnnkit: error: …`, with exit status 2.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import pkgutil
import sys

from ..errors import CnnkitError


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for unknown flags and commands (Ultralytics does the same)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        if "unrecognized arguments:" in message:
            bad = message.split("unrecognized arguments:", 1)[1].split()
            known = [s for p in [self, *_SUBPARSERS] for a in p._actions for s in a.option_strings]
            hints = []
            for flag in bad:
                if flag.startswith("-"):
                    close = difflib.get_close_matches(flag.split("=")[0], known, n=1, cutoff=0.5)
                    if close:
                        hints.append(f"did you mean '{close[0]}' for '{flag}'?")
            if hints:
                message += "; " + "; ".join(hints)
        elif "invalid choice:" in message:
            bad = message.split("invalid choice:", 1)[1].split("'")[1]
            # "argument --optimizer: invalid choice: …": the hints come from that argument's own choices
            arg = message.split(":", 1)[0].replace("argument", "").strip()
            named = [a for a in self._actions if a.choices and (arg in a.option_strings or arg == a.metavar
                                                                or arg == a.dest)]
            choices = (named or [a for a in self._actions if a.choices] or [None])[0]
            choices = choices.choices if choices is not None else []
            close = difflib.get_close_matches(bad, list(choices), n=1, cutoff=0.5)
            if close:
                message += f"; did you mean '{close[0]}'?"
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


_SUBPARSERS: list[argparse.ArgumentParser] = []  # every command's parser, for the "did you mean"


def _commands() -> list:
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnkit", description="Convolutional neural networks: train, evaluate, explain.")
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
        _SUBPARSERS.append(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CnnkitError as e:
        print(f"cnnkit: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"cnnkit: error: no such file: {e.filename or e}", file=sys.stderr)
        return 2
    except (IsADirectoryError, NotADirectoryError, PermissionError) as e:
        print(f"cnnkit: error: {e.strerror or e}: {e.filename or ''}; check the path", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cnnkit ... | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
