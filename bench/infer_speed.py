"""Inference speed: single-image latency (p50, p99) and batch throughput, eager vs torch.compile vs ONNX Runtime.

Models: simplecnn_bn and resnet18 at 1×28×28, 3×32×32 and 3×224×224 (random weights: speed does not depend
on their values). Every engine does the same work, the exported model's: 0–255 pixels in, normalisation
(mean 0.5, std 0.25 per channel), then the network. Every engine's output is checked against eager before it
is timed. Prints a table last and writes bench/results/infer_speed.json.

    python bench/infer_speed.py            # ~10 min on 2 cores (torch.compile compiles 12 graphs)
    python bench/infer_speed.py --quick    # fewer repeats, no 224×224
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import machine, print_table, write_results

CASES = [("simplecnn_bn", (1, 28, 28)), ("simplecnn_bn", (3, 32, 32)), ("simplecnn_bn", (3, 224, 224)),
         ("resnet18", (1, 28, 28)), ("resnet18", (3, 32, 32)), ("resnet18", (3, 224, 224))]


def timeit(fn, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (it needs a C++ compiler)")
    args = p.parse_args()

    import torch

    import cnnkit
    from cnnkit.export import export_model, onnx_session
    from cnnkit.preprocess import Preprocess

    tmp = Path(tempfile.mkdtemp())
    rows, results = [], []
    cases = [c for c in CASES if not (args.quick and c[1][1] == 224)]
    for name, shape in cases:
        big = shape[1] >= 224
        repeats = (20 if big else 100) if args.quick else (60 if big else 300)
        batch = 16 if big else 128
        torch.manual_seed(0)
        net = cnnkit.create_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1:]).eval()
        pre = Preprocess(shape[0], shape[1:], (0.5,) * shape[0], (0.25,) * shape[0])
        model = torch.nn.Sequential(pre.module(), net).eval()  # what the ONNX file holds
        x1, xb = torch.rand(1, *shape) * 255, torch.rand(batch, *shape) * 255
        with torch.inference_mode():
            ref1, refb = model(x1), model(xb)
        engines = {}

        def eager(x):
            with torch.inference_mode():
                return model(x)

        engines["eager"] = eager
        if not args.no_compile:
            compiled = torch.compile(model)

            def comp(x):
                with torch.inference_mode():
                    return compiled(x)

            t0 = time.perf_counter()
            comp(x1), comp(xb)
            compile_s = time.perf_counter() - t0
            engines["torch.compile"] = comp
        onnx_path = tmp / f"{name}-{shape[1]}.onnx"
        export_model(net, pre, onnx_path, "onnx", classes=[str(i) for i in range(10)])
        sess = onnx_session(onnx_path)
        iname = sess.get_inputs()[0].name
        engines["onnxruntime"] = lambda x: torch.from_numpy(sess.run(None, {iname: x.numpy()})[0])
        for engine, fn in engines.items():
            err = max(float((fn(x1) - ref1).abs().max()), float((fn(xb) - refb).abs().max()))
            lat = timeit(lambda: fn(x1), repeats)
            thr = timeit(lambda: fn(xb), max(5, repeats // 10), warmup=2)
            r = {"model": name, "input": "x".join(map(str, shape)), "engine": engine,
                 "p50_ms": statistics.median(lat) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
                 "batch": batch, "images_per_s": batch / statistics.median(thr), "max_abs_err": err}
            if engine == "torch.compile":
                r["compile_s"] = compile_s
            results.append(r)
            rows.append(r)
            print(f"{name} {r['input']} {engine}: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
                  f"{r['images_per_s']:.0f} img/s", flush=True)
    path = write_results("infer_speed_quick" if args.quick else "infer_speed", {"quick": args.quick, "results": results})
    m = machine()
    print(f"\nInference on the CPU ({m['cpu']}, {m['cores']} cores, torch {m['torch']}); latency = one image; "
          f"throughput = batch 128 (16 at 224×224). Results: {path}")
    print_table(rows, [("model", "model"), ("input", "input"), ("engine", "engine"), ("p50_ms", "p50 ms"),
                       ("p99_ms", "p99 ms"), ("images_per_s", "batch img/s"), ("max_abs_err", "max |err|")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
