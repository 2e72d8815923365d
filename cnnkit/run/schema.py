"""The checks of a run directory's files, which another program could have written: model.json against its
schema (`check_meta`: every field's type, range and consistency), train_state.pt's structure (`state_problem`:
keys, types, finiteness, RNG states, the schedule's position), JSON bounded in size and nesting before it is
parsed (`read_json`), and text from those files made safe to print on one line (`shown`). Nothing is built or
allocated from a file before its check passes; each problem names the field and what was expected.
"""
from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import torch

from ..errors import CnnkitError
from ..preprocess import MAX_SIDE, Preprocess  # noqa: F401  (MAX_SIDE: pixels per side a run may ask for)

FORMAT = "cnnkit-run/2"
READABLE_FORMATS = ("cnnkit-run/1", FORMAT)
# Bounds on what a run directory may ask for, checked before anything is allocated from it.
MAX_CLASSES = 100_000
MAX_CLASS_NAME = 1000  # characters
MAX_META_BYTES = 16 << 20  # model.json: ImageNet's 1,000 class names and every option take under 100 KB
MAX_SPLIT_BYTES = 1 << 30  # split.json lists every file key: 1 GB is ten million paths of 100 characters
MAX_JSON_DEPTH = 64  # model.json nests 4 deep; json.loads recurses once per level


def shown(text, limit: int = 200) -> str:
    """Text from a file, safe to print in one line: every character that could break, forge or hide in a line
    (`_control`'s) as '?', cut at `limit`."""
    text = "".join("?" if _control(ch) else ch for ch in str(text)[:limit + 1])
    return text if len(text) <= limit else text[:limit] + "…"


def _control(name: str) -> str | None:
    """The first character that would break, forge or hide in a line of output (a control or format character,
    a line or paragraph separator, a lone surrogate), as cnnkit.data's class-name check refuses them."""
    import unicodedata

    return next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")), None)


def check_meta(meta, path) -> None:
    """Every field a reader relies on, present, of the right type, in range and consistent with the others
    (one mean and std per channel, the model's outputs one per class, its input the preprocessing's); the
    first problem is named. Nothing is built or allocated from model.json before this passes."""
    def bad(field: str, expected: str):
        raise CnnkitError(f"{path}: field '{field}' {expected}; the file is damaged or not from cnnkit")

    if not isinstance(meta, dict):
        bad("(top level)", "must be a JSON object")
    if meta.get("format") not in READABLE_FORMATS:
        bad("format", f"is {shown(repr(meta.get('format')), 40)}, expected one of {', '.join(READABLE_FORMATS)}")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        bad("model.name", "must be a model name, in an object {\"name\": …, \"kwargs\": {…}} under 'model'")
    from ..models import list_models

    if model["name"] not in list_models():
        bad("model.name", f"is {shown(model['name'], 40)!r}, not a registered model ({', '.join(list_models())})")
    if not isinstance(model.get("kwargs", {}), dict):
        bad("model.kwargs", "must be an object of builder arguments")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES or \
            not all(isinstance(c, str) for c in classes):
        bad("classes", f"must be a list of at least 2 class names (strings; at most {MAX_CLASSES:,})")
    for c in classes:
        if not c or len(c) > MAX_CLASS_NAME:
            bad("classes", f"holds the name {shown(repr(c), 40)}: each must be 1 to {MAX_CLASS_NAME} characters")
        ch = _control(c)
        if ch is not None:
            bad("classes", f"holds the name {shown(repr(c), 40)} with a control character ({ch!r}): it would forge "
                           "output lines")
    if len(set(classes)) != len(classes):
        bad("classes", "has a name twice")
    key = "input" if meta["format"] == "cnnkit-run/1" else "preprocess"
    if key not in meta:
        bad(key, "is missing")
    prep = meta[key]
    _check_preprocess(prep, key, bad)
    Preprocess.from_dict(prep, where=f"{path}: field '{key}'")
    _check_kwargs(model["name"], model.get("kwargs", {}), classes, prep, bad)
    for name, kind in (("data", dict), ("train", dict), ("metrics", dict), ("pretrained", dict)):
        if name in meta and not isinstance(meta[name], kind):
            bad(name, "must be an object")
    data = meta.get("data", {})
    if "spec" in data and not isinstance(data["spec"], str):
        bad("data.spec", "must be a data spec")
    if "train" in meta:
        from ..engine.config import check_types

        try:
            check_types(meta["train"], "train")
        except CnnkitError as e:
            raise CnnkitError(f"{path}: field {e}; the file is damaged or not from cnnkit") from None
        if meta["train"].get("max_pixels") is not None and meta["train"]["max_pixels"] < 1:
            bad("train.max_pixels", "must be a positive number of pixels")
    calibration = meta.get("calibration", {})
    if not isinstance(calibration, dict):
        bad("calibration", "must be an object")
    t = calibration.get("temperature", 1.0)
    if not _finite(t) or not 1e-3 <= t <= 1e3:
        bad("calibration.temperature", f"must be a number from 0.001 to 1000 (logits are divided by it), got "
                                       f"{shown(repr(t), 40)}")
    decision = meta.get("decision")
    if decision is not None:
        if not isinstance(decision, dict):
            bad("decision", "must be an object")
        if "threshold" in decision and (not _finite(decision["threshold"]) or not 0 <= decision["threshold"] <= 1):
            bad("decision.threshold", f"must be a probability from 0 to 1, got {shown(repr(decision['threshold']), 40)}")
        if decision.get("positive") is not None and decision["positive"] not in classes:
            bad("decision.positive", "must be one of the classes")
        if not isinstance(decision.get("rule", ""), (str, type(None))):
            bad("decision.rule", "must be a rule's name")


