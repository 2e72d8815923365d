"""Data-parallel training on several processes: torchrun starts them, DistributedDataParallel keeps them in step.

cnnkit launches and coordinates nothing itself. `torchrun` (torch.distributed.run) starts one process per
device and hands each its RANK, WORLD_SIZE and LOCAL_RANK (`read_env`); `session` joins the process group
(gloo on a CPU, NCCL on GPUs; LOCAL_RANK picks the GPU). What is here is what makes N processes train the
same model as one process would:

- **--batch-size is the global batch**, the images of one optimizer step summed over all processes. Every rank
  draws the same shuffled order of the epoch (same seed), cuts it into global batches and takes its slice of
  each (`rank_batches`: sizes differ by at most one, also in the last, partial batch). Changing the number of
  processes changes neither the batch nor the learning rate; `--lr-scaling linear` applies Goyal et al.'s
  rule (`scaled_lr`) when the batch itself grows.
- **exact loss**: DDP averages gradients over ranks, which is the gradient of the global batch only when every
  rank holds the same number of images. Each rank's loss is its *sum* over its images, times world_size,
  over the global batch's count (`loss_scale`), so the average is exact for any split.
- **exact evaluation**: each rank predicts a contiguous shard of the validation set (`shard_range`), with no
  sample padded in to even the ranks (DistributedSampler pads, which changes the metrics: pytorch#25162,
  Lightning#5060); the logits are gathered in order (`gather_rows`) so every rank computes the same metrics,
  and decisions taken on them (best epoch, early stopping) are the same everywhere.
- **one configuration**: `check_same` refuses to train when a rank was started differently, naming the rank
  and the options; `broadcast` hands rank 0's choices (the run directory) to the others.
- **--sync-bn**: BatchNorm statistics over the global batch. PyTorch's nn.SyncBatchNorm runs only on GPUs (its
  batch_norm_stats kernels have no CPU version), so on a CPU `CpuSyncBatchNorm` computes the same thing with
  two differentiable all-reduces; written out here because PyTorch has no CPU version to call.

>>> rank_batches(torch.arange(10), 4, rank=1, world=2)
[tensor([2, 3]), tensor([6, 7]), tensor([9])]
>>> shard_range(10, rank=2, world=3)
range(7, 10)
>>> loss_scale(torch.tensor([0, 1, 1]), world=2)
0.6666666666666666
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import CnnkitError

#: seconds to wait for every process to join (and for any one collective): CNNKIT_DIST_TIMEOUT overrides it.
#: Ten minutes: the first collective waits for the slowest rank to load its data, which on a large folder
#: read for the first time can take minutes.
DEFAULT_TIMEOUT_S = 600
TEST_KILL_VAR = "CNNKIT_TEST_KILL_AT"


@dataclass(frozen=True)
class DistEnv:
    """What torchrun (or any launcher that sets the same variables) told this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    restart_count: int = 0  # TORCHELASTIC_RESTART_COUNT: 0 on the first attempt, k after the k-th restart
    run_id: str | None = None  # TORCHELASTIC_RUN_ID (--rdzv-id; a fresh uuid under --standalone)
    master: str | None = None  # MASTER_ADDR:MASTER_PORT, the store every rank connects to

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def stable_id(self) -> str | None:
        """A name for this job that survives elastic restarts; None where the launcher gave none (torchrun's
        --rdzv-id defaults to the word 'none')."""
        rid = (self.run_id or "").strip()
        if not rid or rid.lower() == "none":
            return None
        return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in rid)[:36]


