"""Every training default in one place, each with the reason for it (Ultralytics keeps them so too).

`None` means "chosen from the data" by `resolve`: a user who gives only `--data` gets a good model in
reasonable time on a laptop CPU. Each field's reason is also its documentation: `cnnkit train` makes one flag
per field (`--weight-decay`, `--channels-last/--no-channels-last`) with that text as its help, so an option is
declared here and nowhere else.

>>> cfg = TrainConfig(weight_decay=0.01)
>>> cfg.weight_decay, cfg.optimizer, flag("batch_size")
(0.01, 'adamw', '--batch-size')
>>> help_of("momentum")
'SGD only'
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
from dataclasses import dataclass

from .._device import PRECISIONS
from ..data.dataset import DATA_MODES  # the data layer implements the modes; re-exported for the CLI
from ..data.transforms import AUGMENTS
from ..errors import CnnkitError

OPTIMIZERS = ("adamw", "sgd", "adam")
PRESETS: dict[str, dict] = {
    "default": {},
    # The shortest time to a good model on a CPU (bench/train_speed.py times it): a small BatchNorm network
    # (models/fast.py) without dropout at a high learning rate, a short one-cycle schedule, no augmentation and a
    # small validation split. Chosen on validation only (bench/preset_search.py: 10,000 images held out of
    # Fashion-MNIST's training file; t10k read by no variant): 4 epochs at lr 8e-3 without dropout scored 0.9182 /
    # 0.9194 / 0.9192 (seeds 0-2), the earlier preset's 5 epochs at 5e-3 with dropout 0.1 0.9180 / 0.9168, in 4/5 of
    # the time; t10k, read once for the chosen preset (bench/train_speed.py): 92.34 / 92.23 / 92.09%, in 19.7 s
    # command start to exit (median of 3) on a 2-core AMD EPYC with AVX-512 BF16 (bf16 autocast);
    # 4 epochs at 5e-3: 0.9154 (dropout 0.1) / 0.9163 (none); lr 0.012: 0.9177; flips and shifts: 0.9078; batch
    # 256 at 8e-3: 0.9149; label smoothing 0 / 0.1: 0.9160 / 0.9170 (at 5e-3), 0.1 at 8e-3: 0.9185 (a tie: 0.05 kept).
    "fast": {"model": "fastcnn", "epochs": 4, "batch_size": 128, "lr": 8e-3, "augment": "none",
             "val_fraction": 0.04, "label_smoothing": 0.05, "model_kwargs": {"dropout": 0.0},
             "report_background": True},
}
SCHEDULERS = ("onecycle", "cosine", "none")
LR_SCALING = ("none", "linear")
BN_POLICIES = ("train", "frozen")
PRETRAINED_MODEL = "mobilenet_v2"  # --pretrained without --model: the network whose weights ship offline
# --pretrained on images smaller than this: upsampled to it. bench/finetune.py --select, Fashion-MNIST at 20 per
# class, validation accuracy (3 seeds): 64 px 0.755, 96 px 0.782, 128 px lower again; and a new random stem
# for small images would throw away the layer whose filters transfer best
PRETRAINED_MIN_SIDE = 96
ON_BAD_IMAGE = ("fail", "skip")
__all__ = ["AUGMENTS", "BN_POLICIES", "DATA_MODES", "LR_SCALING", "PRECISIONS", "PRETRAINED_MIN_SIDE", "PRETRAINED_MODEL", "ON_BAD_IMAGE", "OPTIMIZERS", "PRESETS", "SCHEDULERS", "TrainConfig",
           "apply_preset", "check", "check_types", "config_argv", "flag", "help_of", "not_one_of", "opt",
           "reference_batch", "resolve"]


def opt(default, help: str, *, choices: tuple | None = None, metavar: str | None = None):
    """A `TrainConfig` field with its documentation: `help` says why the default is what it is, `choices` and
    `metavar` shape its flag. A dict or list default is copied for each config (dataclasses' default_factory)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "metavar": metavar}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    data: str = opt("digits", "a folder of images (DIR/CLASS/… or DIR/train|val|test/CLASS/…), a FILE.csv of "
                              "path,label rows, or digits, fashion-mnist:DIR, mnist:DIR, cifar10:DIR",
                    metavar="SPEC")
    preset: str = opt("default", "a named set of the defaults below (PRESETS); fast: the quickest route to a good "
                      "model on a CPU; explicit options win", choices=tuple(PRESETS))
    model: str | None = opt(None, "a registered model (cnnkit models); None: simplecnn for images up to 32 px, "
                            "simplecnn_bn above")
    pretrained: bool = opt(False, "start from the model's ImageNet weights (torchvision's; found offline in the torch "
                           "hub cache or an installed weight package, or fetched with --download) and fine-tune: "
                           "head first, then the whole network (fastai's fine_tune); model default mobilenet_v2")
    weights: str | None = opt(None, "start from this weight file (.pth state dict, read with weights_only, or "
                              ".safetensors) or torchvision's weights by name (IMAGENET1K_V1); implies --pretrained",
                              metavar="FILE|TAG")
    freeze_epochs: int | None = opt(None, "epochs (of --epochs) that train only the new head, the pretrained body "
                                    "frozen; = --epochs: a linear probe; None: 1 with --pretrained (fastai's "
                                    "fine_tune), else 0", metavar="N")
    lr_mult: float | None = opt(None, "discriminative learning rates: after the frozen epochs the first layers learn "
                                "at lr/LR_MULT, rising geometrically stage by stage to lr at the head (fastai's "
                                "slice(lr/LR_MULT, lr)); None: 100 with --pretrained (fastai's; chosen on "
                                "validation), else 1", metavar="X")
    bn: str = opt("train", "BatchNorm policy for fine-tuning. train: BatchNorm layers learn and update their "
                  "statistics on your data, also while the body is frozen (fastai's train_bn; right when your "
                  "images differ from ImageNet's, e.g. X-rays). frozen: they keep ImageNet's statistics and "
                  "scales throughout (inference mode; Keras' advice since keras#9965: a layer frozen in weights "
                  "but normalising with batch statistics trains on different numbers than it predicts with)",
                  choices=BN_POLICIES)
    positive: str | None = opt(None, "two classes: the class a positive test finds (the one screened for); None: the "
                               "rarer class in train", metavar="CLASS")
    operating_point: str = opt("argmax", "two classes: the threshold on the positive class's calibrated probability, "
                               "chosen on the validation split and saved with the model: argmax (0.5), youden, f1, "
                               "sensitivity=0.95 (a screening test), specificity=0.95", metavar="RULE")
    balance: str = opt("auto", "class imbalance: weights (the loss weighs each class alike), sampler (batches drawn "
                       "with each class equally likely), none; auto: none when an operating point is chosen on "
                       "validation (its threshold balances the decision), else weights when the rarest class has "
                       "under half of an even share of train (binary: under 1 in 4); measured in bench/binary.py",
                       choices=("auto", "none", "weights", "sampler"))
    calibrate: bool = opt(True, "fit a temperature on the validation split after training (Guo et al. 2017), so "
                          "probabilities mean what they say; saved with the model and used everywhere")
    group_by: str | None = opt(None, "keep each group (a patient) on one side of the train/validation split: a "
                               "column of the CSV, or a regular expression on the file path whose first group (or "
                               "match) names the group, e.g. 'patient_(\\d+)'", metavar="COLUMN|REGEX")
    model_kwargs: dict = opt({}, "extra builder arguments, a JSON object (e.g. {\"small_input\": true})",
                             metavar="JSON")
    epochs: int | None = opt(None, "None: enough passes for the data size (30 for digits, 12 for 50k images)")
    batch_size: int | None = opt(None, "None: 128 (64 under 5,000 images: more steps per epoch)")
    lr: float | None = opt(None, "peak learning rate; None: 3e-3 for AdamW/Adam (the one-cycle peak; 1e-3 when "
                           "fine-tuning pretrained weights), 0.05 for SGD",
                           metavar="LR")
    optimizer: str = opt("adamw", "AdamW: robust across models without tuning", choices=OPTIMIZERS)
    weight_decay: float = opt(5e-4, "mild, decoupled (AdamW); applied to weights, not to biases and norms")
    momentum: float = opt(0.9, "SGD only")
    scheduler: str = opt("onecycle", "one-cycle (Smith 2018): warm-up then anneal; fastest to a good accuracy",
                         choices=SCHEDULERS)
    label_smoothing: float | None = opt(None, "None: 0.1; softer targets generalise better on small data")
    augment: str | None = opt(None, "None: light for ≤16 px images, standard above", choices=AUGMENTS)
    flips: bool | None = opt(None, "horizontal flips in augmentation; None: decided from the data (on for photos of "
                             "objects such as Fashion-MNIST and CIFAR-10; off for digits, letters and folders of "
                             "unknown content, where a mirrored image can change class)")
    img_size: int | None = opt(None, "resize images to PX×PX; None: the images' own size (folders of photos: 128)",
                               metavar="PX")
    window: str | None = opt(None, "CENTER,WIDTH: how DICOM and 16-bit images become 8-bit pixels (DICOM's linear "
                             "window, e.g. 40,400 for CT soft tissue); None: a DICOM file's own window (its VOI LUT "
                             "or WindowCenter/Width) or else the range its BitsStored hold; a 16-bit PNG/TIFF (no such tags): each image's own "
                             "min to max, so give --window when brightness must compare across images", metavar="C,W")
    val_fraction: float | None = opt(None, "the share of the training images held out for validation when the data "
                                     "has no validation split; None: 0.1 (0.2 for digits)", metavar="F")
    seed: int = opt(0, "everything random (split, init, shuffling, augmentation, dropout) follows from it")
    device: str = opt("auto", "auto: CUDA if available, else CPU (or cpu, cuda, cuda:N)")
    channels_last: bool = opt(True, "NHWC layout: 1.3x (simplecnn), 1.32x (fastcnn) training images/s, measured on "
                              "2 AVX2 cores; also the layout a GPU's tensor cores want")
    precision: str = opt("auto", "bf16 autocast or fp32. auto: bf16 where it trains faster, chosen per machine: a GPU "
                         "with bf16, or a CPU with AVX-512 BF16 or AMX (1.25x the images/s of fp32 on an AMD EPYC "
                         "with AVX-512 BF16); fp32 on other CPUs, where bf16 is emulated and was 7x slower", choices=PRECISIONS)
    patience: int | None = opt(None, "early stopping: epochs without a better val_acc; None: never stop early")
    on_bad_image: str = opt("fail", "fail: list every unreadable image and stop; skip: leave them out",
                            choices=ON_BAD_IMAGE)
    max_pixels: int | None = opt(None, "refuse images larger than this (decompression bombs); None: 40 MP")
    data_mode: str = opt("auto", "where the decoded images live: memory (fastest), stream (an on-disk cache read "
                         "batch by batch, for data larger than memory); auto: memory when the decoded data set "
                         "takes under a quarter of the available RAM", choices=DATA_MODES)
    out: str | None = opt(None, "run directory; None: runs/<data>-<model>-<time>", metavar="RUN_DIR")
    download: bool = opt(False, "fetch MNIST/Fashion-MNIST/CIFAR-10, or pretrained weights, with torchvision when "
                         "missing")
    nproc: int | None = opt(None, "train on N processes of this machine (one per GPU, else one per CPU core), "
                            "started through torchrun's launcher (torch.distributed.run --standalone); for several "
                            "machines start torchrun yourself (README). --batch-size stays the global batch; "
                            "ignored inside torchrun; None: one process", metavar="N")
    sync_bn: bool = opt(False, "with several processes: BatchNorm normalises with the statistics of the whole global "
                        "batch (nn.SyncBatchNorm) instead of each process's share, so N processes train the model one "
                        "process would; off by default, as in PyTorch: it adds a collective per BatchNorm layer to "
                        "every step, and matters most when each process's share of the batch is small")
    lr_scaling: str = opt("none", "linear: multiply --lr by batch/B0, B0 the default batch of this data (64 under "
                          "5,000 images, else 128) that the default learning rates were chosen for (Goyal et al. "
                          "2017's rule for large batches, with the one-cycle warm-up); none: --lr as given. The "
                          "number of processes alone changes nothing: --batch-size is the global batch",
                          choices=LR_SCALING)
    report: bool = opt(True, "write report.html (summary, curves, confusion matrix, Grad-CAM) after training; "
                       "cnnkit report RUN_DIR writes it later")
    report_background: bool | None = opt(None, "build report.html in a process of its own once the run is saved, "
                                         "so the command ends at once (the output says so; RUN_DIR/report.log has "
                                         "its errors); None: yes for --preset fast, whose whole training costs a "
                                         "few report builds, no otherwise")

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def flag(name: str) -> str:
    """The command-line flag of a field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


def help_of(name: str) -> str:
    """A field's documentation (the reason for its default)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}[name]


