"""Splits: which images are in train, val and test, and the manifest that saves exactly that with a run.

A source's own splits are used (a val/ or test/ folder, Fashion-MNIST's t10k); a validation split is cut from
train, stratified and seeded, when it has none. The manifest (a run's split.json) lists every item of every
split by its key (a path relative to the source's folder, or an index into an array source) with the source's
fingerprint, so that a later command rebuilds exactly that split, or says what changed in the data and stops.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CnnkitError
from .images import shown
from .sources import Source

MANIFEST_FORMAT = "cnnkit-split/1"


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), sorted, with `fraction` of each class in val, chosen at random by `seed`.

    The validation set has ceil(fraction × n) images (scikit-learn's rule), shared out over the classes in
    proportion to their sizes (largest remainders first); a class never gives away its last training image.
    Written here rather than imported from scikit-learn, whose import alone takes 2 s of every training run.

    >>> tr, va = stratified_split(np.array([0] * 8 + [1] * 4), 0.25, seed=0)
    >>> len(tr), len(va), np.bincount(np.array([0] * 8 + [1] * 4)[va]).tolist()
    (9, 3, [2, 1])
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_val = min(math.ceil(fraction * len(y)), len(y) - 1)
    quota = counts * n_val / len(y)
    take = np.floor(quota).astype(int)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[:n_val - take.sum()]] += 1
    take = np.minimum(take, counts - 1)  # every class keeps at least one training image
    val = np.concatenate([rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(take)])
    mask = np.zeros(len(y), dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def group_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with no group on both sides, classes stratified as far as the groups allow: the first
    fold of scikit-learn's StratifiedGroupKFold with round(1/fraction) folds, shuffled by `seed`.

    >>> y = np.array([0, 0, 1, 1] * 5); g = np.repeat(np.arange(10), 2)
    >>> tr, va = group_split(y, g, 0.2, seed=0)
    >>> set(g[tr]) & set(g[va]), len(va)
    (set(), 4)
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    folds = max(2, round(1 / fraction))
    if n_groups < folds:
        raise CnnkitError(f"--group-by: only {n_groups} groups, too few for a validation split of {fraction:g} "
                          f"(it needs at least {folds}); lower --val-fraction's inverse, or give a val/ folder")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has only N members": stratified as possible
        tr, va = next(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(y, y, groups))
    return np.sort(tr), np.sort(va)


def assign(source: Source, origin: np.ndarray, labels: np.ndarray, val_fraction, seed: int,
           spec: str, groups: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The source's own splits, with a stratified, seeded validation split cut from train when it has none
    (`groups`: one per item; no group then straddles train and validation)."""
    out = {name: np.flatnonzero(origin == name) for name in ("train", "val", "test") if name in source.splits}
    info: dict = {}
    if "val" not in out:
        fraction = source.default_val_fraction if val_fraction is None else val_fraction
        if not 0 < fraction < 1:
            raise CnnkitError(f"--val-fraction must be between 0 and 1, got {fraction}")
        split_seed = source.fixed_split_seed if source.fixed_split_seed is not None else seed
        tr = out["train"]
        if len(tr) < 4:
            raise CnnkitError(f"{spec}: only {len(tr)} training images; a train/validation split needs more")
        if groups is not None:
            ti, vi = group_split(labels[tr], groups[tr], fraction, split_seed)
        else:
            ti, vi = stratified_split(labels[tr], fraction, split_seed)
        if len(vi) == 0:
            raise CnnkitError(f"{spec}: too few images per class for a validation split (each class keeps at "
                              "least one training image); add images, or give a val/ folder")
        out["train"], out["val"] = tr[ti], tr[vi]
        info = {"val_fraction": fraction, "split_seed": split_seed}
    return {k: out[k] for k in ("train", "val", "test") if k in out}, info


def build_manifest(data) -> dict:
    """The split.json of an `ImageData`."""
    splits = {}
    for name, s in data.splits.items():
        by_origin: dict[str, list] = {}
        for origin, key in zip(s.origin, s.keys):
            by_origin.setdefault(origin, []).append(key)
        splits[name] = by_origin
    out = {"format": MANIFEST_FORMAT, "source": {"spec": data.spec, "kind": data.source_kind,
                                                  "root": data.source_root, "fingerprints": data.fingerprints},
           "classes": data.classes, "splits": splits, **data.split_info,
           "skipped": [{"path": b.path, "reason": b.reason} for b in data.skipped]}
    if data.file_stats:
        used = {k for s in data.splits.values() for k in s.keys}
        out["files"] = {k: v for k, v in data.file_stats.items() if k in used}
    return out


