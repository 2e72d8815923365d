"""The training loop: a fixed list of events (callbacks.EVENTS) and callbacks for everything around it.

The loop itself only trains and validates. Progress, logging, early stopping and checkpoints are callbacks
(fastai's design), so each can be swapped or left out without touching the loop.
"""
from __future__ import annotations

import math
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.dataset import ImageData, Split
from ..data.transforms import augment
from ..decision import class_weights, resolve_balance
from .._device import cpu_info, pick_precision
from .._io import NoSpaceError
from ..errors import CnnkitError
from ..models import create_model
from ..run import format as ckpt
from . import distributed as ddp
from .callbacks import EVENTS, Callback
from .config import TrainConfig, reference_batch, resolve


class TrainingDiverged(CnnkitError):
    """The loss became NaN or infinite."""


def layer_groups(model: nn.Module) -> list[list[tuple[str, nn.Parameter]]]:
    """The parameters in forward order, cut after each of the model's stages (`stage_names`, which may be
    parameter-free modules such as simplecnn's pools): group 0 is the stem and first stage (edges), the last
    group the head (the classifier and anything after the last stage)."""
    mods = [n for n, _ in model.named_modules()]  # pre-order: registration order, which is forward order here
    pos = {n: i for i, n in enumerate(mods)}
    ends = sorted(max(i for i, n in enumerate(mods) if n == s or n.startswith(s + "."))
                  for s in getattr(model, "stage_names", ()) if s in pos)
    groups: list[list] = [[] for _ in range(len(ends) + 1)]
    for name, p in model.named_parameters():
        owner = pos[name.rpartition(".")[0]]
        groups[sum(1 for e in ends if e < owner)].append((name, p))
    return [g for g in groups if g]


def _param_groups(model: nn.Module, weight_decay: float, lr: float, lr_mult: float = 1.0):
    """Optimizer groups: per layer group (discriminative learning rates, lr/lr_mult at the stem rising
    geometrically to lr at the head), each split into decayed weights and undecayed biases and norm scales."""
    # one learning rate: one group (also the layout of runs made before discriminative rates, so they resume)
    layers = layer_groups(model) if lr_mult != 1 else [list(model.named_parameters())]
    last = max(len(layers) - 1, 1)
    out = []
    for g, params in enumerate(layers):
        peak = lr * lr_mult ** (-(len(layers) - 1 - g) / last)
        decay = [p for _, p in params if p.ndim > 1]
        no_decay = [p for _, p in params if p.ndim <= 1]  # biases and norm scales are not decayed
        out += [{"params": decay, "weight_decay": weight_decay, "lr": peak, "peak_lr": peak, "layer_group": g},
                {"params": no_decay, "weight_decay": 0.0, "lr": peak, "peak_lr": peak, "layer_group": g}]
    return [g for g in out if g["params"]]


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


