"""`cnnkit <command>`: a thin layer over the Python API.

Each command is one module in this package with `NAME`, `HELP`, `add_arguments(parser)` and
`run(args) -> int`; it imports heavy things inside `run`, so `cnnkit --help` stays fast. Errors a user can
fix (`CnnkitError`, a missing file, a bad flag) are printed as one line, `cnnkit: error: …`, with exit status 2.

`main` is the one boundary between cnnkit and the terminal: whatever else escapes a command (a bug) becomes
one line naming the command and a log file that holds the full traceback (exit status 1); `--debug`, before
or after the command name (or CNNKIT_DEBUG=1), lets the traceback through instead. Running out of memory or
of disk space gets its own line saying what to do.
"""
from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import pkgutil
import re
import sys

from ..errors import CnnkitError

GLOBAL_FLAGS = ("--debug", "--version", "--help")
# Names people reach for that are another flag here: a hint only, never accepted (an alias would be a second
# spelling to document and to keep)
_ALIASES = {"learning-rate": "--lr", "learningrate": "--lr", "rate": "--lr", "learn-rate": "--lr",
            "image-size": "--img-size", "imgsz": "--img-size", "size": "--img-size", "imagesize": "--img-size",
            "bs": "--batch-size", "batch": "--batch-size", "batchsize": "--batch-size", "epoch": "--epochs",
            "wd": "--weight-decay", "output": "--out", "outdir": "--out", "output-dir": "--out", "out-dir": "--out",
            "gpu": "--device", "random-seed": "--seed", "arch": "--model", "architecture": "--model",
            "dataset": "--data", "data-dir": "--data", "topk": "--top-k", "k": "--top-k"}


def _suggest(flag: str, known: list[str]) -> str | None:
    """The flag of `known` meant by the unknown `flag`: a known misspelling of a name people use (--learning-rate
    for --lr), a close spelling (difflib), or one name inside the other (--lr-rate, --size)."""
    name = flag.split("=")[0].lstrip("-").lower().replace("_", "-")
    if not name:
        return None
    plain = {k.lstrip("-"): k for k in known if k.startswith("--")}
    aliases = {a: f for a, f in _ALIASES.items() if f in known}
    for pool in (plain, aliases):  # exact, after normalising (--Batch_Size)
        if name in pool:
            return pool[name]
    close = difflib.get_close_matches(name, list(plain) + list(aliases), n=1, cutoff=0.75)
    if close:
        return plain.get(close[0]) or aliases[close[0]]
    inside = [k for k in plain if len(k) > 2 and (k in name or name in k)]
    if len(inside) == 1:
        return plain[inside[0]]
    close = difflib.get_close_matches(name, list(plain) + list(aliases), n=1, cutoff=0.6)
    if close:
        return plain.get(close[0]) or aliases[close[0]]
    return None


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for unknown flags and commands (Ultralytics does the same), looked for
    among the flags of the command given (and the global ones) only."""

    def parse_args(self, args=None, namespace=None):  # noqa: D401 - argparse API
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = _SUBPARSERS.get(getattr(ns, "command", None) or "")
            if sub is None:  # no command: the hint may be any command's flag
                _add_all_arguments()
            known = [s for p in ([self, sub] if sub else [self, *_SUBPARSERS.values()])
                     for a in p._actions for s in a.option_strings]
            hints = []
            for flag in extras:
                if flag.startswith("-") and flag != "-":
                    close = _suggest(flag, known)
                    if close:
                        hints.append(f"did you mean '{close}' for '{flag}'?")
            message = f"unrecognized arguments: {' '.join(extras)}" + ("; " + "; ".join(hints) if hints else "")
            (sub or self).error(message, hinted=True)
        return ns

    def error(self, message: str, hinted: bool = False):  # noqa: D401 - argparse API
        from ._common import one_line

        if "unrecognized arguments:" in message and not hinted:  # a subparser's own (parse_args catches most)
            bad = message.split("unrecognized arguments:", 1)[1].split()
            known = [s for a in self._actions for s in a.option_strings]
            hints = [f"did you mean '{c}' for '{f}'?" for f in bad if f.startswith("-")
                     for c in [_suggest(f, known)] if c]
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
        # "argument --lr: must be positive, got -1.0" reads as the commands' own errors do: "--lr must be …"
        message = re.sub(r"^argument (-[^\s:/]+): (must )", r"\1 \2", message)
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


_SUBPARSERS: dict[str, argparse.ArgumentParser] = {}  # every command's parser, for the "did you mean"
_PENDING: dict[str, tuple] = {}  # commands whose flags are not added yet: name -> (module, parser)


def _commands() -> list:
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return mods


def _add_arguments(mod, p: argparse.ArgumentParser) -> None:
    mod.add_arguments(p)
    # also after the command name; SUPPRESS: absent there, so it does not undo a --debug given before it
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    _SUBPARSERS[mod.NAME] = p


def _add_all_arguments() -> None:
    for name, (mod, p) in list(_PENDING.items()):
        del _PENDING[name]
        _add_arguments(mod, p)


def _command_in(argv: list[str]) -> str | None:
    """The command named in `argv`: its first word that is not a flag (the global flags take no value)."""
    for a in argv:
        if a == "--":
            return None
        if not a.startswith("-"):
            return a
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given the `argv` to parse, only the command it names gets its flags (the
    others their name and help): a command's flags can cost imports (train's come from TrainConfig), which
    `cnnkit --help` and the other commands need not pay."""
    parser = _Parser(prog="cnnkit", description="Convolutional neural networks: train, evaluate, explain.")
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="an unexpected error prints its full traceback (default: one line, the traceback "
                             "in a log file)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    wanted = _command_in(argv) if argv is not None else None
    _SUBPARSERS.clear()
    _PENDING.clear()
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        p.set_defaults(_run=mod.run)
        if argv is None or mod.NAME == wanted:
            _add_arguments(mod, p)
        else:
            _PENDING[mod.NAME] = (mod, p)
    return parser


