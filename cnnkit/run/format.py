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

A run directory is data from elsewhere: every file is validated before anything is built or allocated from it
(`schema`: model.json's schema and train_state.pt's structure; `load_weights`: the tensors' names and shapes
from the safetensors header against the model, then their finiteness), and the data it names is read only when
this user's own training recorded it or the user names it again with --data (`trust`). Every write goes through
`cnnkit._io`: a failed one (a full disk) leaves what was saved before as it was.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import platform
import sys
import warnings
from datetime import datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._io import atomic_write, atomic_write_all, remove_stale_temps
from .._version import __version__
from ..errors import CnnkitError, refused_pickle
from .schema import (FORMAT, MAX_CLASSES, MAX_JSON_DEPTH, MAX_META_BYTES, MAX_SIDE, MAX_SPLIT_BYTES,  # noqa: F401
                     READABLE_FORMATS, _first_line, check_meta, read_json, shown, state_problem)
from .trust import check_saved_spec, sign_spec  # noqa: F401  (the run's format: what it may name to read)
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
        remove_stale_temps(path)  # what killed writes left (up to a whole train_state.pt each): no one finishes them
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
def _weights_writer(model: torch.nn.Module):
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT})


def check_before_training(meta: dict, run_dir: Path) -> None:
    """The model.json a run will write, checked before its first step: a setting its reader would refuse fails
    now, not after the training it would have cost (and with it the model)."""
    try:
        _meta_writer(meta, Path(run_dir) / META)
    except CnnkitError as e:
        why = str(e).split(": field ", 1)[-1].replace("; the file is damaged or not from cnnkit", "")
        raise CnnkitError(f"these settings could not be saved with the model (field {why}); nothing was trained: "
                          "check --model-kwargs and the other flags") from None


def _meta_writer(meta: dict, path: Path):
    meta = {"format": FORMAT, **meta, "versions": versions(), "command": sys.argv}
    text = json.dumps(meta, indent=2, default=str) + "\n"
    check_meta(json.loads(text), path)  # never write what could not be read back (as it will be read: JSON)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return write


def save_weights(model: torch.nn.Module, path: Path) -> None:
    atomic_write(path, _weights_writer(model))


def save_best(model: torch.nn.Module, meta: dict, run_dir: Path) -> None:
    """model.safetensors and model.json together: both are written in full before either replaces the old one,
    so a failure (a full disk) leaves the previous pair, never new weights described by an old model.json."""
    atomic_write_all([(run_dir / WEIGHTS, _weights_writer(model)), (run_dir / META, _meta_writer(meta, run_dir / META))])


def save_meta(meta: dict, path: Path) -> None:
    atomic_write(path, _meta_writer(meta, path))


def save_split(manifest: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, separators=(",", ":")) + "\n",
                                                        encoding="utf-8"))


