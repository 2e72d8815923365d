"""Data-parallel training for real: torchrun processes with gloo on loopback, on the CPU (no GPU needed).

Each launch test starts `python -m torch.distributed.run ... -m cnnkit train` (or `cnnkit train --nproc 2`)
as a subprocess with a timeout, so a hang fails the test instead of stalling the suite. Tiny data throughout:
digits at 8x8, one or two epochs, fastcnn (BatchNorm, so --sync-bn matters) with its dropout set to 0.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnkit.engine import distributed as ddp
from cnnkit.errors import CnnkitError

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 150  # seconds for one launch: far above the ~15-40 s each takes on 2 shared cores; a hang fails
# no dropout (fastcnn's is set to 0), no augmentation, one epoch: the only difference left between one
# process and two is where the batch is cut and the order of the sums
# fp32 on every CPU: the runs are compared to float tolerance (bf16 autocast, the default where the CPU has it,
# rounds far more than the order of a sum)
TINY = ["--data", "digits", "--img-size", "8", "--model", "fastcnn", "--model-kwargs", '{"dropout": 0}',
        "--augment", "none", "--no-report", "--no-calibrate", "--precision", "fp32"]
# Weights after one epoch (23 AdamW steps) of 2 processes with --sync-bn against 1 process: measured max
# |difference| 8.0e-7 (largest relative 2.5e-6). Not zero: the all-reduce adds the two halves' gradients (and
# BatchNorm sums) in another order than one process's reduction over the whole batch, and float32 addition is not
# associative. 1e-5 is 12x that; without --sync-bn the difference is 1e-3 or more (test below), so it discriminates.
ATOL = 1e-5


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CNNKIT_DIST_TIMEOUT="60")
    env.pop("CNNKIT_TEST_KILL_AT", None)
    env.update(extra)
    return env


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _start(cmd: list[str], **env) -> subprocess.Popen:
    # a session of its own: on a timeout the launcher and every worker it started are killed together
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    deadline, outs = time.monotonic() + timeout, []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return outs


def _run(cmd: list[str], timeout: float = TIMEOUT, **env) -> subprocess.CompletedProcess:
    p = _start(cmd, **env)
    (out, err), = _wait([p], timeout)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The single-process reference: the same command, one process (in this one, no launcher)."""
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("one") / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out


# --- the pieces, without processes ------------------------------------------------------------------------------
@pytest.mark.parametrize("n,batch,world", [(10, 4, 2), (23, 8, 3), (7, 7, 2), (64, 64, 8)])
def test_rank_batches_cut_every_global_batch_once(n, batch, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    per_rank = [ddp.rank_batches(order, batch, r, world) for r in range(world)]
    for k, start in enumerate(range(0, n, batch)):
        parts = [per_rank[r][k] for r in range(world)]
        assert torch.equal(torch.cat(parts), order[start:start + batch])  # rank order, nothing lost or repeated
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n,world", [(187, 2), (10, 3), (2, 4)])
def test_shard_range_is_a_partition_without_padding(n, world):
    parts = [ddp.shard_range(n, r, world) for r in range(world)]
    assert [i for p in parts for i in p] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_steps_drop_only_a_last_batch_too_small_to_split():
    assert ddp.steps_per_epoch(129, 64, 1) == 2  # one process: a last batch of one is dropped (as before)
    assert ddp.steps_per_epoch(130, 64, 1) == 3
    assert ddp.steps_per_epoch(131, 64, 2) == 2  # 3 left: one rank would get a single image
    assert ddp.steps_per_epoch(132, 64, 2) == 3


@pytest.mark.parametrize("weighted", [False, True])
def test_loss_scale_makes_the_rank_average_the_global_mean(weighted):
    """Unequal shares (5 and 4 images): the mean over ranks of each rank's scaled sum is the global batch's
    mean loss, as CrossEntropyLoss computes it (with class weights: divided by the summed target weights)."""
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(9, 3, generator=g), torch.tensor([0, 1, 2, 2, 1, 0, 0, 2, 1])
    weight = torch.tensor([1.0, 2.5, 0.5]) if weighted else None
    mean = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)(logits, y)
    summed = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1, reduction="sum")
    world = 2
    parts = torch.tensor_split(torch.arange(9), world)
    ranks = [summed(logits[p], y[p]) * ddp.loss_scale(y, world, weight) for p in parts]
    assert torch.stack(ranks).mean().item() == pytest.approx(mean.item(), rel=1e-6)
    assert len(parts[0]) != len(parts[1])