def not_one_of(value, choices) -> str:
    """ "'sgdd' is not one of adamw, sgd, adam; did you mean 'sgd'?" """
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"{value!r} is not one of {', '.join(map(str, choices))}" + (f"; did you mean {close[0]!r}?" if close else "")


def apply_preset(cfg: TrainConfig) -> TrainConfig:
    """Fill the options the user left at None from the preset."""
    if cfg.preset not in PRESETS:
        raise CnnkitError(f"--preset {cfg.preset!r} is not one of {', '.join(PRESETS)}")
    preset = PRESETS[cfg.preset]
    out = cfg.replace(**{k: v for k, v in preset.items() if k != "model_kwargs" and getattr(cfg, k) is None})
    if "model_kwargs" in preset and out.model == preset.get("model"):  # the preset's network: its arguments,
        out = out.replace(model_kwargs={**preset["model_kwargs"], **cfg.model_kwargs})  # under the user's
    return out


# Lower bounds no data set could make right; (bound, inclusive). Checked where the value is set.
_AT_LEAST = {"freeze_epochs": (0, True), "lr_mult": (1, True), "epochs": (1, True), "batch_size": (1, True), "patience": (1, True), "img_size": (1, True),
             "max_pixels": (1, True), "nproc": (1, True), "lr": (0, False), "weight_decay": (0, True),
             "momentum": (0, True),
             "label_smoothing": (0, True), "val_fraction": (0, False)}