def _check_preprocess(prep, key: str, bad) -> None:
    if not isinstance(prep, dict):
        bad(key, "must be an object (channels, size, mean, std)")
    for name in ("channels", "size", "mean", "std"):
        if name not in prep:
            bad(f"{key}.{name}", f"is missing: the preprocessing lacks '{name}'")
    c = prep["channels"]
    if not _int(c, 0, 10 ** 6):
        bad(f"{key}.channels", f"must be the number of channels, 1 or 3, got {shown(repr(c), 40)}")
    if c not in (1, 3):
        bad(f"{key}.channels", f"is {c}: channels must be 1 or 3")
    size = prep["size"]
    if not isinstance(size, list) or len(size) != 2 or not all(_int(v, -10 ** 18, 10 ** 18) for v in size):
        bad(f"{key}.size", f"must be [height, width] in pixels, got {shown(repr(size), 40)}")
    if not all(1 <= v <= MAX_SIDE for v in size):
        bad(f"{key}.size", f"is {size}: each side must be from 1 to at most {MAX_SIDE} pixels (a 3x{MAX_SIDE}x"
                           f"{MAX_SIDE} float image is already 201 MB; no model here was designed for more)")
    # pixels are in 0..1 when normalised: a mean beyond ±1000 or a std outside 1e-4..1000 is no statistic of
    # images, and (x - mean) / std would overflow float32 (found by the fuzzing suite: mean 1e308 gave NaN)
    for name, positive in (("mean", False), ("std", True)):
        v = prep[name]
        if not isinstance(v, list) or len(v) != c or not all(_finite(x) for x in v) or \
                not all((1e-4 <= x <= 1e3) if positive else (-1e3 <= x <= 1e3) for x in v):
            bad(f"{key}.{name}", f"must be a list of {c} numbers (one per channel), "
                                 + ("each from 0.0001 to 1000 (pixels, 0 to 1, are divided by it)" if positive
                                    else "each from -1000 to 1000 (pixels are 0 to 1)")
                                 + f", got {shown(repr(v), 40)}")
    if "crop" in prep and (not _finite(prep["crop"]) or not 0.1 <= prep["crop"] <= 1):
        bad(f"{key}.crop", f"must be a number from 0.1 to 1, got {shown(repr(prep['crop']), 40)}")
    if "resize" in prep and not isinstance(prep["resize"], str):
        bad(f"{key}.resize", "must be a resize policy's name")
    w = prep.get("window")
    if w is not None and not (isinstance(w, list) and len(w) == 2 and all(_finite(x) for x in w)):
        bad(f"{key}.window", f"must be [center, width] or null, got {shown(repr(w), 40)}")
    if prep.get("bits") is not None and not _int(prep["bits"], 1, 32):
        bad(f"{key}.bits", f"must be a bit depth or null, got {shown(repr(prep['bits']), 40)}")