def test_config_argv_gives_the_options_back():
    from cnnkit.cli import build_parser
    from cnnkit.cli.train import config_options
    from cnnkit.engine.config import config_argv

    options = {"epochs": 2, "sync_bn": True, "calibrate": False, "lr": 0.01, "model_kwargs": {"dropout": 0},
               "lr_scaling": "linear", "nproc": 2}
    args = build_parser().parse_args(["train", *config_argv(options)])
    assert config_options(args) == options


def test_linear_scaling_rule():
    assert ddp.scaled_lr(3e-3, 512, 128, "linear") == pytest.approx(1.2e-2)
    assert ddp.scaled_lr(3e-3, 512, 128, "none") == 3e-3


# --- bad input: one line, a non-zero exit, in bounded time ----------------------------------------------------
def test_nproc_above_the_cpu_cores_is_refused(capsys):
    from cnnkit.cli import main

    n = ddp.cpu_count() + 1
    assert main(["train", *TINY, "--device", "cpu", "--nproc", str(n)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cnnkit: error: --nproc {n}: this machine has {n - 1} CPU core{'s' * (n - 1 != 1)} for this "
                   f"process; give --nproc {n - 1} or fewer (each process then trains with its own core)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_nproc_above_the_gpus_is_refused():
    n = torch.cuda.device_count() + 1
    with pytest.raises(CnnkitError, match=f"--nproc {n}: this machine has {n - 1} GPU"):
        ddp.check_nproc(n, "cuda")


def test_unreachable_rendezvous_is_one_line_after_the_timeout(tmp_path):
    """Rank 1 finds nothing listening at its address; rank 0 (another address) listens but its peer never
    comes. Both stop after CNNKIT_DIST_TIMEOUT with one line naming the address (the two run side by side)."""
    ports = [_port()]
    while len(ports) < 2:
        ports += [p for p in [_port()] if p != ports[0]]
    t0 = time.monotonic()
    procs = [_start([sys.executable, "-m", "cnnkit", "train", *TINY, "--epochs", "1", "--out", str(tmp_path / f"r{r}")],
                    RANK=str(r), WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[r]),
                    CNNKIT_DIST_TIMEOUT="5")
             for r in (0, 1)]
    outs = _wait(procs, 90)
    took = time.monotonic() - t0
    for rank, (p, (_, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 2, err[-2000:]
        assert err.strip().splitlines()[-1] == (
            f"cnnkit: error: could not reach the rendezvous at 127.0.0.1:{ports[rank]} within 5 s; check "
            "--rdzv-endpoint and that every node started")
        assert not (tmp_path / f"r{rank}").exists()  # nothing written before the group was joined
    assert took < 60


def _two_nodes(port: int, extra: tuple[list[str], list[str]], out: Path, timeout: float = TIMEOUT):
    """Two torchrun invocations ("nodes" of one process each) meeting at a c10d rendezvous on loopback."""
    procs = [_start(_torchrun("--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
                              "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                              "--rdzv-id", f"cnnkit-test-{port}", "-m", "cnnkit", "train", *TINY, "--epochs", "1",
                              "--out", str(out), *extra[node]))
             for node in (0, 1)]
    outs = _wait(procs, timeout)
    return [p.returncode for p in procs], [o + e for o, e in outs]


def test_ranks_started_with_different_configurations_are_refused(tmp_path):
    codes, outs = _two_nodes(_port(), (["--lr", "0.003"], ["--lr", "0.01"]), tmp_path / "run", timeout=120)
    assert codes[0] != 0 and codes[1] != 0
    text = "\n".join(outs)
    # which node becomes rank 0 is the rendezvous's choice: either order
    lines = [f"cnnkit: error: rank 1 was started with a different configuration from rank 0 (--lr {a} on rank 0, "
             f"{b} on rank 1); start every node with the same command and the same data"
             for a, b in (("0.003", "0.01"), ("0.01", "0.003"))]
    assert any(line in text.splitlines() for line in lines), text[-3000:]
    assert not (tmp_path / "run" / "model.safetensors").exists()


# --- training on several processes ----------------------------------------------------------------------------
def test_two_processes_with_sync_bn_train_the_one_process_model(one_process, tmp_path):
    """`cnnkit train --nproc 2 --sync-bn` (torchrun's launcher, started by cnnkit): one epoch gives the
    one-process run's weights and metrics, to float tolerance."""
    out = tmp_path / "two"
    p = _run([sys.executable, "-m", "cnnkit", "train", *TINY, "--epochs", "1", "--nproc", "2", "--sync-bn",
              "--out", str(out)])
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "batch 64 (global: 32 per process x 2 processes, sync-bn)" in p.stdout  # rank 0's lines pass through
    assert p.stdout.count("model fastcnn (") == 1  # rank 0 alone prints (and writes)
    assert p.stdout.count("val_acc=") == 1 and p.stdout.count("run directory:") == 1
    assert "OMP_NUM_THREADS" not in p.stdout + p.stderr  # torchrun's banner is not the user's to read
    cfg = json.loads((out / "model.json").read_text())["train"]
    assert cfg["nproc"] == 2 and cfg["sync_bn"] is True
    diff = _max_diff(_weights(one_process), _weights(out))
    assert diff < ATOL, diff
    assert diff > 0  # two processes really ran: their sums are rounded differently
    with open(one_process / "metrics.csv") as a, open(out / "metrics.csv") as b:
        ra, rb = next(csv.DictReader(a)), next(csv.DictReader(b))
    for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert float(ra[k]) == pytest.approx(float(rb[k]), abs=1e-5), k


def test_two_nodes_on_one_machine_with_c10d_and_without_sync_bn(one_process, tmp_path):
    """Two torchrun invocations (--nnodes 2) meeting at a c10d rendezvous train one run. Without --sync-bn each
    process normalises with its half of the batch, so the weights move away from the one-process run's: the
    tolerance above is tight enough to see it."""
    out = tmp_path / "nodes"
    codes, outs = _two_nodes(_port(), ([], []), out)
    assert codes == [0, 0], "\n".join(outs)[-3000:]
    assert _epochs(out) == [1]
    cfg = json.loads((out / "model.json").read_text())["train"]
    assert cfg["nproc"] == 2 and cfg["sync_bn"] is False
    assert _max_diff(_weights(one_process), _weights(out)) > 10 * ATOL


def test_a_worker_killed_mid_epoch_restarts_from_the_last_checkpoint(tmp_path):
    """Rank 1 kills itself (SIGKILL) before batch 3 of epoch 2; torchrun restarts both (--max-restarts 1),
    they resume from epoch 1's checkpoint, and every epoch is in metrics.csv once."""
    out = tmp_path / "elastic"
    p = _run(_torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "-m", "cnnkit", "train",
                       *TINY, "--epochs", "2", "--out", str(out)), CNNKIT_TEST_KILL_AT="2:3:1")
    text = p.stdout + p.stderr
    assert p.returncode == 0, text[-3000:]
    assert f"resuming {out} after epoch 1/2" in p.stdout  # the second attempt continued, not started again
    assert "Signals.SIGKILL" in text or "-9" in text  # torchrun saw the worker killed
    assert _epochs(out) == [1, 2]
    state = torch.load(out / "train_state.pt", weights_only=False)
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]


WORKER = textwrap.dedent("""
    import json, sys, torch
    from cnnkit.data import load_data
    from cnnkit.engine import TrainConfig, Trainer, distributed as ddp

    with ddp.session("cpu") as env:
        data = load_data("digits", val_fraction=0.104, seed=0)
        cfg = TrainConfig(model="fastcnn", epochs=1, augment="none", device="cpu")
        trainer = Trainer(cfg, data, run_dir=sys.argv[1], callbacks=[])
        trainer.model.load_state_dict(torch.load(sys.argv[2]))
        loss, acc = trainer.evaluate_split(data.val)
        shard = ddp.shard_range(len(data.val), env.rank, env.world_size)
        with open(f"{sys.argv[1]}/rank{env.rank}.json", "w") as f:
            json.dump({"loss": loss, "acc": acc, "count": trainer.eval_count, "shard": len(shard),
                       "val": len(data.val)}, f)
""")


def test_exact_evaluation_of_an_odd_validation_split(tmp_path):
    """187 validation images on 2 processes: shards of 94 and 93, nothing padded in (a DistributedSampler
    would evaluate 188, one image twice); both ranks compute the same metrics, equal to one process's."""
    from cnnkit.data import load_data
    from cnnkit.engine import TrainConfig, Trainer

    data = load_data("digits", val_fraction=0.104, seed=0)
    assert len(data.val) == 187
    cfg = TrainConfig(model="fastcnn", epochs=1, augment="none", device="cpu")
    one = Trainer(cfg, data, run_dir=tmp_path, callbacks=[])
    one._train_epoch()  # trained weights (one epoch), so the accuracy is not chance
    torch.save(one.model.state_dict(), tmp_path / "w.pt")
    loss1, acc1 = one.evaluate_split(data.val)
    assert acc1 > 0.5
    (tmp_path / "worker.py").write_text(WORKER)
    p = _run(_torchrun("--standalone", "--nproc-per-node", "2", str(tmp_path / "worker.py"), str(tmp_path),
                       str(tmp_path / "w.pt")))
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["shard"], r1["shard"]) == (94, 93)
    assert r0["count"] == r1["count"] == 187
    assert (r0["loss"], r0["acc"]) == (r1["loss"], r1["acc"])  # the same gathered logits on both ranks
    assert r0["acc"] == acc1
    assert r0["loss"] == pytest.approx(loss1, rel=1e-5)