# Upper bounds past which training cannot work (a learning rate of 1e39 overflows float32 in the optimizer)
# or no machine could run it; each with the reason in its message.
_AT_MOST = {"lr": (10.0, "a step that large diverges at once"), "weight_decay": (10.0, "it would erase the weights"),
            "momentum": (1.0, "above 1 the updates grow without bound"), "lr_mult": (1e4, "the body's rate is "
            "--lr divided by it"), "epochs": (1_000_000, "more than any run needs"),
            "batch_size": (1_000_000, "more images than one step can hold"),
            "patience": (1_000_000, "more than any run needs"), "nproc": (4096, "more processes than a machine runs")}

_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,)}


def check_types(d, where: str) -> None:
    """A saved config (train_state.pt's `config`, model.json's `train`), from a file another program could have
    written: each known field of the type its `TrainConfig` annotation names ('int | None': an int or null; a bool
    is not an int); unknown fields are ignored, as `TrainConfig.from_dict` ignores them. The first problem is
    raised as a CnnkitError naming `where.FIELD`."""
    if not isinstance(d, dict):
        raise CnnkitError(f"'{where}' must be an object, got {type(d).__name__}")
    for f in dataclasses.fields(TrainConfig):
        if f.name not in d:
            continue
        value, names = d[f.name], [t.strip() for t in str(f.type).split("|")]
        if value is None and "None" in names:
            continue
        ok = any(isinstance(value, _TYPES.get(n, ())) for n in names)
        if isinstance(value, bool) and "bool" not in names:
            ok = False
        if isinstance(value, float) and not math.isfinite(value):
            ok = False
        if isinstance(value, str) and len(value) > 4096:
            ok = False
        if not ok:
            shown = " ".join(repr(value).split())[:60]  # one line, whatever it is (a tensor's repr has several)
            raise CnnkitError(f"'{where}.{f.name}' must be {' or '.join(names)}, got {shown}")