_KWARG_RANGES = {"dropout": (0.0, 1.0), "stem_stride": (1, 8)}


def _check_kwargs(name: str, kwargs: dict, classes: list, prep: dict, bad) -> None:
    """model.kwargs: only the builder's own arguments (inspect.signature), plain values, in range, and consistent
    with the classes and the preprocessing."""
    from ..models import get_builder

    accepted = set(inspect.signature(get_builder(name)).parameters)
    for k, v in kwargs.items():
        field = f"model.kwargs.{shown(k, 40)}"
        if k not in accepted:
            bad(field, f"is not an argument of {name} (it takes {', '.join(sorted(accepted))})")
        plain = v is None or isinstance(v, (bool, str)) or _finite(v) or \
            (isinstance(v, list) and len(v) <= 8 and all(_finite(x) for x in v))
        if not plain or (isinstance(v, str) and len(v) > 100):
            bad(field, f"must be a plain value (a number, true/false, null, a short list), got {shown(repr(v), 40)}")
        if _number(v) and abs(v) > 1 << 20:
            bad(field, f"is {v}, out of any model's range")
    n = kwargs.get("num_classes", len(classes))
    if not _int(n, 1, MAX_CLASSES):
        bad("model.kwargs.num_classes", f"must be a number of classes, got {shown(repr(n), 40)}")
    if n != len(classes):
        bad("classes", f"names {len(classes)} classes but the model has {n} outputs (model.kwargs.num_classes): "
                       "one name per output")
    c = kwargs.get("in_channels", prep["channels"])
    if c != prep["channels"]:
        bad("preprocess.channels", f"is {prep['channels']} but the model takes {shown(repr(c), 20)} "
                                   "(model.kwargs.in_channels)")
    size = kwargs.get("input_size")
    if size is not None and (not isinstance(size, list) or len(size) != 2 or list(size) != list(prep["size"])):
        bad("model.kwargs.input_size", f"is {shown(repr(size), 40)} but the preprocessing makes {prep['size']} "
                                       "images")
    if kwargs.get("small_input") is not None and not isinstance(kwargs["small_input"], bool):
        bad("model.kwargs.small_input", "must be true, false or null")
    widths = kwargs.get("widths")
    if widths is not None and (not isinstance(widths, list) or not 1 <= len(widths) <= 8
                               or not all(_int(w, 1, 4096) for w in widths)):
        bad("model.kwargs.widths", f"must be a list of 1 to 8 channel counts up to 4096, got {shown(repr(widths), 40)}")
    for k, (low, high) in _KWARG_RANGES.items():
        if k in kwargs and (not _number(kwargs[k]) or not low <= kwargs[k] <= high):
            bad(f"model.kwargs.{k}", f"must be from {low} to {high}, got {shown(repr(kwargs[k]), 40)}")


def read_json(path: Path, max_bytes: int, what: str = "the file"):
    """JSON from a run directory: bounded in size and nesting before json.loads sees it."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CnnkitError(f"{path} is {size / 2**20:.1f} MB, more than {what} ever is ({max_bytes >> 20} MB); "
                              "the file is damaged or not from cnnkit")
        raw = path.read_bytes()
    except OSError as e:
        raise CnnkitError(f"{path} cannot be read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CnnkitError(f"{path} is not UTF-8 text (byte {e.start}); the file is damaged or not from cnnkit") from None
    depth = _depth(text)
    if depth > MAX_JSON_DEPTH:
        raise CnnkitError(f"{path} is nested {depth} levels deep (cnnkit's files nest a few); the file is damaged "
                          "or not from cnnkit")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CnnkitError(f"{path} is not valid JSON ({shown(e, 120)}); the file is damaged or not from cnnkit") from None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings."""
    import numpy as np

    bare = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    a = np.frombuffer(bare, dtype=np.uint8)
    steps = (np.isin(a, (ord("["), ord("{"))).astype(np.int32) - np.isin(a, (ord("]"), ord("}"))).astype(np.int32))
    return int(steps.cumsum().max()) if len(steps) else 0


