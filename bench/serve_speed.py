"""Serving speed (issue 14): `cnnkit serve` against LitServe and against `cnnkit predict` as a command.

Two trained runs (digits at 32×32, one epoch: simplecnn and resnet18; trained once under --workdir and reused).
Contenders, each server its own process, started one at a time on a free loopback port and waited for:
  cnnkit serve         `python -m cnnkit serve NAME=RUN --port P`, its defaults (dynamic batching: up to 32 requests,
                       no added delay); fed as its contract and TorchServe's inference API feed it: POST
                       /predictions/{model} with the raw PNG as the body
  LitServe             a LitAPI written as LitServe's documentation writes one (setup / decode_request / predict /
                       encode_response), max_batch_size and batch_timeout set to cnnkit serve's batching (read from
                       its GET /models/{model}), loading the same run with `cnnkit.load_model` and decoding with its
                       `image_bytes`, so both serve the same model and preprocessing; fed as LitServe's
                       documentation feeds an image classifier: POST /predict with JSON {"image_data": base64 PNG}.
                       The server file is written to WORKDIR/litserve_server.py.
  LitServe (defaults)  the same file with LitAPI's defaults (max_batch_size 1: no batching). Why: with batching on
                       and batch_timeout 0, LitServe's inference worker polls its queue without blocking and keeps
                       0.8-1 core busy while idle (measured here, "idle CPU"); 1 ms polling (timeout > 0) ~0.2.
  cnnkit predict       `python -m cnnkit predict RUN IMG --json`, one image per command, start-up included.
The load generator is a second process (asyncio, raw HTTP/1.1 on keep-alive connections: light on 2 cores): at
each concurrency C it keeps C requests in flight until --requests are answered, after a warm-up. Every request
body is one of 16 real digit PNGs (8×8, from scikit-learn's digits). Latency: request written to answer read.
Requests/s: timed requests / wall time. Each (server, model, concurrency) is measured in --rounds rounds, a
fresh server each round, the contenders interleaved within a round; figures are the median (min–max) over rounds.

Correctness: before timing, each server's answer for every pool image must equal `cnnkit predict --json`'s
(classes in order, probabilities within 1e-5), and every distinct answer seen under load is checked the same way.
Torch threads: OMP_NUM_THREADS and MKL_NUM_THREADS = --threads (default: the cores) in the environment of every
contender process (LitServe's spawned inference worker inherits it); the load generator runs no torch.

    python bench/serve_speed.py            # ~6 min on 2 cores (+ ~5 the first time: training); serve_speed.json
    python bench/serve_speed.py --quick    # 1 round, 48 requests a level (serve_speed_quick.json)
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, spread, write_results

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("simplecnn", "resnet18")
SERVERS = ("cnnkit serve", "LitServe", "LitServe (defaults)")  # the last: LitAPI() as is, no batching
POOL = 16  # distinct PNGs the load generator cycles through
TOL = 1e-5

LITSERVE_SERVER = '''\
"""LitServe serving a cnnkit run, as LitServe's documentation writes a server (written by bench/serve_speed.py).
    python litserve_server.py RUN_DIR PORT MAX_BATCH_SIZE BATCH_TIMEOUT_S"""
import base64
import sys

import litserve as ls
import torch

import cnnkit


class CnnkitLitAPI(ls.LitAPI):
    def setup(self, device):
        self.model = cnnkit.load_model(self.run_dir)  # the run's weights, preprocessing, classes, temperature
        print(f"torch threads {torch.get_num_threads()}", file=sys.stderr, flush=True)

    def decode_request(self, request):
        image = base64.b64decode(request["image_data"])
        return torch.from_numpy(self.model.image_bytes(image))  # uint8 C×H×W at the model's size, decoded as
                                                                 # cnnkit serve decodes an upload

    def predict(self, x):
        batch = x if x.dim() == 4 else x[None]  # batched: N×C×H×W as LitServe stacked them; else one image
        sys.stderr.write(f"\\nbatch {len(batch)}\\n")  # the bench's only addition: batch sizes, to the log
        return self.model.probs(batch)

    def encode_response(self, output):
        return dict(self.model.top(output.reshape(1, -1), 3)[0])  # top 3, like cnnkit serve


if __name__ == "__main__":
    run, port, batch, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    api = CnnkitLitAPI(max_batch_size=batch, batch_timeout=timeout)
    api.run_dir = run
    server = ls.LitServer(api, accelerator="cpu")
    server.run(host="127.0.0.1", port=port, generate_client_file=False)
'''


# --- the load generator (a second process: `serve_speed.py _load SPEC_JSON`) --------------------------------
async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    status = int((await reader.readline()).split()[1])
    length, chunked, close = None, False, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode("latin-1").partition(":")
        k, v = k.strip().lower(), v.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "transfer-encoding" and "chunked" in v:
            chunked = True
        elif k == "connection" and v == "close":
            close = True
    if not chunked:
        return status, await reader.readexactly(length or 0), close
    body = b""
    while (size := int((await reader.readline()).strip(), 16)):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readline()
    return status, body, close


async def _load(spec: dict) -> dict:
    host, port, conc = "127.0.0.1", spec["port"], spec["concurrency"]
    reqs = []
    for png in spec["pngs"]:  # base64 text
        if spec["kind"].startswith("LitServe"):
            body, ctype, path = json.dumps({"image_data": png}).encode(), "application/json", "/predict"
        else:
            body, ctype, path = base64.b64decode(png), "image/png", f"/predictions/{spec['model']}"
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        reqs.append(head + body)
    lat: list[float] = []
    errors: dict[str, int] = {}
    answers: dict[int, set] = {}
    conns: list = [None] * conc

    async def worker(w: int, counter, n: int, record: bool):
        while (i := next(counter)) < n:
            t0 = time.perf_counter()
            try:
                if conns[w] is None:
                    conns[w] = await asyncio.open_connection(host, port)
                reader, writer = conns[w]
                writer.write(reqs[i % len(reqs)])
                status, body, close = await asyncio.wait_for(_read_response(reader), spec["timeout"])
                if close:
                    writer.close()
                    conns[w] = None
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                status, body = type(e).__name__, b""
                if conns[w] is not None:
                    conns[w][1].close()
                conns[w] = None
            dt = time.perf_counter() - t0
            if not record:
                continue
            if status == 200:
                lat.append(dt)
                answers.setdefault(i % len(reqs), set()).add(body.decode())
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    for n, record in ((spec["warmup"], False), (spec["requests"], True)):
        counter = itertools.count()
        t0, c0 = time.perf_counter(), cpu()
        await asyncio.gather(*(worker(w, counter, n, record) for w in range(conc)))
        wall = time.perf_counter() - t0
    return {"latencies": lat, "wall_s": wall, "errors": errors, "client_cpu_s": cpu() - c0,
            "answers": {str(k): sorted(v) for k, v in answers.items()}}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


# --- the orchestrator ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_threads(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONPATH": str(ROOT)}


def train_runs(work: Path) -> dict[str, Path]:
    runs = {}
    for model in MODELS:
        run = work / "runs" / f"digits-{model}"
        if not (run / "model.json").is_file():
            print(f"training {model} (digits, 32 px, 1 epoch) into {run}", flush=True)
            subprocess.run([sys.executable, "-m", "cnnkit", "train", "--data", "digits", "--model", model,
                            "--img-size", "32", "--epochs", "1", "--out", str(run), "--no-report", "--json"],
                           check=True, stdout=subprocess.DEVNULL, cwd=work)
        runs[model] = run
    return runs


def write_pool(work: Path) -> list[Path]:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    out = []
    for i in range(POOL):  # the first 16 digits: 0–9, then 0–5
        p = work / "pngs" / f"digit{i:02d}-{d.target[i]}.png"
        if not p.is_file():
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.rint(d.images[i] * (255 / 16)).astype(np.uint8), "L").save(p)
        out.append(p)
    return out


def reference(run: Path, pngs: list[Path], threads: int) -> list[list[tuple[str, float]]]:
    out = subprocess.run([sys.executable, "-m", "cnnkit", "predict", str(run), *map(str, pngs), "--json",
                          "--top-k", "3"], capture_output=True, text=True, check=True, env=env_threads(threads))
    return [[(t["class"], t["probability"]) for t in p["top"]] for p in json.loads(out.stdout)["predictions"]]


def check(answer: dict, ref: list[tuple[str, float]], what: str) -> float:
    """An answer {class: p} (most probable first) against the reference's top 3; the largest |Δp|."""
    got = list(answer.items())
    if [c for c, _ in got] != [c for c, _ in ref]:
        raise SystemExit(f"{what}: classes {got} differ from cnnkit predict's {ref}")
    err = max(abs(p - q) for (_, p), (_, q) in zip(got, ref))
    if err > TOL:
        raise SystemExit(f"{what}: probabilities {got} differ from cnnkit predict's {ref} by {err:.2g} > {TOL}")
    return err


