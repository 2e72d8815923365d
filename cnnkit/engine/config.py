"""Every training default in one place, each with the reason for it (Ultralytics keeps them so too).

`None` means "chosen from the data" by `resolve`: a user who gives only `--data` gets a good model in
reasonable time on a laptop CPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import CnnkitError

OPTIMIZERS = ("adamw", "sgd", "adam")
PRESETS: dict[str, dict] = {
    "default": {},
    # The shortest time to a good model on a CPU (bench/train_speed.py measures it): a small BatchNorm
    # network (models/fast.py) at a high learning rate, a short one-cycle schedule, no augmentation (it slows
    # a 5-epoch run down more than it helps) and a small validation split. Batch 128 trains almost as many images/s
    # as 256 on a CPU (5-10% fewer in whole epochs) and gives twice the steps: +0.1 point at the same epoch count.
    # Fashion-MNIST: 92.2% t10k (seeds 0-2: 92.30, 92.15, 92.27) in 5 epochs, ~10 s each on 2 AVX2 cores.
    "fast": {"model": "fastcnn", "epochs": 5, "batch_size": 128, "lr": 5e-3, "augment": "none",
             "val_fraction": 0.04, "label_smoothing": 0.05},
}
SCHEDULERS = ("onecycle", "cosine", "none")


@dataclass
class TrainConfig:
    data: str = "digits"  # a data spec: digits, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, folder:DIR, csv:FILE
    preset: str = "default"  # default | fast: a named set of the defaults below (PRESETS); explicit options win
    model: str | None = None  # None: simplecnn for images up to 32 px, simplecnn_bn above
    model_kwargs: dict = field(default_factory=dict)  # extra builder arguments (e.g. small_input)
    epochs: int | None = None  # None: enough passes for the data size (30 for digits, 12 for 50k images)
    batch_size: int | None = None  # None: 128 (64 under 5,000 images: more steps per epoch)
    lr: float | None = None  # None: 3e-3 for AdamW/Adam (the one-cycle peak), 0.05 for SGD
    optimizer: str = "adamw"  # AdamW: robust across models without tuning
    weight_decay: float = 5e-4  # mild, decoupled (AdamW); applied to weights, not to biases and norms
    momentum: float = 0.9  # SGD only
    scheduler: str = "onecycle"  # one-cycle (Smith 2018): warm-up then anneal; fastest to a good accuracy
    label_smoothing: float | None = None  # None: 0.1; softer targets generalise better on small data
    augment: str | None = None  # none | light | standard; None: light for ≤16 px images, standard above
    img_size: int | None = None  # None: the images' own size (folders of photos: 128)
    val_fraction: float | None = None  # None: 0.1 (0.2 for digits) when the source has no validation split
    seed: int = 0  # everything random (split, init, shuffling, augmentation, dropout) follows from it
    device: str = "auto"  # auto: CUDA if available, else CPU
    channels_last: bool = True  # NHWC layout: 1.3x (simplecnn), 1.32x (fastcnn) training images/s, measured on
    #                             2 AVX2 cores; also the layout a GPU's tensor cores want
    patience: int | None = None  # early stopping: epochs without a better val_acc; None: never stop early
    on_bad_image: str = "fail"  # fail: list every unreadable image and stop; skip: leave them out
    max_pixels: int | None = None  # refuse images larger than this (decompression bombs); None: 40 MP
    out: str | None = None  # run directory; None: runs/<data>-<model>-<time>
    download: bool = False  # fetch MNIST/Fashion-MNIST/CIFAR-10 with torchvision when missing
    report: bool = True  # write report.html (summary, curves, confusion matrix, Grad-CAM) after training

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def apply_preset(cfg: TrainConfig) -> TrainConfig:
    """Fill the options the user left at None from the preset."""
    if cfg.preset not in PRESETS:
        raise CnnkitError(f"--preset {cfg.preset!r} is not one of {', '.join(PRESETS)}")
    return cfg.replace(**{k: v for k, v in PRESETS[cfg.preset].items() if getattr(cfg, k) is None})


def resolve(cfg: TrainConfig, *, n_train: int, size: tuple[int, int]) -> TrainConfig:
    """Fill the `None` defaults from the preset, then from the data; check the rest."""
    cfg = apply_preset(cfg)
    if cfg.optimizer not in OPTIMIZERS:
        raise CnnkitError(f"--optimizer {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if cfg.scheduler not in SCHEDULERS:
        raise CnnkitError(f"--scheduler {cfg.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    side = min(size)
    model = cfg.model or ("simplecnn" if side <= 32 else "simplecnn_bn")
    pick = lambda value, default: default if value is None else value  # noqa: E731  (0 is a value, not "unset")
    epochs = pick(cfg.epochs, 30 if n_train < 5_000 else 15 if n_train < 20_000 else 12)
    batch = pick(cfg.batch_size, 64 if n_train < 5_000 else 128)
    lr = pick(cfg.lr, 0.05 if cfg.optimizer == "sgd" else 3e-3)
    augment = cfg.augment or ("light" if side <= 16 else "standard")
    for name, value in (("--epochs", epochs), ("--batch-size", batch)):
        if value < 1:
            raise CnnkitError(f"{name} must be at least 1, got {value}")
    if lr <= 0:
        raise CnnkitError(f"--lr must be positive, got {lr}")
    if cfg.patience is not None and cfg.patience < 1:
        raise CnnkitError(f"--patience must be at least 1, got {cfg.patience}")
    smoothing = 0.1 if cfg.label_smoothing is None else cfg.label_smoothing
    return cfg.replace(model=model, epochs=epochs, batch_size=batch, lr=lr, augment=augment, label_smoothing=smoothing)