class Trainer:
    """Train a registered model on an `ImageData`.

    >>> import tempfile
    >>> from cnnkit.data import load_data
    >>> from cnnkit.engine import Trainer, TrainConfig
    >>> data = load_data('digits')
    >>> trainer = Trainer(TrainConfig(epochs=1), data, run_dir=tempfile.mkdtemp(), callbacks=[])
    >>> result = trainer.fit()
    >>> 0.0 <= result['val_acc'] <= 1.0
    True
    """

    def __init__(self, cfg: TrainConfig, data: ImageData, *, run_dir: str | Path,
                 callbacks: Iterable[Callback] = (), load_pretrained: bool = True):
        self.data = data
        cfg = resolve(cfg, n_train=len(data.train), size=data.size)
        # flips: the user's choice, else what is known of the data (never for digits, letters, unknown folders)
        self.cfg = cfg.replace(flips=data.flips if cfg.flips is None else bool(cfg.flips))
        self.run_dir = Path(run_dir)
        self.preprocess = data.preprocess
        # data-parallel (cnnkit.engine.distributed): this process's rank and the number of processes, from the
        # process group torchrun's variables set up (rank 0 of 1 without one)
        self.env = ddp.read_env()
        self.rank, self.world = ddp.world()
        self.is_main = self.rank == 0
        self.device = ddp.rank_device(self.cfg.device, self.env if self.world > 1 else ddp.DistEnv())
        # bf16 autocast where it is faster (--precision auto: a GPU, or a CPU with bf16 instructions; on AVX2
        # CPUs bf16 is emulated and was measured 7x slower). On a GPU the uint8 data set is moved there once, so
        # batches never cross PCIe.
        self.precision, self.precision_reason = pick_precision(self.cfg.precision, self.device)
        self.autocast = self.precision == "bf16"
        on_device = lambda s: Split(s.y.to(self.device), s.keys, x=s.x.to(self.device), paths=s.paths,  # noqa: E731
                                    origin=s.origin) if s.in_memory else s
        self.train_split, self.val_split = (on_device(data.train), on_device(data.val)) if self.device.type == "cuda" \
            else (data.train, data.val)
        torch.manual_seed(self.cfg.seed)
        # pretrained weights are read for a new run; a resumed one has its own in train_state.pt
        tuned = self.cfg.pretrained and load_pretrained
        kwargs = dict(self.cfg.model_kwargs)
        if self.cfg.pretrained:  # the pretrained stem, also when resuming (whose weights come from the state)
            kwargs.setdefault("small_input", False)
        self.model = create_model(self.cfg.model, num_classes=len(data.classes), in_channels=data.channels,
                                  input_size=data.size, pretrained=tuned, weights=self.cfg.weights if tuned else None,
                                  download=self.cfg.download, **kwargs).to(self.device)
        if self.cfg.sync_bn and self.world > 1:  # the same parameters and buffers: the state dict is unchanged
            self.model = ddp.convert_sync_batchnorm(self.model, self.device)
        self.pretrained_info = getattr(self.model, "pretrained_info", None)
        self.body = [p for g in layer_groups(self.model)[:-1] for _, p in g]
        self.phase = "head" if self.cfg.freeze_epochs > 0 else "all"
        self._set_trainable()
        self.memory_format = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        n, b = len(data.train), self.cfg.batch_size
        ddp.check_batch(b, self.world)
        # --batch-size is the global batch; a last batch too small to give each process 2 images is dropped
        # (BatchNorm cannot normalise a batch of one; one process: a last batch of one)
        self.steps_per_epoch = ddp.steps_per_epoch(n, b, self.world)
        if self.steps_per_epoch < 1:
            raise CnnkitError(f"{n} training images are fewer than one batch of {b}; lower --batch-size")
        # --lr-scaling linear: Goyal et al.'s rule against the batch the default rates were chosen for
        self.lr = ddp.scaled_lr(self.cfg.lr, b, reference_batch(n), self.cfg.lr_scaling)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        # class imbalance (cnnkit.decision): --balance auto decided from the training class counts
        counts = torch.bincount(data.train.y.cpu(), minlength=len(data.classes))
        balance, self.balance_reason = resolve_balance(self.cfg.balance, counts.tolist(), self.cfg.operating_point)
        self.cfg = self.cfg.replace(balance=balance)
        self.class_counts = counts
        weight = class_weights(counts).to(self.device) if balance == "weights" else None
        self.loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=self.cfg.label_smoothing)
        # several processes: each sums its images' losses, scaled so DDP's average is the global batch's mean
        self.loss_sum_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=self.cfg.label_smoothing, reduction="sum")
        self.loss_weight = weight
        # sampler: each image drawn with probability 1/(its class's count), with replacement (WeightedRandomSampler's)
        self.sample_weights = (1.0 / counts.clamp_min(1).double())[data.train.y.cpu()] if balance == "sampler" else None
        self.generator = torch.Generator().manual_seed(self.cfg.seed)  # shuffling and augmentation
        # several processes: the order stays the same on every rank (self.generator draws nothing else), and each
        # rank augments its own images from its own generator, seeded per epoch (ddp.epoch_seed)
        self.aug_generator = self.generator if self.world == 1 else torch.Generator()
        self.epoch, self.batch_index, self.step, self.last_loss = 0, 0, 0, float("nan")
        self.history: list[dict] = []
        self.best_val_acc, self.best_val_loss, self.best_epoch = -1.0, math.inf, 0
        self.should_stop, self.stop_reason = False, None
        self.running = {"loss": 0.0, "acc": 0.0, "images_per_s": 0.0}
        self.callbacks = sorted((c for c in callbacks if self.is_main or not getattr(c, "rank0_only", False)),
                                key=lambda c: c.order)
        self.net = self.model  # what trains: the model, or its DistributedDataParallel wrapper (_wrap)
        self._wrap()
        for cb in self.callbacks:
            cb.trainer = self

    # --- set-up ------------------------------------------------------------------------------------------
    def _wrap(self) -> None:
        """Several processes: DistributedDataParallel around the model (it broadcasts rank 0's weights and
        averages gradients). Rebuilt when the trainable parameters change: DDP syncs only the parameters that
        required gradients when it was made."""
        if self.world == 1:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.net = DDP(self.model, device_ids=ids, output_device=ids[0] if ids else None)

    def _set_trainable(self) -> None:
        """The phase's trainable parameters: the head only (and BatchNorm under --bn train) while the body is
        frozen, then everything; under --bn frozen, BatchNorm never trains."""
        for p in self.model.parameters():
            p.requires_grad_(True)
        if self.phase == "head":
            for p in self.body:
                p.requires_grad_(False)
        norms = [m for m in self.model.modules() if _is_norm(m)]
        for m in norms:
            for p in m.parameters(recurse=False):
                p.requires_grad_(self.cfg.bn == "train")

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.bn == "frozen":  # ImageNet's running statistics, in training as at inference
            for m in self.model.modules():
                if _is_norm(m):
                    m.eval()

    def _phase_span(self) -> tuple[int, int]:
        """The first and last epoch (0-based start, end) of the current phase's schedule."""
        f = self.cfg.freeze_epochs
        return (0, f) if self.phase == "head" else (f, self.cfg.epochs)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups = _param_groups(self.model, self.cfg.weight_decay, self.lr, self.cfg.lr_mult)
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=self.cfg.momentum, nesterov=True)
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.lr)
        return torch.optim.AdamW(groups, lr=self.lr)

    def _make_scheduler(self):
        """The schedule of the current phase: one cycle over the frozen epochs (every group at the head's lr;
        the frozen ones have no gradients), then one over the rest with the discriminative rates."""
        start, end = self._phase_span()
        total = (end - start) * self.steps_per_epoch
        peaks = [self.lr if self.phase == "head" else g["peak_lr"] for g in self.optimizer.param_groups]
        for g, peak in zip(self.optimizer.param_groups, peaks):
            g["lr"] = peak
            g.pop("initial_lr", None)  # a scheduler takes its start from an earlier one's otherwise
        if self.cfg.scheduler == "onecycle":
            if total < 4:  # too few steps for a warm-up and an anneal: a constant learning rate
                return None
            # a quarter of the steps warm up; at least 2, or OneCycleLR divides by a zero-length phase
            return torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=peaks, total_steps=total,
                                                       pct_start=max(0.25, 2 / total))
        if self.cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        return None

    def _event(self, name: str) -> None:
        assert name in EVENTS, name
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is not None:
                fn()

    # --- the loop ----------------------------------------------------------------------------------------
    def fit(self) -> dict:
        start = time.perf_counter()
        ckpt.check_before_training(self.meta(), self.run_dir)
        if self.is_main:  # only rank 0 writes the run directory
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not (self.run_dir / ckpt.SPLIT).exists():
                ckpt.save_split(self.data.manifest(), self.run_dir / ckpt.SPLIT)
        self._event("before_fit")
        try:
            while self.epoch < self.cfg.epochs and not self.should_stop:
                if self.phase == "head" and self.epoch >= self.cfg.freeze_epochs:  # unfreeze the body
                    self.phase = "all"
                    self._set_trainable()
                    self._wrap()
                    self.scheduler = self._make_scheduler()
                self.epoch += 1
                self._event("before_epoch")
                t0 = time.perf_counter()
                train_loss, train_acc = self._train_epoch()
                seconds = time.perf_counter() - t0
                self._event("after_train_epoch")
                val_loss, val_acc = self.evaluate_split(self.val_split)
                if self.is_better(val_acc, val_loss):
                    self.best_val_acc, self.best_val_loss, self.best_epoch = val_acc, val_loss, self.epoch
                self.history.append({
                    "epoch": self.epoch, "train_loss": round(train_loss, 6), "train_acc": round(train_acc, 6),
                    "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6),
                    "lr": self.optimizer.param_groups[-1]["lr"], "phase": self.phase, "seconds": round(seconds, 3),
                    "images_per_s": round(len(self.data.train) / max(seconds, 1e-9), 1)})
                self._event("after_epoch")
        except NoSpaceError as e:  # a checkpoint or a log (metrics.csv) that did not fit: what is saved, what to do
            raise self._disk_full(e) from None
        finally:
            self._event("after_fit")
        best = next((h for h in self.history if h["epoch"] == self.best_epoch), {})
        return {"val_acc": round(self.best_val_acc, 6), "val_loss": best.get("val_loss"),
                "best_epoch": self.best_epoch, "epochs": self.epoch, "seconds": round(time.perf_counter() - start, 2),
                "run_dir": str(self.run_dir), "model": self.cfg.model, "data": self.data.spec,
                "stopped": self.stop_reason}

    #: how the best epoch is chosen (saved in model.json)
    BEST_RULE = ("the highest val_acc; on a tie, the lower val_loss, and the later epoch when that ties too "
                 "(a later epoch of a decaying schedule is the better-settled model)")

    def is_better(self, val_acc: float, val_loss: float) -> bool:
        if val_acc != self.best_val_acc:
            return val_acc > self.best_val_acc
        return val_loss <= self.best_val_loss

    def _prepare(self, x: torch.Tensor, y: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if train:
            x = augment(x, self.cfg.augment, flips=self.cfg.flips, generator=self.aug_generator)
        x = x.to(self.device, non_blocking=True)
        x = self.preprocess.normalize(x).contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def _train_epoch(self) -> tuple[float, float]:
        self._train_mode()
        split = self.train_split
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, len(split), replacement=True, generator=self.generator)
        else:
            order = torch.randperm(len(split), generator=self.generator)
        b, world = self.cfg.batch_size, self.world
        order = order[:self.steps_per_epoch * b]  # (drops a last batch too small to split)
        # every rank drew the same order: each takes its part of every global batch
        globals_ = [order[i:i + b] for i in range(0, len(order), b)]
        if world > 1:
            seed = ddp.epoch_seed(self.cfg.seed, self.epoch, self.rank)
            self.aug_generator.manual_seed(seed)
            torch.manual_seed(seed)  # dropout: different masks on different ranks
            order = ddp.rank_batches(order, b, self.rank, world)
        labels = split.y.cpu()
        total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
        for self.batch_index, (xb, yb) in enumerate(split.batches(b, order)):
            ddp.maybe_kill_for_test(self.epoch, self.batch_index, self.env)
            self._event("before_batch")
            x, y = self._prepare(xb, yb, train=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.net(x)
                if world == 1:
                    loss = self.loss_fn(logits.float(), y)
                else:  # summed, times world / the global count: DDP's average is then the global batch's gradient
                    y_global = labels[globals_[self.batch_index]]
                    loss = self.loss_sum_fn(logits.float(), y) * ddp.loss_scale(y_global, world, self.loss_weight)
            if not torch.isfinite(loss):
                raise TrainingDiverged(self._diverged_message(loss.item()))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            n = len(y)
            self.step += 1
            self.last_loss = loss.item()  # several processes: this rank's estimate of the global batch's loss
            if world == 1:
                total_loss += self.last_loss * n
            else:  # this rank's share of the global batch's mean loss, times the global batch's count
                total_loss += self.last_loss / world * len(globals_[self.batch_index])
            correct += int((logits.argmax(1) == y).sum())
            seen += n
            self.running = {"loss": total_loss / seen, "acc": correct / seen,
                            "images_per_s": seen * world / max(time.perf_counter() - t0, 1e-9)}
            self._event("after_batch")
        total_loss, correct, seen = ddp.all_sum([total_loss, correct, seen])  # the epoch over all ranks
        return total_loss / seen, correct / seen

    def _diverged_message(self, value: float) -> str:
        kept = (f"the best checkpoint (epoch {self.best_epoch}, val_acc={self.best_val_acc:.4f}) is kept in "
                f"{self.run_dir}" if self.best_epoch else "no checkpoint had been saved yet")
        return (f"the training loss became {value} at epoch {self.epoch}, batch {self.batch_index + 1}; "
                f"training stopped and {kept}. Try a lower --lr (now {self.lr:g}).")

    @torch.no_grad()
    def predict_logits(self, split: Split, batch_size: int = 512, order: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of `split` (or of its items `order`), in order, on the CPU."""
        self.model.eval()
        out = []
        for xb, yb in split.batches(batch_size, order):
            x, _ = self._prepare(xb, yb, train=False)
            # on a CPU, evaluated in fp32 as predict and evaluate run it (the val_acc saved is the one they see)
            on_gpu = self.autocast and self.device.type != "cpu"
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on_gpu):
                out.append(self.model(x).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.data.classes))

    def evaluate_split(self, split: Split) -> tuple[float, float]:
        """(loss, accuracy) on all of `split`. Several processes: each predicts a contiguous shard, with nothing
        padded in, and the logits are gathered, so every rank computes the same metrics on every image once."""
        if self.world == 1:
            logits = self.predict_logits(split)
        else:
            ddp.sync_buffers(self.model)  # one model: rank 0's BatchNorm statistics on every rank
            part = ddp.shard_range(len(split), self.rank, self.world)
            logits = ddp.gather_rows(self.predict_logits(split, order=torch.arange(part.start, part.stop)))
        self.eval_count = len(logits)
        y = split.y.cpu()
        loss = F.cross_entropy(logits, y).item()
        return loss, (logits.argmax(1) == y).float().mean().item()

    # --- saving and resuming -----------------------------------------------------------------------------
    def meta(self) -> dict:
        best = next((h for h in self.history if h["epoch"] == self.best_epoch), {})
        return {
            "model": {"name": self.cfg.model, "kwargs": self.model.model_kwargs},
            "classes": self.data.classes,
            "preprocess": self.preprocess.to_dict(),
            "data": {"spec": self.data.spec, "name": self.data.name, "mode": self.data.mode, **self.data.split_info,
                     "sizes": {k: len(v) for k, v in self.data.splits.items()}, "split_file": ckpt.SPLIT,
                     **self._spec_mac("spec_mac", self.data.spec)},
            "train": self.cfg.to_dict(),
            "metrics": {"best_epoch": self.best_epoch, **{k: v for k, v in best.items() if k != "epoch"}},
            "best_rule": self.BEST_RULE,
            # what trained it (the config keeps --precision as asked, auto, so a resume chooses for its machine)
            "trained_on": {"device": str(self.device), "precision": self.precision, "processes": self.world,
                           **({"cpu": cpu_info()["name"]} if self.device.type == "cpu" else {})},
            "created": datetime.now().isoformat(timespec="seconds"),
            **({"pretrained": self.pretrained_info} if self.pretrained_info else {}),
        }

    @staticmethod
    def _spec_mac(key: str, spec: str) -> dict:
        """{key: this user's signature of a data spec}: evaluate and resume read the data it names without
        --data only when signed here (cnnkit.run.format.check_saved_spec)."""
        mac = ckpt.sign_spec(spec)
        return {key: mac} if mac else {}

    def _saved(self) -> str:
        # the state is written every epoch, last: the one on disk is the previous epoch's
        return (f"the last checkpoint (epoch {self.epoch - 1}) in {self.run_dir} is intact"
                if (self.run_dir / ckpt.STATE).is_file() else "nothing of this run was saved yet")

    def _disk_full(self, e: NoSpaceError) -> NoSpaceError:
        """A checkpoint that did not fit: what is still saved, and how to go on once there is space."""
        if (self.run_dir / ckpt.STATE).is_file():
            return e.add(f"{self._saved()}: free some space and continue with cnnkit train --resume {self.run_dir}")
        if (self.run_dir / ckpt.WEIGHTS).is_file():  # the first epoch's model was saved, its training state not
            return e.add(f"the epoch-{self.epoch} model is saved in {self.run_dir / ckpt.WEIGHTS} (it can be "
                         "evaluated, or trained on with --weights), but not its training state, so the run cannot be "
                         "resumed: free some space and train again with another --out")
        return e.add(f"{self._saved()}: free some space and train again")

    def save_best(self) -> None:
        try:
            ckpt.save_best(self.model, self.meta(), self.run_dir)
        except NoSpaceError as e:
            raise self._disk_full(e) from None

    def save_state(self) -> None:
        np_state = np.random.get_state()
        state = {
            "config": self.cfg.to_dict(), "epoch": self.epoch, "step": self.step, "history": self.history,
            "best_val_acc": self.best_val_acc, "best_val_loss": self.best_val_loss, "best_epoch": self.best_epoch,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None, "phase": self.phase,
            "pretrained": self.pretrained_info, "classes": list(self.data.classes), **self._spec_mac("data_mac", self.cfg.data),
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
                    "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }
        try:
            ckpt.save_state(state, self.run_dir / ckpt.STATE)
        except NoSpaceError as e:
            raise self._disk_full(e) from None

    def load_state(self, state: dict) -> None:
        """Continue from a saved state. If the run is being extended (more epochs than it was started with),
        the schedule is rebuilt for the new total and advanced to where the run is, as Keras' initial_epoch.
        `state` has passed `cnnkit.run.format.state_problem`; what depends on this model is checked here, before
        anything is applied, and anything that still fails is named as damage of train_state.pt."""
        path = self.run_dir / ckpt.STATE
        problem = self._state_problem(state)
        if problem:
            raise ckpt.damaged_state(path, problem)
        try:
            self._load_state(state)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as e:
            raise ckpt.damaged_state(path, ckpt._first_line(e)) from None

    def _state_problem(self, state: dict) -> str | None:
        """What of a saved state does not fit this model: its tensors' names and shapes, the optimizer's groups
        and per-parameter state, the schedule's length."""
        want = self.model.state_dict()
        have = state["model"]
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing or extra:
            return (f"its model lacks {missing[:3]}" if missing else "") + \
                (" and " if missing and extra else "") + (f"has tensors the model does not: {extra[:3]}" if extra else "")
        for k, t in want.items():
            if tuple(have[k].shape) != tuple(t.shape):
                return f"its tensor 'model.{k}' is {list(have[k].shape)}, the model's is {list(t.shape)}"
        groups, saved = self.optimizer.param_groups, state["optimizer"]["param_groups"]
        if len(saved) != len(groups) or any(len(a["params"]) != len(b["params"]) for a, b in zip(saved, groups)):
            return (f"its optimizer has {len(saved)} parameter groups of "
                    f"{[len(g['params']) for g in saved][:6]} parameters; this model's has {len(groups)} of "
                    f"{[len(g['params']) for g in groups][:6]}")
        ids = [i for g in saved for i in g["params"]]
        params = [p for g in groups for p in g["params"]]
        if sorted(ids) != list(range(len(params))):
            return "its optimizer's parameter numbers are not 0 to N-1"
        shape_of = {i: tuple(p.shape) for i, p in zip(ids, params)}
        for idx, st in state["optimizer"]["state"].items():
            if idx not in shape_of:
                return f"its optimizer holds state for parameter {idx}, which does not exist"
            for k, v in st.items():
                if torch.is_tensor(v) and v.ndim > 0 and tuple(v.shape) != shape_of[idx]:
                    return (f"its optimizer's '{k}' for parameter {idx} is {list(v.shape)}, the parameter is "
                            f"{list(shape_of[idx])}")
        return None

    def _load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.step = int(state.get("step", self.epoch * self.steps_per_epoch))
        self.best_val_acc, self.best_epoch = float(state["best_val_acc"]), int(state["best_epoch"])
        self.best_val_loss = float(state.get("best_val_loss", math.inf))
        self.pretrained_info = state.get("pretrained", self.pretrained_info)
        # the phase the next epoch belongs to; the saved schedule is kept only if it is that phase's
        self.phase = "head" if self.epoch < self.cfg.freeze_epochs else "all"
        self._set_trainable()
        self._wrap()
        extended = int(state["config"].get("epochs") or 0) != self.cfg.epochs
        same_phase = state.get("phase", "all") == self.phase
        saved = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.scheduler = self._make_scheduler()
        sched = state.get("scheduler")
        start, end = self._phase_span()
        done = max(0, self.epoch - start) * self.steps_per_epoch  # the steps this phase's finished epochs hold
        fits = sched is not None and sched.get("total_steps", (end - start) * self.steps_per_epoch) == \
            (end - start) * self.steps_per_epoch  # a schedule made for another length is rebuilt, as when extended
        # a saved position that disagrees with the finished epochs (a damaged or crafted state) is not trusted:
        # the schedule is rebuilt at the epochs' position, never stepped past its end
        fits = fits and sched.get("last_epoch", done) == done
        if self.scheduler is not None and fits and not extended and same_phase:
            self.scheduler.load_state_dict(state["scheduler"])
            for g, hyper in zip(self.optimizer.param_groups, saved):  # lr and momentum where the schedule was
                g.update(hyper)
        elif self.scheduler is not None:
            import warnings

            # built anew on the loaded optimizer (whose groups may lack the schedule's keys), then advanced
            start, end = self._phase_span()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
                for _ in range(min(done, (end - start) * self.steps_per_epoch - 1)):
                    self.scheduler.step()
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generator"])
        n = rng["numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
        random.setstate(tuple(tuple(v) if isinstance(v, list) else v for v in rng["python"]))
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