class Server:
    """One contender server process (its own session, so the whole tree stops with it)."""

    def __init__(self, kind: str, model: str, run: Path, work: Path, threads: int, batching: dict | None):
        self.kind, self.model, self.port = kind, model, free_port()
        self.log = work / "logs" / f"{'-'.join(kind.replace('(', '').replace(')', '').split())}-{model}-{self.port}.log"
        self.log.parent.mkdir(exist_ok=True)
        if kind == "LitServe (defaults)":
            batching = {"batch": 1, "timeout_s": 0.0}
        if kind == "cnnkit serve":
            cmd = [sys.executable, "-m", "cnnkit", "serve", f"{model}={run}", "--port", str(self.port)]
            self.ping = "/ping"
        else:
            script = work / "litserve_server.py"
            script.write_text(LITSERVE_SERVER)
            cmd = [sys.executable, str(script), str(run), str(self.port), str(batching["batch"]),
                   str(batching["timeout_s"])]
            self.ping = "/health"
        t0 = time.perf_counter()
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, cwd=work, env=env_threads(threads), stdout=log, stderr=log,
                                         start_new_session=True)
        self.wait_ready()
        self.startup_s = time.perf_counter() - t0

    def wait_ready(self, limit: float = 180) -> None:
        import httpx

        t_end = time.perf_counter() + limit
        while time.perf_counter() < t_end:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.kind} ({self.model}) exited {self.proc.returncode}:\n"
                                 + self.log.read_text()[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{self.ping}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{self.kind} ({self.model}) not ready after {limit:.0f} s; log {self.log}")

    def predict(self, png: Path) -> dict:
        import httpx

        if self.kind.startswith("LitServe"):
            r = httpx.post(f"http://127.0.0.1:{self.port}/predict",
                           json={"image_data": base64.b64encode(png.read_bytes()).decode()}, timeout=30)
        else:
            r = httpx.post(f"http://127.0.0.1:{self.port}/predictions/{self.model}", content=png.read_bytes(),
                           headers={"Content-Type": "image/png"}, timeout=30)
        r.raise_for_status()
        return r.json()

    def batching(self) -> dict:
        """cnnkit serve's own batching (TorchServe's fields: batchSize, maxBatchDelay in ms)."""
        import httpx

        m = httpx.get(f"http://127.0.0.1:{self.port}/models/{self.model}", timeout=10).json()[0]
        return {"batch": int(m["batchSize"]), "timeout_s": float(m["maxBatchDelay"]) / 1000,
                "source": "cnnkit serve's GET /models/{model}"}

    def batch_sizes(self) -> list[int]:
        """The sizes of the last 20 batches the server ran."""
        if self.kind.startswith("LitServe"):
            return [int(n) for n in re.findall(r"^batch (\d+)$", self.log.read_text(), re.M)][-20:]
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.port}/models/{self.model}", timeout=10).json()[0]["recentBatchSizes"]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {pid}, True
    while grew:
        new = {p for p, (pp, _) in stats.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    return sum(stats[p][1] for p in tree if p in stats)


def load(server: Server, pngs: list[Path], conc: int, n: int, timeout: float) -> dict:
    spec = {"port": server.port, "kind": server.kind, "model": server.model, "concurrency": conc,
            "requests": n, "warmup": max(16, 2 * conc), "timeout": timeout,
            "pngs": [base64.b64encode(p.read_bytes()).decode() for p in pngs]}
    out = subprocess.run([sys.executable, __file__, "_load"], input=json.dumps(spec), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def time_cli(run: Path, png: Path, repeats: int, threads: int) -> list[float]:
    cmd = [sys.executable, "-m", "cnnkit", "predict", str(run), str(png), "--json"]
    subprocess.run(cmd, capture_output=True, check=True, env=env_threads(threads))  # warm the file cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env_threads(threads))
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 round, 48 requests a level, 2 command runs")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cnnkit-serve-bench"))
    p.add_argument("--requests", type=int, default=None, help="timed requests per level (default 200; quick 48)")
    p.add_argument("--rounds", type=int, default=None, help="default 3; quick 1")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads in every contender")
    p.add_argument("--timeout", type=float, default=60, help="seconds before a request counts as an error")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"a subset of {','.join(SERVERS)}")
    p.add_argument("--batching", default=None, metavar="N,MS",
                   help="LitServe's max_batch_size and batch_timeout (default: cnnkit serve's, read from its /models)")
    args = p.parse_args()
    n_req = args.requests or (48 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 3)
    cli_repeats = 2 if args.quick else 5
    levels = [int(c) for c in args.concurrency.split(",")]
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()
    runs = train_runs(work)
    pngs = write_pool(work)
    refs = {m: reference(runs[m], pngs, args.threads) for m in MODELS}
    raw: dict[tuple, list[dict]] = {}
    startup: dict[tuple, list[float]] = {}
    max_err: dict[tuple, float] = {}
    servers = [k for k in SERVERS if k in args.servers.split(",")]
    batching = None
    if args.batching:
        b, ms = args.batching.split(",")
        batching = {"batch": int(b), "timeout_s": float(ms) / 1000, "source": "--batching"}
    for r in range(rounds):
        for model in MODELS:
            for kind in servers:
                srv = Server(kind, model, runs[model], work, args.threads, batching)
                try:
                    if kind == "cnnkit serve" and batching is None:
                        batching = srv.batching()
                    startup.setdefault((kind, model), []).append(srv.startup_s)
                    key = (kind, model)
                    for png, ref in zip(pngs, refs[model]):
                        max_err[key] = max(max_err.get(key, 0.0), check(srv.predict(png), ref, f"{kind} {png.name}"))
                    c0 = tree_cpu_s(srv.proc.pid)
                    time.sleep(2)
                    idle_cpu = (tree_cpu_s(srv.proc.pid) - c0) / 2
                    for conc in levels:
                        c0 = tree_cpu_s(srv.proc.pid)
                        res = load(srv, pngs, conc, n_req, args.timeout)
                        res["server_cpu_s"] = tree_cpu_s(srv.proc.pid) - c0
                        res["idle_cpu"] = idle_cpu
                        res["batch_sizes"] = srv.batch_sizes()
                        for i, bodies in res.pop("answers").items():
                            for b in bodies:
                                max_err[key] = max(max_err[key], check(json.loads(b), refs[model][int(i)],
                                                                       f"{kind} under load ({pngs[int(i)].name})"))
                        lat = res.pop("latencies")
                        fig = {"p50_ms": statistics.median(lat) * 1e3 if lat else None,
                               "p99_ms": pct(lat, 0.99) * 1e3 if lat else None,
                               "rps": len(lat) / res["wall_s"], **res}
                        raw.setdefault((kind, model, conc), []).append(fig)
                        print(f"round {r + 1}/{rounds} {kind} {model} c={conc}: p50 {fig['p50_ms']:.1f} ms, "
                              f"p99 {fig['p99_ms']:.1f} ms, {fig['rps']:.0f} req/s, mean batch "
                              f"{statistics.mean(res['batch_sizes'] or [0]):.1f}, idle CPU {idle_cpu:.2f} cores"
                              + (f", errors {res['errors']}" if res["errors"] else ""), flush=True)
                finally:
                    srv.stop()
    cli = {m: time_cli(runs[m], pngs[3], cli_repeats, args.threads) for m in MODELS}

    results, rows = [], []
    for (kind, model, conc), figs in raw.items():
        r = {"server": kind, "model": model, "concurrency": conc,
             **{k: spread([f[k] for f in figs]) for k in ("p50_ms", "p99_ms", "rps")},
             "errors": sum(sum(f["errors"].values()) for f in figs),
             "client_cpu_ms_per_request": statistics.median(f["client_cpu_s"] for f in figs) * 1e3 / n_req,
             "server_cpu_ms_per_request": statistics.median(f["server_cpu_s"] / (n_req + max(16, 2 * conc))
                                                            for f in figs) * 1e3,
             "server_idle_cpu_cores": statistics.median(f["idle_cpu"] for f in figs),
             "mean_batch_last20": statistics.median(statistics.mean(f["batch_sizes"] or [0]) for f in figs),
             "startup_s": spread(startup[(kind, model)]), "max_abs_err": max_err[(kind, model)], "rounds": figs}
        results.append(r)
    for m in MODELS:
        s = spread([t * 1e3 for t in cli[m]])
        results.append({"server": "cnnkit predict (command)", "model": m, "concurrency": 1, "p50_ms": s,
                        "rps": spread([1 / t for t in cli[m]]), "runs_s": cli[m]})

    def cell(d: dict | None, fmt: str) -> str:
        if not d:
            return "-"
        if d["runs"] == 1:
            return format(d["median"], fmt)
        return f"{d['median']:{fmt}} ({d['min']:{fmt}}–{d['max']:{fmt}})"

    for r in results:
        rows.append({"server": r["server"], "model": r["model"], "c": str(r["concurrency"]),
                     "p50": cell(r["p50_ms"], ".1f"), "p99": cell(r.get("p99_ms"), ".1f"),
                     "rps": cell(r["rps"], ".0f" if r["rps"]["median"] >= 10 else ".2f"),
                     "err": str(r.get("errors", 0)),
                     "batch": f"{r['mean_batch_last20']:.1f}" if "mean_batch_last20" in r else "-",
                     "cpu": f"{r['server_cpu_ms_per_request']:.1f}" if "server_cpu_ms_per_request" in r else "-"})
    mach = machine()
    flags = Path("/proc/cpuinfo").read_text().split("\nflags", 1)[-1].split("\n", 1)[0].split()
    mach.update({"avx2": "avx2" in flags, "avx512_bf16": "avx512_bf16" in flags, "contender_torch_threads": args.threads})
    import litserve

    payload = {"machine": mach, "quick": args.quick, "requests_per_level": n_req, "rounds": rounds,
               "concurrency": levels, "batching": batching, "litserve": litserve.__version__, "tolerance": TOL,
               "runs": {m: str(runs[m]) for m in MODELS}, "load_average": {"before": load_before, "after": os.getloadavg()},
               "results": results}
    path = write_results("serve_speed_quick" if args.quick else "serve_speed", payload)
    print(f"\nServing digits runs (32×32) on the CPU: {mach['cpu']}, {mach['cores']} cores "
          f"(avx2 {mach['avx2']}, avx512 {mach['avx512']}, avx512_bf16 {mach['avx512_bf16']}), torch {mach['torch']}, "
          f"litserve {litserve.__version__}; torch threads {args.threads} in every contender (OMP_NUM_THREADS). "
          f"Batching: max {batching['batch']} requests, {batching['timeout_s'] * 1e3:g} ms (cnnkit serve's defaults, "
          f"LitServe set to match). {n_req} timed requests per level, median (min–max) over {rounds} round(s); "
          f"command: median (min–max) of {cli_repeats} runs. Load average before/after: "
          f"{load_before[0]:.2f}/{os.getloadavg()[0]:.2f}. Results: {path}\n")
    print("| server | model | concurrency | p50 ms | p99 ms | requests/s | mean batch | server CPU ms/req | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['server']} | {row['model']} | {row['c']} | {row['p50']} | {row['p99']} | {row['rps']} | "
              f"{row['batch']} | {row['cpu']} | {row['err']} |")
    print("\nmean batch: the last 20 batches of a level; server CPU: the server's process tree, warm-up included. "
          "Idle CPU (cores) before load: " + ", ".join(
              f"{r['server']} {r['model']} {r['server_idle_cpu_cores']:.2f}" for r in results
              if r.get("concurrency") == levels[0] and "server_idle_cpu_cores" in r))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_load"]:
        print(json.dumps(asyncio.run(_load(json.loads(sys.stdin.read())))))
        raise SystemExit(0)
    raise SystemExit(main())
