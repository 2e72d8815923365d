"""Inference speed at batch 1 and batch 64: cnnkit's engines, as a user calls them, against PyTorch, torch.compile,
and ONNX Runtime and OpenVINO used raw, as their own documentation uses them.

Models: simplecnn_bn and resnet18 at 1×28×28, 3×32×32 and 3×224×224 (random weights: speed does not depend on their
values). Every contender does the same work, the exported model's: 0–255 pixels in, normalisation (mean 0.5, std
0.25 per channel), then the network. Contenders, each checked against eager before it is timed (max |err|):
- `eager`, `torch.compile`: the nn.Module on a float tensor, under inference_mode;
- `cnnkit <engine>` (torch, onnx, openvino, auto): `Predictor(...).probs(x)` on a uint8 tensor batch, the path a
  user's `cnnkit.load_model(run).probs(x)` takes (shape check, uint8 → float, the engine, softmax), at its default
  `precision='auto'`: torch and onnx in float32, openvino in bfloat16 on CPUs with AVX-512 BF16 or AMX (as OpenVINO's
  own default), float32 elsewhere (the `precision` column); auto's probe runs during the warm-up and its cost is
  reported (`auto probe s`) beside what it chose;
- `raw onnxruntime`: `InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"pixels": x})` on a
  float32 NumPy batch, its defaults;
- `raw openvino`: `core.compile_model(path, "CPU", {"PERFORMANCE_HINT": ...})` as OpenVINO's performance-hints guide
  advises: batch 1 `LATENCY`, one synchronous call `compiled(x)`; batch 64 `THROUGHPUT`, the batch split across an
  `AsyncInferQueue` of `OPTIMAL_NUMBER_OF_INFER_REQUESTS` requests. Its default precision: bfloat16 on CPUs with bf16
  units (its max |err| then shows it), float32 elsewhere;
- `raw openvino f32`: the same with `INFERENCE_PRECISION_HINT: f32` (for reference: the `ratio f32` column).

Timing: a run is a timed loop of calls (up to `calls`, stopped after 2 s, 0.3 s with --quick) after one warm-up call; each contender runs R runs (R ≥ 3), the contenders
one after another within a round, each after a 0.3 s pause (never interleaved call by call: ONNX Runtime's and
OpenMP's worker threads spin after a call and would slow the next one), R rounds, the order turned each round. Reported: the median of the R runs' per-call times with their
min–max, never the best. `ratio` = cnnkit's fastest engine (of torch, onnx, openvino and auto, each at its default precision)
/ the fastest raw peer as its docs run it (raw onnxruntime, raw openvino at its default precision); `ratio f32` = the
same against the float32 peers (raw onnxruntime, raw openvino f32). The issue's goal: ratio ≤ 1.2 at batch 1 and 64.
Prints a table last, writes bench/results/infer_speed.json.

    python bench/infer_speed.py            # ~15 min on 2 idle cores (torch.compile compiles 12 graphs)
    python bench/infer_speed.py --quick    # 3 shorter runs, no 224×224, no eager/torch.compile rows: ~2-5 min
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import machine, print_table, spread, write_results

CASES = [("simplecnn_bn", (1, 28, 28)), ("simplecnn_bn", (3, 32, 32)), ("simplecnn_bn", (3, 224, 224)),
         ("resnet18", (1, 28, 28)), ("resnet18", (3, 32, 32)), ("resnet18", (3, 224, 224))]
BATCHES = (1, 64)
CNNKIT_ENGINES = ("torch", "onnx", "openvino", "auto")
RAW_PEERS = ("raw onnxruntime", "raw openvino")  # the peers as their docs run them: the goal's ratio
F32_PEERS = ("raw onnxruntime", "raw openvino f32")  # for reference: the ratio f32 column


def calls_per_run(shape, batch: int, quick: bool) -> int:
    """About 0.1-0.3 s of work per run on 2 cores (fewer with --quick)."""
    big = shape[1] >= 224
    n = (20 if big else 200) if batch == 1 else (2 if big else 10)
    return max(1, n // 4) if quick else n


SETTLE_S = 0.3  # idle before each run: the previous contender's worker threads stop spinning (GNU OpenMP spins
# ~0.1-0.3 s after a parallel region, ONNX Runtime's pool spins too) and would otherwise slow this one


def run_once(fn, x, calls: int, max_s: float) -> float:
    """Seconds per call: a pause (SETTLE_S), a warm-up call (caches), then `calls` calls, or fewer (one at least)
    where they would take longer than `max_s`."""
    time.sleep(SETTLE_S)
    fn(x)
    n, t0 = 0, time.perf_counter()
    while n < calls and (n == 0 or time.perf_counter() - t0 < max_s):
        fn(x)
        n += 1
    return (time.perf_counter() - t0) / n


def raw_openvino(ov, path: Path, batch: int, f32: bool):
    """OpenVINO as its performance-hints guide uses it (see the module docstring)."""
    import numpy as np

    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": "LATENCY" if batch == 1 else "THROUGHPUT"}
    if f32:
        cfg["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(str(path), "CPU", cfg)
    if batch == 1:
        return lambda x: compiled(x)[0]
    queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    outs: dict = {}
    queue.set_callback(lambda req, i: outs.__setitem__(i, req.get_output_tensor(0).data.copy()))

    def run(x):
        parts = np.array_split(x, len(queue))
        for i, part in enumerate(parts):
            queue.start_async({0: part}, i)
        queue.wait_all()
        return np.concatenate([outs[i] for i in range(len(parts))])

    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter runs, no 224×224, no eager or torch.compile rows")
    p.add_argument("--runs", type=int, default=3, help="timed runs per contender (median and min–max; at least 3)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (it needs a C++ compiler)")
    args = p.parse_args()
    if args.runs < 3:
        p.error("--runs must be at least 3: a median of fewer is not a measurement")

    import numpy as np
    import openvino as ov
    import onnxruntime as ort
    import torch

    import cnnkit
    from cnnkit.export import export_model
    from cnnkit.preprocess import Preprocess
    from cnnkit.run import Predictor

    tmp = Path(tempfile.mkdtemp())
    results, ratios = [], []
    cases = [c for c in CASES if not (args.quick and c[1][1] == 224)]
    for name, shape in cases:
        torch.manual_seed(0)
        net = cnnkit.create_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1:]).eval()
        pre = Preprocess(shape[0], shape[1:], (0.5,) * shape[0], (0.25,) * shape[0])
        model = torch.nn.Sequential(pre.module(), net).eval()  # what the ONNX file holds
        classes = [str(i) for i in range(10)]
        onnx_path = tmp / f"{name}-{shape[1]}.onnx"
        export_model(net, pre, onnx_path, "onnx", classes=classes)
        compiled = None
        if not (args.quick or args.no_compile):
            compiled = torch.compile(model)
        base = Predictor(net, pre, classes, name=name)  # exports its ONNX file once, for all its engines
        preds = {engine: base.with_engine(engine) for engine in CNNKIT_ENGINES}
        for batch in BATCHES:
            xu8 = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8)  # what cnnkit's Predictor takes
            xf = xu8.float()  # what the nn.Module takes
            xn = xf.numpy()  # what ONNX Runtime and OpenVINO take
            with torch.inference_mode():
                ref = model(xf)
            ref_p = torch.softmax(ref, 1)
            fns: dict[str, tuple] = {}  # name -> (fn, input, reference)

            def module_fn(m):
                def f(x):
                    with torch.inference_mode():
                        return m(x)
                return f

            if not args.quick:  # (cnnkit torch is eager plus cnnkit's few microseconds)
                fns["eager"] = (module_fn(model), xf, ref)
            if compiled is not None:
                fns["torch.compile"] = (module_fn(compiled), xf, ref)
            for engine in CNNKIT_ENGINES:
                fns[f"cnnkit {engine}"] = (preds[engine].probs, xu8, ref_p)
            sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            fns["raw onnxruntime"] = (lambda x, s=sess: s.run(None, {"pixels": x})[0], xn, ref)
            fns["raw openvino f32"] = (raw_openvino(ov, onnx_path, batch, f32=True), xn, ref)
            fns["raw openvino"] = (raw_openvino(ov, onnx_path, batch, f32=False), xn, ref)
            raw_precision = {"bf16": "bf16", "f32": "fp32"}.get(  # what OpenVINO's default compiles to here
                ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name(), "?")
            t0 = time.perf_counter()
            errs = {k: float(np.abs(np.asarray(fn(x)) - r.numpy()).max()) for k, (fn, x, r) in fns.items()}
            setup_s = time.perf_counter() - t0  # includes torch.compile's compilation and auto's probe
            calls = calls_per_run(shape, batch, args.quick)
            times: dict[str, list[float]] = {k: [] for k in fns}
            names = list(fns)
            for i in range(args.runs):  # the order turns each round: no contender always follows the same one
                for k in names[i % len(names):] + names[:i % len(names)]:
                    fn, x, _r = fns[k]
                    times[k].append(run_once(fn, x, calls, 0.3 if args.quick else 2.0))
            auto = preds["auto"].auto_choices[batch.bit_length()]
            for k, ts in times.items():
                s = spread([t * 1e3 for t in ts])
                prec = auto["precision"] if k == "cnnkit auto" else preds[k[7:]].precision if k.startswith("cnnkit ") \
                    else raw_precision if k == "raw openvino" else "fp32"
                r = {"model": name, "input": "x".join(map(str, shape)), "batch": batch, "engine": k, "precision": prec,
                     "ms": s["median"], "ms_min": s["min"], "ms_max": s["max"], "runs": s["runs"], "calls": calls,
                     "images_per_s": batch / statistics.median(ts), "max_abs_err": errs[k]}
                if k == "cnnkit auto":
                    r.update(auto_chose=auto["engine"], auto_probe_s=auto["probe_s"], auto_ms=auto["ms"])
                results.append(r)
                print(f"{name} {r['input']} batch {batch} {k}: {r['ms']:.3f} ms [{r['ms_min']:.3f}-"
                      f"{r['ms_max']:.3f}], {r['images_per_s']:.0f} img/s, max |err| {errs[k]:.1e}", flush=True)
            med = {k: statistics.median(v) for k, v in times.items()}
            best = min((f"cnnkit {e}" for e in CNNKIT_ENGINES), key=med.get)  # auto too: a user's --engine auto
            peer = min(RAW_PEERS, key=med.get)
            peer_f32 = min(F32_PEERS, key=med.get)
            ratios.append({"model": name, "input": "x".join(map(str, shape)), "batch": batch, "cnnkit_best": best,
                           "cnnkit_precision": auto["precision"] if best == "cnnkit auto" else preds[best[7:]].precision,
                           "cnnkit_ms": med[best] * 1e3, "peer": peer, "peer_ms": med[peer] * 1e3,
                           "ratio": med[best] / med[peer], "peer_f32": peer_f32,
                           "ratio_f32": med[best] / med[peer_f32], "auto_chose": auto["engine"],
                           "auto_probe_s": auto["probe_s"], "setup_s": setup_s,
                           "goal_met": med[best] / med[peer] <= 1.2})
    m = machine()
    m.update(onnxruntime=ort.__version__, openvino=ov.__version__)
    path = write_results("infer_speed_quick" if args.quick else "infer_speed",
                         {"quick": args.quick, "runs": args.runs, "versions": {"onnxruntime": ort.__version__,
                                                                                "openvino": ov.__version__},
                          "results": results, "ratios": ratios})
    print(f"\nInference on the CPU ({m['cpu']}, {m['cores']} cores, avx512 {m['avx512']}, torch {m['torch']}, "
          f"onnxruntime {ort.__version__}, openvino {ov.__version__}); ms per call: median [min-max] of "
          f"{args.runs} runs. Results: {path}")
    for r in results:
        r["ms [min-max]"] = f"{r['ms']:.3g} [{r['ms_min']:.3g}-{r['ms_max']:.3g}]"
    print_table(results, [("model", "model"), ("input", "input"), ("batch", "batch"), ("engine", "engine"),
                          ("precision", "precision"), ("ms [min-max]", "ms [min-max]"), ("images_per_s", "img/s"),
                          ("max_abs_err", "max |err|"),
                          ("auto_chose", "auto chose")])
    print("\ncnnkit's fastest engine (Predictor.probs on a uint8 batch, default precision) / the fastest raw peer as "
          "its docs run it, OpenVINO's default precision included (goal: <= 1.2); ratio f32: against the float32 peers")
    print_table(ratios, [("model", "model"), ("input", "input"), ("batch", "batch"), ("cnnkit_best", "cnnkit best"),
                         ("cnnkit_precision", "precision"), ("cnnkit_ms", "ms"), ("peer", "fastest peer"),
                         ("peer_ms", "peer ms"), ("ratio", "ratio"), ("peer_f32", "fastest f32 peer"),
                         ("ratio_f32", "ratio f32"),
                         ("auto_chose", "auto chose"), ("auto_probe_s", "auto probe s")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