def _wants_debug(argv: list[str]) -> bool:
    import os

    head = argv[:argv.index("--")] if "--" in argv else argv
    return "--debug" in head or os.environ.get("CNNKIT_DEBUG", "").strip().lower() in ("1", "yes", "true", "on")


def _say(line: str) -> None:
    """One line on stderr, whatever state stderr is in."""
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001 - a closed or broken stderr: nothing more can be said
        pass


def _chain(e: BaseException):
    """`e` and the exceptions it was raised from or during, outermost first (a cycle cannot loop)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _free_bytes(args) -> int | None:
    """Free space on the disk of the command's output, if it names one."""
    import os
    import shutil

    for k in ("out", "save_csv", "resume", "run_dir"):
        p = getattr(args, k, None)
        while p and not os.path.exists(p) and os.path.dirname(p) != p:
            p = os.path.dirname(p)
        if p:
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def _no_space(e: BaseException, args=None) -> OSError | None:
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return x
        # PyTorch and safetensors report a full disk in their own words, without an errno: safetensors says so,
        # torch.save's zip writer says only "unexpected pos" (so the disk is asked)
        text = str(x)
        if not isinstance(x, OSError) and ("No space left on device" in text or "os error 28" in text or (
                "inline_container" in text and ("file write failed" in text or "unexpected pos" in text)
                and (_free_bytes(args) or 0) < 2**20)):
            return OSError(errno.ENOSPC, "No space left on device")
    return None


def _out_of_memory(e: BaseException) -> str | None:
    """'memory' or 'GPU memory' when `e` (or what it was raised from) says the process ran out of it."""
    for x in _chain(e):
        if isinstance(x, MemoryError):
            return "memory"
        if type(x).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError (and torch.OutOfMemoryError)
            return "GPU memory"
        if isinstance(x, RuntimeError):
            text = str(x)
            if "can't allocate memory" in text or "not enough memory" in text:
                return "memory"
            if "out of memory" in text.lower():
                return "GPU memory" if ("CUDA" in text or "MPS" in text) else "memory"
    return None


def _where(args, err: OSError) -> str:
    """The path on the full device: the error's own, else the command's output."""
    for name in (err.filename, err.filename2, *(getattr(args, k, None) for k in ("out", "save_csv", "run_dir",
                                                                                  "resume"))):
        if name:
            return str(name)
    return "the output"