def _first_line(e: BaseException, limit: int = 160) -> str:
    """An exception's first non-empty line, without colour codes: for a one-line message."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(e))
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(e).__name__
    # its first sentence: PyTorch follows "Weights only load failed." with paragraphs of advice that, cut
    # mid-sentence, would only mislead about a file that is simply not a checkpoint
    line = line.split(". ", 1)[0].rstrip(".")
    return shown(line, limit)


STATE_KEYS = ("config", "epoch", "history", "model", "optimizer", "rng", "best_val_acc", "best_epoch")
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    return _number(v) and math.isfinite(v)


def _int(v, low: int = 0, high: int = 10 ** 9) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def state_problem(state) -> str | None:
    """What is wrong with the structure of a loaded train_state.pt (types, ranges, finiteness, RNG states), or
    None. What depends on the model (tensor shapes, the optimizer's groups) is checked by the trainer."""
    if not isinstance(state, dict):
        return f"not a dictionary but a {type(state).__name__}; it lacks 'config'"
    for key in STATE_KEYS:
        if key not in state:
            return f"it lacks '{key}'"
    from ..engine.config import TrainConfig, check, check_types
    from ..models import list_models

    try:
        check_types(state["config"], "config")
        cfg = state["config"]
        if cfg.get("model") is not None and cfg["model"] not in list_models():
            return f"'config.model' {shown(cfg['model'], 40)!r} is not a registered model"
        if not isinstance(cfg.get("data"), str):
            return "'config.data' must be a data spec"
        check(TrainConfig.from_dict(cfg))
    except CnnkitError as e:
        text = str(e)
        return text if text.startswith("'config") else f"'config': {text}"
    epoch = state["epoch"]
    if not _int(epoch, 0, 10 ** 6):
        return f"'epoch' must be a count of epochs, got {shown(repr(epoch), 40)}"
    if not _int(state["best_epoch"], 0, epoch):
        return f"'best_epoch' must be an epoch from 0 to {epoch}, got {shown(repr(state['best_epoch']), 40)}"
    if "step" in state and not _int(state["step"], 0, 10 ** 12):
        return f"'step' must be a count of steps, got {shown(repr(state['step']), 40)}"
    if not _number(state["best_val_acc"]) or math.isnan(state["best_val_acc"]):
        return "'best_val_acc' must be a number"
    if "best_val_loss" in state and (not _number(state["best_val_loss"]) or math.isnan(state["best_val_loss"])):
        return "'best_val_loss' must be a number"
    if state.get("phase", "all") not in ("head", "all"):
        return "'phase' must be head or all"
    if state.get("pretrained") is not None and not isinstance(state["pretrained"], dict):
        return "'pretrained' must be an object"
    if "classes" in state and not (isinstance(state["classes"], list) and all(isinstance(c, str) for c in state["classes"])):
        return "'classes' must be a list of names"
    if state.get("data_mac") is not None and not isinstance(state["data_mac"], str):
        return "'data_mac' must be the data spec's signature, a string"
    problem = (_history_problem(state["history"], epoch) or _model_problem(state["model"])
               or _optimizer_problem(state["optimizer"]) or _scheduler_problem(state.get("scheduler"))
               or _rng_problem(state["rng"]))
    return problem


def _history_problem(history, epoch: int) -> str | None:
    if not isinstance(history, list) or len(history) > epoch:
        return f"'history' must be a list of at most {epoch} epochs' rows"
    for i, row in enumerate(history):
        if not isinstance(row, dict) or any(k not in row for k in HISTORY_KEYS):
            return f"'history[{i}]' must be a row with {', '.join(HISTORY_KEYS)}"
        if set(row) != set(history[0]) or not _int(row["epoch"], 1, epoch) or \
                not all(_number(row[k]) for k in HISTORY_KEYS[1:]):
            return f"'history[{i}]' must have the columns of the first row, with numbers"
    return None


def _tensor_problem(where: str, t, finite: bool = True) -> str | None:
    if not torch.is_tensor(t):
        return f"'{where}' must be a tensor, got {type(t).__name__}"
    if finite and t.is_floating_point() and not bool(torch.isfinite(t).all()):
        return f"'{where}' holds NaN/inf values"
    return None


def _model_problem(model) -> str | None:
    if not isinstance(model, dict) or not model:
        return "'model' must map parameter names to tensors"
    for k, v in model.items():
        if not isinstance(k, str):
            return "'model' must map parameter names to tensors"
        problem = _tensor_problem(f"model.{shown(k, 80)}", v)
        if problem:
            return problem
    return None


def _optimizer_problem(opt) -> str | None:
    if not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list) or not opt["param_groups"]:
        return "'optimizer' must hold its parameter groups"
    if not isinstance(opt.get("state"), dict):
        return "'optimizer.state' must be an object"
    for i, g in enumerate(opt["param_groups"]):
        if not isinstance(g, dict) or not isinstance(g.get("params"), list) or \
                not all(_int(p, 0, 10 ** 7) for p in g["params"]):
            return f"'optimizer.param_groups[{i}]' must list its parameters"
        if not _finite(g.get("lr")) or g["lr"] < 0:
            return f"'optimizer.param_groups[{i}]' has the learning rate {shown(repr(g.get('lr')), 40)}"
        for k, v in g.items():
            bad = (_number(v) and not math.isfinite(v)) or \
                  (isinstance(v, (list, tuple)) and any(_number(x) and not math.isfinite(x) for x in v))
            if bad:
                return f"'optimizer.param_groups[{i}].{shown(k, 40)}' is not finite"
    for idx, st in opt["state"].items():
        if not _int(idx, 0, 10 ** 7) or not isinstance(st, dict):
            return "'optimizer.state' must map parameter numbers to their state"
        for k, v in st.items():
            problem = _tensor_problem(f"optimizer.state[{idx}].{shown(k, 40)}", v) if torch.is_tensor(v) else \
                (None if v is None or _finite(v) or isinstance(v, (bool, str)) else
                 f"'optimizer.state[{idx}].{shown(k, 40)}' must be a tensor or a number")
            if problem:
                return problem
    return None


