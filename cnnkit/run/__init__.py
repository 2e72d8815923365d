"""Runs: the run directory's format (`format`: model.json, split.json, weights, training state) and the
`Predictor` that every command uses to turn images into predictions."""
from .format import claim_run_dir, read_meta, read_split
from .predictor import Predictor, expand_inputs, load_image, load_run_data

__all__ = ["Predictor", "claim_run_dir", "expand_inputs", "load_image", "load_run_data", "read_meta", "read_split"]