def _malformed(manifest: dict) -> str | None:
    """What is wrong with the structure of a split.json (a file from a run directory: never trusted), or None."""
    for name, parts in manifest["splits"].items():
        if name not in ("train", "val", "test") or not isinstance(parts, dict):
            return f"splits.{name} must be one of train/val/test holding an object of source splits"
        for origin, ks in parts.items():
            if not isinstance(ks, list) or not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in ks):
                return f"splits.{name}.{origin} must be a list of file keys or item numbers"
    classes = manifest.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        return "classes must be a list of names"
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(st, list) and st for st in files.values()):
        return "files must map each file to its [size, mtime, digest]"
    src = manifest.get("source", {})
    if not isinstance(src, dict) or not isinstance(src.get("fingerprints", {}), dict):
        return "source.fingerprints must be an object"
    return None


def from_manifest(manifest: dict, source: Source, origin: list, keys: list, fingerprints: dict,
                  file_stats: dict) -> tuple[dict[str, np.ndarray], dict]:
    """The split a run saved; stops, saying what changed, if the source is not the one it was made from."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise CnnkitError(f"split.json is not a {MANIFEST_FORMAT} file")
    saved = manifest.get("splits")
    if not isinstance(saved, dict) or "train" not in saved or "val" not in saved:
        raise CnnkitError("split.json lacks its 'train' and 'val' splits")
    problem = _malformed(manifest)
    if problem:
        raise CnnkitError(f"split.json is malformed ({problem}); it is a file cnnkit wrote: restore it from the run, "
                          "or train anew")
    if manifest.get("classes") not in (None, source.classes):
        def few(names) -> str:  # at most six, and saying so when there are more
            names = list(names)
            return ", ".join(map(repr, names[:6])) + (f", … ({len(names)} in all)" if len(names) > 6 else "")

        raise CnnkitError(f"the data's classes [{few(source.classes)}] differ from the run's "
                          f"[{few(manifest['classes'])}]")
    where = {(o, k): i for i, (o, k) in enumerate(zip(origin, keys))}
    listed = [(o, k) for parts in saved.values() for o, ks in parts.items() for k in ks]
    wanted = set(listed)
    if len(wanted) != len(listed):  # an image in two splits, or twice in one: no data change makes that
        seen: set = set()
        twice = next(ok for ok in listed if ok in seen or seen.add(ok))
        raise CnnkitError(f"the run's split.json is damaged: it lists {shown(str(twice[1]))} twice (an image in two "
                          "splits would be scored on what it was trained on); restore it or train anew")
    missing = sorted(str(k) for o, k in wanted - where.keys())
    new = sorted(str(k) for o, k in where.keys() - wanted)
    changed = []
    if source.is_files:
        # by size and content: a copied or moved folder gets new modification times but is the same data
        def differs(old: list, new: list) -> bool:
            if old[0] != new[0]:
                return True
            return len(old) > 2 and len(new) > 2 and bool(old[2]) and bool(new[2]) and old[2] != new[2]

        old = manifest.get("files", {})
        changed = sorted(k for k, st in old.items() if k in file_stats and differs(list(st), file_stats[k]))
    else:
        old_fp = manifest.get("source", {}).get("fingerprints", {})
        changed = [f"the {name} images or labels" for name, fp in old_fp.items()
                   if name in fingerprints and fingerprints[name] != fp]
    if missing or new or changed:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing or unreadable ({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''})")
        if new:
            parts.append(f"{len(new)} new ({', '.join(new[:3])}{'…' if len(new) > 3 else ''})")
        if changed:
            parts.append(f"{len(changed)} modified ({', '.join(changed[:3])}{'…' if len(changed) > 3 else ''})")
        raise CnnkitError(f"the data (or the run's split.json) changed since the run was trained: "
                          f"{'; '.join(parts)}. Its saved split "
                          "(split.json) no longer matches, so it is not re-split silently: restore the data, "
                          "or score the new data as such (evaluate RUN --data SPEC --split all), or train anew")
    out = {}
    for name, parts in saved.items():
        out[name] = np.array(sorted(where[(o, k)] for o, ks in parts.items() for k in ks), dtype=np.int64)
    info = {k: manifest[k] for k in ("val_fraction", "split_seed", "group_by", "groups") if k in manifest}
    return {k: out[k] for k in ("train", "val", "test") if k in out}, info