def save_state(state: dict, path: Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: a full disk's OSError stays in the chain torch.save raises
            torch.save(state, f)
    atomic_write(path, write)


# --- reading ----------------------------------------------------------------------------------------------


def damaged_state(path: Path, problem: str) -> CnnkitError:
    """'train_state.pt is damaged (…)', with what to do: the run's best model is a separate file."""
    run = Path(path).parent
    weights = run / WEIGHTS
    if not weights.is_file():
        return CnnkitError(f"{path} is damaged ({problem}), so the run cannot be resumed; train a new run")
    try:
        name = read_meta(run)["model"]["name"]
    except CnnkitError:
        name = "NAME"
    return CnnkitError(f"{path} is damaged ({problem}), so the run cannot be resumed. Its best model is kept apart "
                       f"in {WEIGHTS}: start a new run from it with cnnkit train --data SPEC --model {name} "
                       f"--weights {weights}")


def load_state(path: Path) -> dict:
    """Load train_state.pt and check its structure (`check_state`). Only tensors and plain Python values are
    accepted (weights_only=True)."""
    if not path.is_file():
        raise CnnkitError(f"{path} not found: nothing to resume (the run stopped before its first epoch ended?)")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4…": PyTorch's word, printed before ours
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        with open(path, "rb") as f:
            pickled = f.read(2) in (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
        if not pickled:  # bytes that are no pickle at all
            raise damaged_state(path, "not a file torch.save wrote") from None
        why = shown(refused_pickle(e), 160)
        raise CnnkitError(f"refusing to load {path}: it holds more than tensors and plain values, so it could run "
                          f"code ({why}). Only resume from run directories you made.") from None
    except Exception as e:  # noqa: BLE001 - any failure to read it (EOF, a bad zip, a bad record) is damage
        raise damaged_state(path, f"not a readable training state: {_first_line(e)}") from None
    problem = state_problem(state)
    if problem:
        raise damaged_state(path, problem)
    return state


def read_meta(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / META
    if not run_dir.is_dir():
        raise CnnkitError(f"{run_dir} is not a run directory (no such folder); give the folder `cnnkit train` wrote")
    if not path.is_file():
        raise CnnkitError(f"{run_dir} has no {META}: not a cnnkit run directory, or its first epoch never finished")
    meta = read_json(path, MAX_META_BYTES, "a model.json")
    check_meta(meta, path)
    if meta["format"] == "cnnkit-run/1":  # format 1 kept the preprocessing under 'input'
        meta["preprocess"] = {**meta.pop("input"), "resize": "fit"}
    return meta


def read_split(run_dir: str | Path) -> dict | None:
    """The run's split.json, or None for a run made before splits were saved."""
    path = Path(run_dir) / SPLIT
    if not path.is_file():
        return None
    manifest = read_json(path, MAX_SPLIT_BYTES, "a split.json")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise CnnkitError(f"{path}: field 'splits' must be an object; the file is damaged")
    for name, parts in manifest["splits"].items():
        if not isinstance(parts, dict) or not all(isinstance(v, list) for v in parts.values()):
            raise CnnkitError(f"{path}: field 'splits.{shown(name, 40)}' must map source splits to lists; the file "
                              "is damaged")
    if not isinstance(manifest.get("files", {}), dict):
        raise CnnkitError(f"{path}: field 'files' must be an object; the file is damaged")
    return manifest


def build_model(meta: dict, device: str | torch.device | None = None) -> torch.nn.Module:
    """The model model.json describes (checked by `check_meta`), with fresh weights; `device='meta'`: shapes only."""
    from ..models import create_model

    spec = meta["model"]
    try:
        if device is not None:
            with torch.device(device):
                return create_model(spec["name"], **dict(spec.get("kwargs", {})))
        return create_model(spec["name"], **dict(spec.get("kwargs", {})))
    except CnnkitError as e:
        raise CnnkitError(f"model.json's model {spec['name']!r} cannot be built ({e})") from None
    except (TypeError, ValueError, KeyError, RuntimeError, IndexError, ZeroDivisionError) as e:
        raise CnnkitError(f"model.json's model {spec['name']!r} cannot be built ({_first_line(e)})") from None


def load_run_model(run_dir: str | Path) -> tuple[dict, torch.nn.Module]:
    """(model.json, the model with its weights): the architecture built on the meta device first (no memory), its
    tensor shapes checked against the safetensors header, and only then built for real and loaded. A model.json
    describing a larger network than the file holds never allocates it."""
    meta = read_meta(run_dir)
    path = Path(run_dir) / WEIGHTS
    check_weights_header(build_model(meta, device="meta"), path)
    model = build_model(meta)
    load_weights(model, path)
    return meta, model


def _weights_error(path: Path, e: BaseException) -> CnnkitError:
    return CnnkitError(f"{path} is not a readable safetensors file ({_first_line(e)}); the file is damaged")


def check_weights_header(model: torch.nn.Module, path: Path) -> None:
    """The names, shapes and kinds of the tensors in `path` (its header only: nothing allocated) against `model`'s."""
    from safetensors import safe_open

    if not path.is_file():
        raise CnnkitError(f"{path} not found: the run has no saved weights yet")
    want = {k: v for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            have = {k: (list(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors' own error types for a damaged header
        raise _weights_error(path, e) from None
    missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or unexpected:
        raise CnnkitError(f"{path} does not match the architecture in model.json (missing {missing[:3]}, "
                          f"unexpected {[shown(k, 60) for k in unexpected[:3]]}); the two files are not from one run")
    for k, t in want.items():
        shape, dtype = have[k]
        if shape != list(t.shape):
            raise CnnkitError(f"{path} does not match the architecture in model.json (size mismatch for {k}: {shape} in "
                              f"the file, the model needs {list(t.shape)}); the two files are not from one run (or one "
                              "was edited)")
        if (dtype.startswith(("F", "BF"))) != t.is_floating_point():
            raise CnnkitError(f"{path}: tensor '{k}' is {dtype}, the model needs {t.dtype}; the file is damaged")


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load `path` into `model`: names and shapes checked from the header first, then every value finite."""
    check_weights_header(model, path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _weights_error(path, e) from None
    for k, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CnnkitError(f"{path} holds NaN/inf values in {k}; the file is damaged or training diverged: "
                              "retrain (with a lower --lr), or use another run")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CnnkitError(f"{path} does not match the architecture in model.json ({_first_line(e, 300)})") from None