# --- what `cnnkit train --nproc N` shows of torchrun's output ---------------------------------------------------
# torchrun's stderr when both processes stopped with cnnkit's own error (recorded from a real run, shortened)
_FAILED = """\
cnnkit: error: rank 1: another process of this training stopped or cannot be reached (Connection reset by peer)
cnnkit: error: /data needs one sub-folder per class (at least 2), found 0
E1208 00:20:44.681000 3600 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 2) local_rank: 0 (pid: 3666) of binary: python
Traceback (most recent call last):
  File "torch/distributed/run.py", line 1138, in main
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
cnnkit FAILED
"""
_KILLED = """\
W1208 00:22:18.734000 4098 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 4111 closing signal SIGTERM
E1208 00:22:18.849000 4098 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) local_rank: 1 (pid: 4112) of binary: python
Traceback (most recent call last):
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
"""


def _fake_torchrun(monkeypatch, stderr: str, stdout: str = "", code: int = 1):
    """launch.run with torchrun replaced by a script that prints what torchrun printed (no processes, no torch)."""
    from cnnkit.engine import launch

    script = f"import sys; sys.stdout.write({stdout!r}); sys.stderr.write({stderr!r}); sys.exit({code})"
    monkeypatch.setattr(launch, "launch_command", lambda nproc, args, **kw: [sys.executable, "-c", script])
    monkeypatch.setattr(launch, "check_nproc", lambda nproc, device: None)
    return launch