def _int(environ, name: str, default: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise CnnkitError(f"environment variable {name}={raw!r} is not an integer; it is set by torchrun, "
                          "start the processes with torchrun") from None


def read_env(environ=None) -> DistEnv:
    """The launcher's variables; a plain `cnnkit train` (none set) is rank 0 of 1."""
    e = os.environ if environ is None else environ
    world = _int(e, "WORLD_SIZE", 1)
    rank = _int(e, "RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise CnnkitError(f"RANK={rank} and WORLD_SIZE={world}: the rank must be in 0..WORLD_SIZE-1")
    addr, port = e.get("MASTER_ADDR"), e.get("MASTER_PORT")
    return DistEnv(rank=rank, world_size=world, local_rank=_int(e, "LOCAL_RANK", 0),
                   local_world_size=_int(e, "LOCAL_WORLD_SIZE", 1),
                   restart_count=_int(e, "TORCHELASTIC_RESTART_COUNT", 0), run_id=e.get("TORCHELASTIC_RUN_ID"),
                   master=f"{addr}:{port}" if addr and port else None)


def timeout_s(environ=None) -> float:
    raw = (os.environ if environ is None else environ).get("CNNKIT_DIST_TIMEOUT")
    if raw in (None, ""):
        return float(DEFAULT_TIMEOUT_S)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise CnnkitError(f"CNNKIT_DIST_TIMEOUT={raw!r}: give a positive number of seconds")
    return value


# --- devices and the process group --------------------------------------------------------------------------
def cpu_count() -> int:
    """CPU cores this process may run on (its affinity: a container's or taskset's limit), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def uses_cuda(device: str) -> bool:
    return str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def check_nproc(nproc: int, device: str = "auto") -> None:
    """`--nproc N` on one machine: one process per GPU, or per CPU core; more is refused, naming what is there."""
    if nproc < 1:
        raise CnnkitError(f"--nproc must be at least 1, got {nproc}")
    if uses_cuda(device):
        n = torch.cuda.device_count()
        if nproc > n:
            raise CnnkitError(f"--nproc {nproc}: this machine has {n} GPU{'s' * (n != 1)} (torch.cuda.device_count(), "
                              f"after CUDA_VISIBLE_DEVICES); give --nproc {n} or fewer, one process per GPU")
    else:
        n = cpu_count()
        if nproc > n:
            raise CnnkitError(f"--nproc {nproc}: this machine has {n} CPU core{'s' * (n != 1)} for this process; give "
                              f"--nproc {n} or fewer (each process then trains with its own core)")


def rank_device(requested: str, env: DistEnv) -> torch.device:
    """The device of this rank: the GPU numbered LOCAL_RANK when training on GPUs, else the CPU."""
    from .._device import pick_device

    if not env.enabled:
        return pick_device(requested)
    if str(requested).startswith("cuda:"):
        raise CnnkitError(f"--device {requested} with {env.world_size} processes: each process takes the GPU of its "
                          "LOCAL_RANK; give --device cuda (or auto)")
    device = pick_device(requested)
    if device.type != "cuda":
        return device
    n = torch.cuda.device_count()
    if env.local_rank >= n:
        raise CnnkitError(f"LOCAL_RANK {env.local_rank} has no GPU: this machine has {n}; start at most {n} "
                          "processes on it (--nproc-per-node)")
    torch.cuda.set_device(env.local_rank)
    return torch.device("cuda", env.local_rank)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_group(env: DistEnv, device: torch.device, timeout: float | None = None) -> None:
    """Join the process group of `env` (env:// from MASTER_ADDR/MASTER_PORT). Not reaching it within the
    timeout is one line naming the address, never a hang."""
    timeout = timeout_s() if timeout is None else timeout
    where = env.master or "MASTER_ADDR:MASTER_PORT (not set)"
    if env.master is None:
        raise CnnkitError(f"WORLD_SIZE={env.world_size} but MASTER_ADDR/MASTER_PORT are not set; start the "
                          "processes with torchrun (or cnnkit train --nproc N)")
    host, _, port = env.master.rpartition(":")
    # Under torchrun the agent serves the store, and keeps it across elastic restarts: the keys of the attempt
    # that died are still there, and a rank of the next attempt could read a dead peer's address from them
    # (seen here: "Connection refused" after a restart). A prefix per attempt keeps attempts apart.
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    try:
        store = dist.TCPStore(host, int(port), env.world_size, is_master=not agent and env.rank == 0,
                              timeout=timedelta(seconds=timeout), multi_tenant=True)
        store = dist.PrefixStore(f"cnnkit/attempt_{env.restart_count}", store)
        dist.init_process_group(backend_for(device), store=store, rank=env.rank, world_size=env.world_size,
                                timeout=timedelta(seconds=timeout),
                                **({"device_id": device} if device.type == "cuda" else {}))
    except (RuntimeError, ValueError, TimeoutError, OSError) as e:
        text = str(e).lower()
        if any(w in text for w in ("timed out", "timeout", "connect", "refused", "socket")):
            raise CnnkitError(f"could not reach the rendezvous at {where} within {timeout:g} s; check --rdzv-endpoint "
                              "and that every node started") from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CnnkitError(f"could not join the process group at {where}: {first}") from None


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world_size) of the current process group; (0, 1) outside one."""
    return (dist.get_rank(), dist.get_world_size()) if is_initialized() else (0, 1)


@contextlib.contextmanager
def session(device: str = "auto", env: DistEnv | None = None) -> Iterator[DistEnv]:
    """Join the process group for the duration of a training when launched by torchrun (WORLD_SIZE > 1);
    nothing otherwise. Left on the way out if this call joined it."""
    env = env or read_env()
    joined = False
    if env.enabled and not is_initialized():
        init_group(env, rank_device(device, env))
        joined = True
    try:
        yield env
    except (dist.DistError, RuntimeError) as e:  # a peer died (torchrun stops or restarts the job): one line
        if not (env.enabled and _peer_lost(e)):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CnnkitError(f"rank {env.rank}: another process of this training stopped or cannot be reached "
                          f"({first}); its own messages say why") from None
    finally:
        if joined and is_initialized():
            dist.destroy_process_group()


# what a collective raises when a peer is gone: gloo's transport errors are plain RuntimeErrors
# ("[…/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:6574: Connection reset by peer")
_PEER_LOST = ("gloo/transport", "Connection reset by peer", "Connection closed by peer", "Broken pipe",
              "NCCL communicator was aborted")


def _peer_lost(e: BaseException) -> bool:
    return isinstance(e, dist.DistError) or any(w in str(e) for w in _PEER_LOST)


# --- the same configuration everywhere ------------------------------------------------------------------------
def digest(obj: Any) -> str:
    """A short, stable hash of JSON-able data (a config, a split manifest)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same(description: dict) -> None:
    """Every rank must describe its training identically (options, data, split): else every rank stops with
    one line naming the first rank that differs and how. Nothing outside a process group."""
    rank, n = world()
    if n == 1:
        return
    gathered: list = [None] * n
    dist.all_gather_object(gathered, description)
    ref = gathered[0]
    for r, d in enumerate(gathered):
        if d != ref:
            keys = sorted(k for k in set(d) | set(ref) if d.get(k) != ref.get(k))
            diffs = "; ".join(f"{k} {ref.get(k)!r} on rank 0, {d.get(k)!r} on rank {r}" for k in keys[:4])
            raise CnnkitError(f"rank {r} was started with a different configuration from rank 0 ({diffs}); start "
                              "every node with the same command and the same data")


def broadcast(obj: Any, src: int = 0) -> Any:
    """`obj` as rank `src` has it, on every rank (pickled: only between the processes of one job)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn, *args, **kw) -> Any:
    """`fn(*args, **kw)` on rank 0 only (claiming the run directory, reading a checkpoint); its result on every
    rank, or its CnnkitError raised on every rank, so no rank waits for one that has given up."""
    rank, n = world()
    if n == 1:
        return fn(*args, **kw)
    out = None
    if rank == 0:
        try:
            out = ("ok", fn(*args, **kw))
        except CnnkitError as e:
            out = ("error", str(e))
    kind, value = broadcast(out)
    if kind == "error":
        raise CnnkitError(value)
    return value


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


@contextlib.contextmanager
def local_first(env: DistEnv) -> Iterator[None]:
    """Local rank 0 goes first (it builds a data cache, downloads), the node's other ranks then find it done."""
    if env.enabled and is_initialized() and env.local_rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if env.enabled and is_initialized() and env.local_rank == 0:
            dist.barrier()


# --- global batches, sharded ----------------------------------------------------------------------------------
def steps_per_epoch(n: int, batch: int, world: int = 1) -> int:
    """Optimizer steps in an epoch of `n` images: a last, partial global batch is kept when each rank gets at
    least 2 of its images (BatchNorm cannot normalise one; with one process: a last batch of one is dropped)."""
    full, rest = divmod(n, batch)
    return full + (rest >= 2 * world)


def rank_batches(order: torch.Tensor, batch: int, rank: int, world: int) -> list[torch.Tensor]:
    """This rank's part of each global batch of `order` (torch.tensor_split: sizes differ by at most one)."""
    return [torch.tensor_split(order[i:i + batch], world)[rank] for i in range(0, len(order), batch)]


def check_batch(batch: int, world: int) -> None:
    if batch < world:
        raise CnnkitError(f"--batch-size {batch} is the global batch, split across {world} processes: each would get "
                          f"less than one image; give --batch-size {2 * world} or more")


def loss_scale(y_global: torch.Tensor, world: int, weight: torch.Tensor | None = None) -> float:
    """The factor on a rank's summed loss that makes DDP's average of gradients equal the gradient of the
    global batch's mean loss: world / (the global batch's count, or its summed class weights when the loss is
    weighted, as CrossEntropyLoss's mean divides by). Every rank knows the global batch's labels (same order,
    labels in memory), so this needs no communication."""
    denom = float(len(y_global)) if weight is None else float(weight.cpu()[y_global.cpu()].sum())
    return world / denom


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Per-rank, per-epoch seed for augmentation and dropout: ranks draw different random numbers for their
    different images, and a restarted or resumed rank draws the same ones again without saved state."""
    return int(hashlib.sha256(f"{seed}:{epoch}:{rank}".encode()).hexdigest()[:15], 16)


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over ranks, in float64 (epoch totals: losses, counts)."""
    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


# --- exact evaluation -----------------------------------------------------------------------------------------
def shard_range(n: int, rank: int, world: int) -> range:
    """Rank `rank`'s contiguous part of n items: the first n % world ranks take one more; nothing padded."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def _comm_device() -> torch.device:
    """Where collectives' tensors must live: the rank's GPU under NCCL, else the CPU."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order, on every rank; ranks may hold different counts (sizes
    are gathered first, then each part is padded to the largest and trimmed back: all_gather needs equal shapes)."""
    _, n = world()
    if n == 1:
        return t
    dev = _comm_device()
    sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(n)]
    dist.all_gather(sizes, torch.tensor([len(t)], dtype=torch.long, device=dev))
    counts = [int(s) for s in sizes]
    top = max(counts)
    part = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=dev)
    part[:len(t)] = t.to(dev)
    parts = [torch.empty_like(part) for _ in range(n)]
    dist.all_gather(parts, part)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(t.device)


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: without --sync-bn each rank's last training
    step updated them with its own images, and evaluation must use one model."""
    if world()[1] == 1:
        return
    for b in model.buffers():
        dist.broadcast(b.data, src=0)


# --- SyncBatchNorm --------------------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """A sum over ranks whose gradient is the sum over ranks of the gradients (every rank's loss depends on the
    sum); torch.distributed.nn.functional.all_reduce is the same, deprecated since PyTorch 2.6."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the images of all ranks, on a CPU (gloo): nn.SyncBatchNorm's statistics, computed with
    two differentiable all-reduces (the sum, then the squared deviations from the global mean). In eval mode,
    or outside a process group, it is plain BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world()[1] > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        self._check_input_dim(x)
        x = x.float()  # under bf16 autocast: statistics (sums over the whole global batch) and buffers in fp32
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        stats = all_reduce(torch.cat([x.sum(dims), x.new_full((1,), x.numel() // x.size(1))]))
        count = stats[-1].detach()
        mean = stats[:-1] / count
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * count / (count - 1).clamp_min(1), m)  # unbiased, as BatchNorm
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """--sync-bn: every BatchNorm layer normalises with the global batch's statistics. On GPUs PyTorch's own
    nn.SyncBatchNorm; on a CPU `CpuSyncBatchNorm`, the same parameters and buffers (state dicts stay loadable
    into the plain model)."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        out = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, device))
    return out


# --- the learning rate ----------------------------------------------------------------------------------------
def scaled_lr(lr: float, batch: int, reference_batch: int, rule: str) -> float:
    """Goyal et al. 2017's linear scaling rule: when the minibatch grows k times, multiply the learning rate by
    k. `reference_batch` is the batch `lr` was chosen for. 'none': `lr` as given."""
    if rule == "none":
        return lr
    if rule != "linear":
        raise CnnkitError(f"--lr-scaling {rule!r} is not one of none, linear")
    return lr * batch / reference_batch


# --- a test hook ----------------------------------------------------------------------------------------------
def maybe_kill_for_test(epoch: int, batch: int, env: DistEnv, environ=None) -> None:
    """CNNKIT_TEST_KILL_AT="EPOCH:BATCH:RANK" (1-based epoch, 0-based batch): that rank kills itself (SIGKILL)
    before that batch, on the first attempt only (TORCHELASTIC_RESTART_COUNT 0), so a test can check that an
    elastic restart continues from the last checkpoint. For tests only; unset, it costs one dict lookup."""
    spec = (os.environ if environ is None else environ).get(TEST_KILL_VAR)
    if not spec or env.restart_count:
        return
    e, b, r = (int(v) for v in spec.split(":"))
    if (epoch, batch, env.rank) == (e, b, r):
        os.kill(os.getpid(), signal.SIGKILL)
