"""How fast is the convolution, written four ways? Forward and backward, on the CPU, in float32.

    .venv/bin/python bench/conv_speed.py                 # ~1–2 minutes on 2 cores, most of it the loop
    .venv/bin/python bench/conv_speed.py --loop-images 8 # time the loop on 8 of case (a)'s 64 images, ×8
    .venv/bin/python bench/conv_speed.py --threads 1     # one thread for torch and for NumPy's BLAS

Methods: the literal loop (`cnnkit.ops.conv2d_loop`), the vectorised NumPy `cnnkit.ops.conv2d` (im2col +
one BLAS matmul), `torch.nn.functional.conv2d` (its backward: `aten.convolution_backward`, what autograd
calls), and `scipy.signal.correlate2d`, which takes one channel and one kernel at a time (so a loop over
image × filter × channel; its backward is `convolve2d` 'full' for the input, `correlate2d` for the weights).

Cases: (a) a 64×3×32×32 batch, 32 filters of 3×3, padding 1, with bias; (b) the 512×512 `camera` photo,
1×1×512×512, with sobel_x, no padding, no bias. Every method is checked against torch before it is timed.
Times: each method runs in rounds, interleaved with the others (so a busy neighbour slows them all alike);
the table shows the best round, the JSON also the median. The loop runs once (it takes seconds).
Prints a table; writes bench/results/conv_speed.json (conv_speed_threads1.json with --threads 1).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import machine, print_table, write_results  # also puts the checkout on sys.path
from scipy.signal import convolve2d, correlate2d

from cnnkit.ops import conv2d, conv2d_backward, conv2d_loop, conv2d_loop_backward
METHODS = {"loop": "literal loop (conv2d_loop)", "numpy": "NumPy conv2d (im2col + matmul)",
           "torch": "torch F.conv2d (CPU)", "scipy": "scipy correlate2d (per channel)"}


# --- the four implementations: forward(x, w, b, pad) and backward(g, x, w, b, pad) -> (dx, dw, db) ---------

def torch_forward(x, w, b, pad):
    return F.conv2d(x, w, b, padding=pad)


def torch_backward(g, x, w, b, pad):
    return torch.ops.aten.convolution_backward(g, x, w, [w.shape[0]] if b is not None else None, [1, 1], [pad, pad],
                                               [1, 1], False, [0, 0], 1, [True, True, b is not None])


def scipy_forward(x, w, b, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, o = x.shape[0], w.shape[0]
    out = np.empty((n, o, xp.shape[2] - w.shape[2] + 1, xp.shape[3] - w.shape[3] + 1), x.dtype)
    for i in range(n):
        for f in range(o):
            out[i, f] = sum(correlate2d(xp[i, c], w[f, c], mode="valid") for c in range(x.shape[1]))
            if b is not None:
                out[i, f] += b[f]
    return out


def scipy_backward(g, x, w, b, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, wd = x.shape[2:]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            full = sum(convolve2d(g[i, f], w[f, c], mode="full") for f in range(w.shape[0]))
            dx[i, c] = full[pad:pad + h, pad:pad + wd]
            for f in range(w.shape[0]):
                dw[f, c] += correlate2d(xp[i, c], g[i, f], mode="valid")
    return dx, dw, (g.sum(axis=(0, 2, 3)) if b is not None else None)


def impls(pad):
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    return {
        "loop": (lambda x, w, b: conv2d_loop(x, w, b, padding=pad),
                 lambda g, x, w, b: conv2d_loop_backward(g, x, w, b, padding=pad)),
        "numpy": (lambda x, w, b: conv2d(x, w, b, padding=pad),
                  lambda g, x, w, b: conv2d_backward(g, x, w, b, padding=pad)),
        "torch": (lambda x, w, b: torch_forward(t(x), t(w), t(b), pad),
                  lambda g, x, w, b: torch_backward(t(g), t(x), t(w), t(b), pad)),
        "scipy": (lambda x, w, b: scipy_forward(x, w, b, pad),
                  lambda g, x, w, b: scipy_backward(g, x, w, b, pad)),
    }


# --- measuring -------------------------------------------------------------------------------------------

def as_numpy(r):
    if isinstance(r, (tuple, list)):
        return [as_numpy(a) for a in r]
    return None if r is None else (r.numpy() if isinstance(r, torch.Tensor) else np.asarray(r))


def check(name, got, ref, what):
    for a, b in zip(as_numpy(got) if isinstance(got, (tuple, list)) else [as_numpy(got)],
                    as_numpy(ref) if isinstance(ref, (tuple, list)) else [as_numpy(ref)]):
        if a is None and b is None:
            continue
        err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
        if not err < 1e-4:
            raise SystemExit(f"{name} {what} differs from torch: relative error {err:.2e}")


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def run_case(label, x, w, b, pad, *, rounds, loop_images):
    g = np.random.default_rng(1).standard_normal((x.shape[0], w.shape[0], x.shape[2] + 2 * pad - w.shape[2] + 1,
                                                  x.shape[3] + 2 * pad - w.shape[3] + 1)).astype(np.float32)
    fns = impls(pad)
    ref_f, ref_b = fns["torch"][0](x, w, b), fns["torch"][1](g, x, w, b)
    res = {}
    # the loop: once, on all images or the first `loop_images` (the loop over images is linear in N)
    k = min(loop_images or x.shape[0], x.shape[0])
    tf, yf = timed(lambda: fns["loop"][0](x[:k], w, b))
    tb, yb = timed(lambda: fns["loop"][1](g[:k], x[:k], w, b))
    check("loop", yf, as_numpy(ref_f)[:k], "forward")
    check("loop", yb[:1], [as_numpy(ref_b)[0][:k]], "backward")
    scale = x.shape[0] / k
    res["loop"] = {"forward": {"best_ms": tf * scale * 1e3, "median_ms": tf * scale * 1e3, "runs": 1},
                   "backward": {"best_ms": tb * scale * 1e3, "median_ms": tb * scale * 1e3, "runs": 1},
                   "images_timed": k, "scaled_by": scale}
    # the others: checked, warmed up, then timed in interleaved rounds
    times = {m: {"forward": [], "backward": []} for m in ("numpy", "torch", "scipy")}
    for m in times:
        check(m, fns[m][0](x, w, b), ref_f, "forward")
        check(m, fns[m][1](g, x, w, b), ref_b, "backward")
    for r in range(rounds):
        for m in times:
            if m == "scipy" and r >= max(3, rounds // 4):  # scipy's python loop is slow: fewer rounds
                continue
            times[m]["forward"].append(timed(lambda: fns[m][0](x, w, b))[0])
            times[m]["backward"].append(timed(lambda: fns[m][1](g, x, w, b))[0])
    for m, d in times.items():
        res[m] = {k2: {"best_ms": min(v) * 1e3, "median_ms": statistics.median(v) * 1e3, "runs": len(v)}
                  for k2, v in d.items()}
    return {"label": label, "methods": res}


def ratio(v: float) -> str:
    return f"{v:,.0f}×" if v >= 100 else f"{v:.2f}×"


def show(case) -> None:
    r = case["methods"]
    print(case["label"])
    rows = []
    for m, name in METHODS.items():
        f, b = r[m]["forward"]["best_ms"], r[m]["backward"]["best_ms"]
        lf, lb = r["loop"]["forward"]["best_ms"], r["loop"]["backward"]["best_ms"]
        tf, tb = r["torch"]["forward"]["best_ms"], r["torch"]["backward"]["best_ms"]
        if m == "loop" and r["loop"]["scaled_by"] != 1:
            name += f" [{r['loop']['images_timed']} images ×{r['loop']['scaled_by']:g}]"
        rows.append({"method": name, "f": f, "b": b, "fl": ratio(lf / f), "bl": ratio(lb / b),
                     "ft": ratio(f / tf), "bt": ratio(b / tb)})
    print_table(rows, [("method", "method"), ("f", "forward ms"), ("b", "backward ms"), ("fl", "fwd vs loop"),
                       ("bl", "bwd vs loop"), ("ft", "fwd / torch"), ("bt", "bwd / torch")])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30, help="timed rounds per method (default: 30)")
    ap.add_argument("--loop-images", type=int, default=0, metavar="K",
                    help="time the literal loop on K images of case (a) and scale by 64/K (default: all 64)")
    ap.add_argument("--threads", type=int, default=0, metavar="T",
                    help="limit torch and NumPy's BLAS to T threads each (default: their own defaults)")
    args = ap.parse_args(argv)
    if args.threads:  # on a shared machine, 1 thread each is the steadier comparison (no barrier stalls)
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")

    rng = np.random.default_rng(0)
    import skimage.data

    cases = [
        ("(a) batch 64×3×32×32, 32 filters 3×3, padding 1, bias, float32",
         rng.standard_normal((64, 3, 32, 32)).astype(np.float32),
         rng.standard_normal((32, 3, 3, 3)).astype(np.float32), rng.standard_normal(32).astype(np.float32), 1,
         args.loop_images),
        ("(b) photo 1×1×512×512 (camera), sobel_x 3×3, no padding, float32",
         (skimage.data.camera() / 255.0).astype(np.float32)[None, None],
         np.array([[[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]]], np.float32), None, 0, 0),
    ]
    start = time.perf_counter()
    results = []
    for label, x, w, b, pad, loop_images in cases:
        results.append(run_case(label, x, w, b, pad, rounds=args.rounds, loop_images=loop_images))
        show(results[-1])
        print(flush=True)
    a = results[0]["methods"]
    targets = {
        "numpy_vs_loop_forward": a["loop"]["forward"]["best_ms"] / a["numpy"]["forward"]["best_ms"],
        "numpy_vs_loop_backward": a["loop"]["backward"]["best_ms"] / a["numpy"]["backward"]["best_ms"],
        "numpy_over_torch_forward": a["numpy"]["forward"]["best_ms"] / a["torch"]["forward"]["best_ms"],
        "numpy_over_torch_backward": a["numpy"]["backward"]["best_ms"] / a["torch"]["backward"]["best_ms"],
    }
    ok = {"loop_200x": min(targets["numpy_vs_loop_forward"], targets["numpy_vs_loop_backward"]) >= 200,
          "torch_within_3x": max(targets["numpy_over_torch_forward"], targets["numpy_over_torch_backward"]) <= 3}
    verdict = {True: "met", False: "MISSED"}
    print(f"targets on (a): NumPy conv2d ≥ 200× faster than the loop: "
          f"forward {targets['numpy_vs_loop_forward']:.0f}×, backward {targets['numpy_vs_loop_backward']:.0f}× "
          f"→ {verdict[ok['loop_200x']]}")
    print(f"                within 3× of torch: forward {targets['numpy_over_torch_forward']:.2f}×, "
          f"backward {targets['numpy_over_torch_backward']:.2f}× → {verdict[ok['torch_within_3x']]}")
    try:
        from threadpoolctl import threadpool_info

        blas = sorted({f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info()
                       if i["user_api"] == "blas"})
    except ImportError:
        blas = []
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']} ({m['torch_threads']} threads), "
          f"numpy {np.__version__} ({', '.join(blas) or 'BLAS threads unknown'}); "
          f"load average {os.getloadavg()[0]:.2f}; {time.perf_counter() - start:.0f} s")
    name = "conv_speed" + (f"_threads{args.threads}" if args.threads else "")
    path = write_results(name, {
        "numpy": np.__version__, "numpy_blas": blas, "load_average_1min": os.getloadavg()[0],
        "timing": "best of interleaved rounds (the median too); the loop runs once",
        "cases": results, "targets": targets, "targets_met": ok})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