def test_a_failed_launch_is_the_first_process_own_line(monkeypatch, tmp_path):
    launch = _fake_torchrun(monkeypatch, "epoch 1/1 ...\n" + _FAILED)
    log = tmp_path / "log.txt"
    with open(log, "w") as f, pytest.raises(CnnkitError) as e:
        launch.run(2, ["train"], log=f)
    assert str(e.value) == "/data needs one sub-folder per class (at least 2), found 0"  # the cause, not the echo
    assert log.read_text() == "epoch 1/1 ...\n"  # the processes' log passes; torchrun's report does not


def test_a_killed_process_is_named_and_torchruns_report_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNKIT_LOG_DIR", str(tmp_path / "logs"))
    launch = _fake_torchrun(monkeypatch, _KILLED)
    with open(tmp_path / "log.txt", "w") as f, pytest.raises(CnnkitError) as e:
        launch.run(2, ["train"], log=f)
    (saved,) = (tmp_path / "logs").iterdir()
    assert str(e.value) == ("training on 2 processes failed (torchrun exit status 1): the process of local rank 1 "
                            f"was killed by SIGKILL; torchrun's report is in {saved}")
    assert "ChildFailedError" in saved.read_text()
    assert (tmp_path / "log.txt").read_text() == ""


def test_a_launch_returns_rank_zeros_result(monkeypatch):
    launch = _fake_torchrun(monkeypatch, "", stdout='{"val_acc": 0.5, "run_dir": "r"}\n', code=0)
    assert launch.run(2, ["train"], log=sys.stderr) == {"val_acc": 0.5, "run_dir": "r"}


def test_sync_bn_under_bf16_autocast_trains(tmp_path):
    """--sync-bn with bf16 autocast (the default on CPUs with AVX-512 BF16): the synced statistics are taken in
    fp32, as BatchNorm's own are, and the buffers stay fp32 (bf16 activations once crashed the buffer update)."""
    out = tmp_path / "bf16"
    args = [a for a in TINY if a not in ("--precision", "fp32")]
    p = _run([sys.executable, "-m", "cnnkit", "train", *args, "--epochs", "1", "--nproc", "2", "--sync-bn",
              "--precision", "bf16", "--out", str(out)])
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert " in bf16 (--precision" in p.stdout
    w = _weights(out)
    assert all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for k, v in w.items() if "running" in k)
    with open(out / "metrics.csv") as f:
        assert float(next(csv.DictReader(f))["val_acc"]) > 0.5