def write_log(command: str, exc: BaseException, argv: list[str]) -> tuple[str | None, str | None]:
    """Write `exc`'s traceback to a new log file (mode 0600) in $CNNKIT_LOG_DIR or ~/.cache/cnnkit/logs, else a
    temporary file. Returns (path, None), or (None, why it could not be written). Never raises."""
    import os
    import platform
    import tempfile
    import time
    import traceback

    try:
        from .._version import __version__

        shown = list(argv)
        for i, a in enumerate(shown):  # a secret typed on the command line stays out of a file sent to others
            if i and shown[i - 1] in ("--token",):
                shown[i] = "<redacted>"
            elif a.startswith("--token="):
                shown[i] = "--token=<redacted>"
        torch = sys.modules.get("torch")
        text = "".join([
            f"cnnkit {__version__} {command}: internal error at {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n",
            f"command line: cnnkit {' '.join(shown)}\n",
            f"python {platform.python_version()} on {platform.platform()}"
            + (f"; torch {getattr(torch, '__version__', '?')}" if torch else "") + "\n",
            f"working directory: {os.getcwd()}\n\n",
            *traceback.format_exception(type(exc), exc, exc.__traceback__),
        ])
    except Exception as e:  # noqa: BLE001 - formatting must not be what fails the report
        text = f"cnnkit {command}: internal error {type(exc).__name__}; formatting it failed: {e!r}\n"
    data = text.encode("utf-8", "backslashreplace")
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{''.join(c if c.isalnum() else '_' for c in command)}.log"
    why = None
    base = os.environ.get("CNNKIT_LOG_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cnnkit", "logs")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        for n in range(1, 100):  # two errors in one second of one process: -2, -3 …
            path = os.path.join(base, name if n == 1 else f"{name[:-4]}-{n}.log")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "too many logs in one second", path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path, None
    except Exception as e:  # noqa: BLE001 - a full or read-only disk, a bad $CNNKIT_LOG_DIR: try elsewhere
        why = f"{base}: {getattr(e, 'strerror', None) or e}"
    try:
        fd, path = tempfile.mkstemp(prefix=f"cnnkit-{name[:-4]}-", suffix=".log")  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path, None
    except Exception as e:  # noqa: BLE001
        return None, f"{why}; {tempfile.gettempdir()}: {getattr(e, 'strerror', None) or e}"


def _internal(command: str, exc: BaseException, argv: list[str], args) -> int:
    """The line for whatever a command did not expect, the traceback kept in a log file."""
    from ._common import one_line

    try:
        who = f"cnnkit {command}" if command != "cnnkit" else "cnnkit"
        full = _no_space(exc, args)
        if full is not None:  # not a bug: the user's to fix, as a bad path is (and no log on a full disk)
            _say(f"{who}: no space left on the device holding {one_line(_where(args, full))}; what was saved "
                 "before is intact; free space and rerun")
            return 2
        log, why = write_log(command, exc, argv)
        where = (f"the full traceback is in {one_line(log)}" if log else
                 f"the traceback could not be written ({one_line(why)}); rerun with --debug to see it")
        memory = _out_of_memory(exc)
        if memory is not None:
            _say(f"{who}: out of {memory} while running {command}; use a smaller --img-size or --batch-size "
                 f"({where})")
            return 1
        detail = one_line(str(exc))
        detail = detail[:300] + ("…" if len(detail) > 300 else "")
        _say(f"{who}: internal error ({type(exc).__name__}{': ' + detail if detail else ''}); {where}; please "
             "report it with that file" + ("" if not log else " (or rerun with --debug to see it here)"))
    except Exception:  # noqa: BLE001 - the handler itself must never be what the user sees crash
        _say(f"cnnkit: internal error ({type(exc).__name__}); rerun with --debug to see the traceback")
    return 1


def main(argv: list[str] | None = None) -> int:
    from ._common import one_line

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _wants_debug(argv)
    command, args = "cnnkit", None
    try:
        parser = build_parser(argv)
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # a bad flag: its line is printed; the status is returned, as for other errors
            if e.code in (0, None):  # --help, --version
                raise
            return e.code if isinstance(e.code, int) else 2
        command = getattr(args, "command", None) or "cnnkit"
        debug = debug or bool(getattr(args, "debug", False))
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except SystemExit:
        raise
    except CnnkitError as e:
        _say(f"cnnkit: error: {one_line(e)}")
        return 2
    except KeyboardInterrupt:
        _say("cnnkit: interrupted")
        return 130
    except BrokenPipeError:  # `cnnkit ... | head`: the reader left; not an error of ours
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except OSError as e:
        if debug:
            raise
        if _no_space(e, args) is not None:
            _say(f"cnnkit {command}: no space left on the device holding {one_line(_where(args, e))}; what was "
                 "saved before is intact; free space and rerun")
            return 2
        if isinstance(e, FileNotFoundError):
            _say(f"cnnkit: error: no such file: {one_line(e.filename or e)}")
            return 2
        if e.filename is not None:  # permission, a folder for a file, a read-only disk, a name too long …
            _say(f"cnnkit: error: {one_line(e.strerror or e)}: {one_line(e.filename)}; check the path")
            return 2
        return _internal(command, e, argv, args)
    except Exception as e:  # noqa: BLE001 - the boundary: anything else is a bug of ours, reported as one
        if debug:
            raise
        return _internal(command, e, argv, args)


if __name__ == "__main__":
    sys.exit(main())
