"""Runs: the run directory's format (`format`: model.json, split.json, weights, training state) and the
`Predictor` that every command uses to turn images into predictions.

The engine writes runs through `format` alone; the Predictor (which sits above the engine) is imported only
when asked for, so importing `cnnkit.run.format` never loads it.
"""
from .format import claim_run_dir, read_meta, read_split

__all__ = ["Predictor", "claim_run_dir", "expand_inputs", "load_image", "load_run_data", "read_meta", "read_split"]
_LAZY = {"Predictor", "expand_inputs", "load_image", "load_run_data"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