def check(cfg: TrainConfig) -> TrainConfig:
    """Refuse a value that is not on its list or out of range, naming the flag. Options left at None are
    not checked: `resolve` fills them from the data and checks again. Returns `cfg` unchanged."""
    from ..preprocess import MAX_SIDE

    for name in ("lr", "lr_mult", "weight_decay", "momentum", "label_smoothing", "val_fraction"):
        value = getattr(cfg, name)
        if isinstance(value, float) and not math.isfinite(value):  # NaN slips past every comparison below
            raise CnnkitError(f"{flag(name)} must be a finite number, got {value}")
    if cfg.img_size is not None and cfg.img_size > MAX_SIDE:
        raise CnnkitError(f"{flag('img_size')} must be at most {MAX_SIDE} (the largest side a run directory "
                          f"records), got {cfg.img_size}")
    for f in dataclasses.fields(cfg):
        value, choices = getattr(cfg, f.name), f.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise CnnkitError(f"{flag(f.name)} {not_one_of(value, choices)}")
    for name, (low, inclusive) in _AT_LEAST.items():
        value = getattr(cfg, name)
        if value is not None and (value < low if inclusive else value <= low):
            need = f"at least {low}" if inclusive else ("positive" if low == 0 else f"more than {low}")
            raise CnnkitError(f"{flag(name)} must be {need}, got {value}")
    for name, (high, why) in _AT_MOST.items():
        value = getattr(cfg, name)
        if value is not None and value > high:
            raise CnnkitError(f"{flag(name)} must be at most {high:g} ({why}), got {value:g}")
    for name in ("label_smoothing", "val_fraction"):
        if getattr(cfg, name) is not None and getattr(cfg, name) >= 1:
            raise CnnkitError(f"{flag(name)} must be less than 1, got {getattr(cfg, name)}")
    if cfg.freeze_epochs and not (cfg.pretrained or cfg.weights):
        raise CnnkitError(f"--freeze-epochs {cfg.freeze_epochs} needs --pretrained (or --weights FILE): a randomly "
                          "initialised body has nothing to keep")
    if cfg.freeze_epochs is not None and cfg.epochs is not None and cfg.freeze_epochs > cfg.epochs:
        raise CnnkitError(f"--freeze-epochs {cfg.freeze_epochs} is more than --epochs {cfg.epochs}; give at most "
                          f"{cfg.epochs} (equal: train only the head, a linear probe)")
    if isinstance(cfg.model_kwargs, dict):
        taken = sorted(set(cfg.model_kwargs) & {"num_classes", "in_channels", "input_size", "pretrained", "weights",
                                                "download"})
        if taken:
            raise CnnkitError(f"--model-kwargs may not set {', '.join(taken)}: cnnkit sets it from the data "
                              "and the other flags (--img-size, --pretrained, --weights)")
        for k, v in cfg.model_kwargs.items():
            plain = lambda x: isinstance(x, (bool, int, float, str, type(None))) and not (  # noqa: E731
                isinstance(x, float) and not math.isfinite(x))
            if not (plain(v) or isinstance(v, list) and len(v) <= 8 and all(plain(x) and not isinstance(x, str)
                                                                             for x in v)):
                raise CnnkitError(f"--model-kwargs {k!r} must be a plain value (true/false, a finite number, a name) "
                                  f"or a short list of numbers, got {' '.join(repr(v).split())[:60]}")
            if k == "small_input" and v is not None and not isinstance(v, bool):
                raise CnnkitError(f"--model-kwargs 'small_input' must be true or false, got {v!r}")
    if not isinstance(cfg.model_kwargs, dict):
        raise CnnkitError(f"--model-kwargs must be a JSON object such as '{{\"small_input\": true}}', "
                          f"got {cfg.model_kwargs!r}")
    return cfg