def _scheduler_problem(sched) -> str | None:
    if sched is None:
        return None
    if not isinstance(sched, dict):
        return f"'scheduler' must be an object or None, got {type(sched).__name__}"
    for k, v in sched.items():
        values = v if isinstance(v, (list, tuple)) else [v]
        if any(_number(x) and not math.isfinite(x) for x in values):
            return f"the scheduler's '{shown(k, 40)}' is not finite"
    last = sched.get("last_epoch", 0)
    if not _int(last, -1, 10 ** 12):
        return "the scheduler's 'last_epoch' must be a step count"
    total = sched.get("total_steps")
    if total is not None and not _int(total, 1, 10 ** 15):
        return f"the scheduler's 'total_steps' must be a step count, got {shown(repr(total), 20)}"
    if total is not None and last > total:
        return f"the scheduler has taken {last} steps of its {total} (past its steps)"
    return None


def _rng_problem(rng) -> str | None:
    if not isinstance(rng, dict):
        return "'rng' must be an object"
    ref = torch.get_rng_state()
    gen = torch.Generator().get_state()
    for key, want in (("torch", ref), ("generator", gen)):
        t = rng.get(key)
        if not torch.is_tensor(t) or t.dtype != torch.uint8 or t.shape != want.shape:
            return f"'rng.{key}' must be a uint8 tensor of {want.numel()} bytes (the random generator's state)"
    n = rng.get("numpy")
    if not (isinstance(n, (list, tuple)) and len(n) == 5 and n[0] == "MT19937" and torch.is_tensor(n[1])
            and n[1].dtype == torch.int64 and tuple(n[1].shape) == (624,)
            and bool(((n[1] >= 0) & (n[1] < 2 ** 32)).all()) and _int(n[2], 0, 624) and _int(n[3], 0, 1)
            and _number(n[4])):
        return "'rng.numpy' must be NumPy's MT19937 state (624 words, a position, a cached Gaussian)"
    p = rng.get("python")
    if not (isinstance(p, (list, tuple)) and len(p) == 3 and p[0] == 3 and isinstance(p[1], (list, tuple))
            and len(p[1]) == 625 and all(_int(v, 0, 2 ** 32 - 1) for v in p[1][:624]) and _int(p[1][624], 0, 624)
            and (p[2] is None or _number(p[2]))):
        return "'rng.python' must be Python's random state (version 3, 625 words)"
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or not all(torch.is_tensor(t) and t.dtype == torch.uint8 for t in cuda):
        return "'rng.cuda' must be a list of uint8 tensors"
    return None
