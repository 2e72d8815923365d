"""Export a trained run for serving: ONNX (with a dynamic batch axis) or TorchScript, checked against eager.

ONNX goes through `torch.onnx.export` (the dynamo exporter); ONNX Runtime runs it (`predict --engine onnx`).
Every export is verified before it is kept: the exported model and the eager one are run on the same
random batch and must agree to 1e-4, or nothing is written.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write
from .errors import CnnkitError

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4


def _example(channels: int, size, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *size, generator=g)


def export_model(model: torch.nn.Module, channels: int, size, path: str | Path, fmt: str) -> dict:
    """Export `model` (eval mode) for C×H×W inputs to `path`; returns {'path', 'format', 'max_abs_diff'}."""
    if fmt not in FORMATS:
        raise CnnkitError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    model = model.eval().cpu()
    x = _example(channels, size)
    with torch.no_grad():
        ref = model(x)
    path = Path(path)
    if fmt == "onnx":
        def write(tmp: str) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                batch = torch.export.Dim("batch", min=1, max=4096)
                program = torch.onnx.export(model, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                            dynamic_shapes={"x": {0: batch}}, verbose=False)
                program.save(tmp)
        atomic_write(path, write)
        session = onnx_session(path)
        x3 = _example(channels, size, batch=3, seed=1)  # another batch size: the batch axis is dynamic
        with torch.no_grad():
            ref3 = model(x3).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x3.numpy()})[0]
        diff = float(np.abs(got - ref3).max())
    else:
        with torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
        atomic_write(path, lambda tmp: torch.jit.save(traced, tmp))
        loaded = torch.jit.load(str(path))
        with torch.no_grad():
            diff = float((loaded(x) - ref).abs().max())
    if not diff <= TOLERANCE:
        os.unlink(path)
        raise CnnkitError(f"the {fmt} export differs from the eager model by {diff:.2e} (> {TOLERANCE}); not kept")
    return {"path": str(path), "format": fmt, "max_abs_diff": diff}


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise CnnkitError(f"{path} is not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