def reference_batch(n_train: int) -> int:
    """The default batch for this many training images, the batch the default learning rates were chosen for
    (and --lr-scaling linear's reference)."""
    return 64 if n_train < 5_000 else 128


def config_argv(options: dict) -> list[str]:
    """The flags that give `options` (TrainConfig fields) back on the command line (a relaunch under torchrun).

    >>> config_argv({"epochs": 2, "sync_bn": True, "model_kwargs": {"dropout": 0}})
    ['--epochs', '2', '--sync-bn', '--model-kwargs', '{"dropout": 0}']
    """
    import json

    out: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(flag(key) if value else "--no-" + flag(key)[2:])
        else:
            out += [flag(key), json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return out


def resolve(cfg: TrainConfig, *, n_train: int, size: tuple[int, int]) -> TrainConfig:
    """Fill the `None` defaults from the preset, then from the data; check the rest."""
    cfg = check(apply_preset(cfg))
    side = min(size)
    tuned = bool(cfg.pretrained or cfg.weights)
    model = cfg.model or (PRETRAINED_MODEL if tuned else "simplecnn" if side <= 32 else "simplecnn_bn")
    pick = lambda value, default: default if value is None else value  # noqa: E731  (0 is a value, not "unset")
    epochs = pick(cfg.epochs, 30 if n_train < 5_000 else 15 if n_train < 20_000 else 12)
    batch = pick(cfg.batch_size, reference_batch(n_train))
    # fine-tuning: 1e-3 (bench/finetune.py --select: 0.755 against 0.741 for 3e-3 on validation, 20 per class)
    lr = pick(cfg.lr, 0.05 if cfg.optimizer == "sgd" else 1e-3 if tuned else 3e-3)
    augment = cfg.augment or ("light" if side <= 16 else "standard")
    smoothing = 0.1 if cfg.label_smoothing is None else cfg.label_smoothing
    freeze = pick(cfg.freeze_epochs, min(1, epochs) if tuned else 0)
    # 100 (fastai's): bench/finetune.py --refine, validation 0.803 against 0.795 for 10 (20 per class, 30 epochs)
    lr_mult = pick(cfg.lr_mult, 100.0 if tuned else 1.0)
    return check(cfg.replace(model=model, epochs=epochs, batch_size=batch, lr=lr, augment=augment,
                             label_smoothing=smoothing, pretrained=tuned, freeze_epochs=freeze, lr_mult=lr_mult,
                             report_background=bool(cfg.report_background)))
