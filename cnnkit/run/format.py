"""The run directory's format: what a training run writes, written atomically, read back and checked.

- `model.json`: the model (architecture and every builder argument), the classes, the preprocessing
  (`cnnkit.preprocess.Preprocess`), the data and its split sizes, the training options, the metrics of the best
  epoch, versions and the command line. Format `cnnkit-run/2`; `check_meta` names a missing or malformed field
  before anything uses it. Runs of format 1 (an `input` object instead of `preprocess`) are read too;
- `model.safetensors`: the best weights (tensors only: nothing in it can run code when loaded);
- `split.json`: exactly which images were in train / val / test, and the source's fingerprint
  (`cnnkit.data.dataset.ImageData.manifest`), so evaluate, report, explain and resume use the same images;
- `train_state.pt`: the latest weights, optimizer, scheduler, epoch, history and RNG states for an exact
  resume; loaded with `torch.load(weights_only=True)`, which refuses pickled code.

A run directory is claimed atomically (`claim_run_dir`) before anything is written in it, so two trainings
started at once never share one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import platform
import sys
from datetime import datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._io import atomic_write, atomic_write_json
from .._version import __version__
from ..errors import CnnkitError
from ..preprocess import Preprocess

FORMAT = "cnnkit-run/2"
READABLE_FORMATS = ("cnnkit-run/1", FORMAT)
WEIGHTS, META, STATE, SPLIT = "model.safetensors", "model.json", "train_state.pt", "split.json"
CLAIM = ".cnnkit-run"  # created exclusively when a run directory is claimed
RUN_FILES = (WEIGHTS, META, STATE, SPLIT, "report.html", "metrics.csv")


def versions() -> dict:
    import numpy

    out = {"cnnkit": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
           "python": platform.python_version()}
    try:  # from the installed metadata: importing torchvision just to name its version takes 1.4 s
        from importlib.metadata import version

        out["torchvision"] = version("torchvision")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        pass
    return out


# --- claiming ---------------------------------------------------------------------------------------------
def check_unused(path: str | Path) -> None:
    """A folder that holds a run (its weights or state) is never trained into again."""
    path = Path(path)
    if (path / META).exists() or (path / STATE).exists():
        raise CnnkitError(f"{path} already holds a run; pick another --out, or --resume {path} to continue it")


def claim_run_dir(path: str | Path | None, default_name: str) -> Path:
    """Create and claim a run directory: `path`, or runs/<default_name>-<time>[-N]. A folder that already
    holds a run, or that another training claimed a moment ago, is refused (`path`) or skipped (default)."""
    if path is not None:
        path = Path(path)
        check_unused(path)
        if path.exists() and not path.is_dir():
            raise CnnkitError(f"--out {path} is a file, not a folder; pick another --out")
        path.mkdir(parents=True, exist_ok=True)
        if not _claim(path):
            raise CnnkitError(f"{path} is already used by another training run; pick another --out")
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in default_name)
    base = Path("runs") / f"{safe}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        candidate = base if i == 1 else Path(f"{base}-{i}")
        try:
            candidate.mkdir()  # atomic: exactly one process creates it
        except FileExistsError:
            continue
        if _claim(candidate):
            return candidate
    raise CnnkitError(f"could not create a run directory next to {base}; pass --out")


@contextlib.contextmanager
def training_lock(path: Path):
    """Held while a run directory is being trained (a new run or a resume): a second training of the same
    directory is refused instead of both writing its files. An exclusive lock on the claim file, released by
    the OS if the process dies."""
    fd = os.open(Path(path) / CLAIM, os.O_CREAT | os.O_WRONLY, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CnnkitError(f"{path} is being trained by another process right now; wait for it, or use "
                              "another run directory") from None
        yield
    finally:
        os.close(fd)


def release_unsaved(path: Path) -> None:
    """After a failure before anything was saved: un-claim the directory, so the same --out can be used again."""
    if not (Path(path) / META).exists() and not (Path(path) / STATE).exists():
        (Path(path) / CLAIM).unlink(missing_ok=True)


def _claim(path: Path) -> bool:
    try:
        fd = os.open(path / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"pid {os.getpid()} {datetime.now().isoformat(timespec='seconds')}\n")
    return True


# --- writing ----------------------------------------------------------------------------------------------
def save_weights(model: torch.nn.Module, path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))


def save_meta(meta: dict, path: Path) -> None:
    meta = {"format": FORMAT, **meta, "versions": versions(), "command": sys.argv}
    check_meta(meta, path)  # never write what could not be read back
    atomic_write_json(path, meta)


def save_split(manifest: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, separators=(",", ":")) + "\n",
                                                        encoding="utf-8"))


def save_state(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


# --- reading ----------------------------------------------------------------------------------------------
def load_state(path: Path) -> dict:
    """Load train_state.pt. Only tensors and plain Python values are accepted (weights_only=True)."""
    if not path.is_file():
        raise CnnkitError(f"{path} not found: nothing to resume (the run stopped before its first epoch ended?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise CnnkitError(f"refusing to load {path}: it holds more than tensors and plain values, so it could run "
                          f"code ({first[:160]}). Only resume from run directories you made.") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError) as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CnnkitError(f"{path} is not a readable training state ({msg})") from None
    if not isinstance(state, dict):
        raise CnnkitError(f"{path} is not a readable training state (not a dictionary)")
    for key in ("config", "epoch", "history", "model", "optimizer", "rng"):
        if key not in state:
            raise CnnkitError(f"{path} is not a complete training state: it lacks '{key}'")
    return state


def read_meta(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / META
    if not run_dir.is_dir():
        raise CnnkitError(f"{run_dir} is not a run directory (no such folder); give the folder `cnnkit train` wrote")
    if not path.is_file():
        raise CnnkitError(f"{run_dir} has no {META}: not a cnnkit run directory, or its first epoch never finished")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CnnkitError(f"{path} is not valid JSON ({e})") from None
    check_meta(meta, path)
    if meta["format"] == "cnnkit-run/1":  # format 1 kept the preprocessing under 'input'
        meta["preprocess"] = {**meta.pop("input"), "resize": "fit"}
    return meta


def check_meta(meta, path) -> None:
    """Every field a reader relies on, present and of the right type; the first problem is named."""
    def bad(field: str, expected: str):
        raise CnnkitError(f"{path}: field '{field}' {expected}; the file is damaged or not from cnnkit")

    if not isinstance(meta, dict):
        bad("(top level)", "must be a JSON object")
    if meta.get("format") not in READABLE_FORMATS:
        bad("format", f"is {meta.get('format')!r}, expected one of {', '.join(READABLE_FORMATS)}")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        bad("model.name", "must be a model name")
    if not isinstance(model.get("kwargs", {}), dict):
        bad("model.kwargs", "must be an object of builder arguments")
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        bad("classes", "must be a list of at least 2 class names")
    if len(set(classes)) != len(classes):
        bad("classes", "has a name twice")
    key = "input" if meta["format"] == "cnnkit-run/1" else "preprocess"
    if key not in meta:
        bad(key, "is missing")
    Preprocess.from_dict(meta[key], where=f"{path}: field '{key}'")
    for name, kind in (("data", dict), ("train", dict), ("metrics", dict), ("pretrained", dict)):
        if name in meta and not isinstance(meta[name], kind):
            bad(name, "must be an object")


def read_split(run_dir: str | Path) -> dict | None:
    """The run's split.json, or None for a run made before splits were saved."""
    path = Path(run_dir) / SPLIT
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise CnnkitError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise CnnkitError(f"{path}: field 'splits' must be an object; the file is damaged")
    for name, parts in manifest["splits"].items():
        if not isinstance(parts, dict) or not all(isinstance(v, list) for v in parts.values()):
            raise CnnkitError(f"{path}: field 'splits.{name}' must map source splits to lists; the file is damaged")
    if not isinstance(manifest.get("files", {}), dict):
        raise CnnkitError(f"{path}: field 'files' must be an object; the file is damaged")
    return manifest


def build_model(meta: dict) -> torch.nn.Module:
    from ..models import create_model

    spec = meta["model"]
    try:
        return create_model(spec["name"], **dict(spec.get("kwargs", {})))
    except (TypeError, ValueError, KeyError) as e:
        raise CnnkitError(f"model.json's model {spec['name']!r} cannot be built ({e})") from None


def load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise CnnkitError(f"{path} not found: the run has no saved weights yet")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CnnkitError(f"{path} is not a readable safetensors file ({e})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape: the weights were saved from another architecture
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:300])
        raise CnnkitError(f"{path} does not match the architecture in model.json ({first})") from None
    if missing or unexpected:
        raise CnnkitError(f"{path} does not match the architecture in model.json "
                          f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
