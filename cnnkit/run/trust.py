"""Which data a run directory may name to read.

A run directory can come from anywhere, and its model.json (or train_state.pt) names the data it was trained
on: read without a second thought, `data.spec = "csv:/etc/passwd"` would make evaluate read that file and echo
it. So a spec naming files is used only when this user's own training recorded it: training signs the spec with
a key private to this user (`run-key` in ~/.cache/cnnkit, or in $CNNKIT_CACHE; made on first use, mode 0600),
and `check_saved_spec` checks the signature before the saved spec is read. A built-in source (digits) names no
file and needs none. A run from elsewhere (or one made before signatures, or where no key could be kept) needs
its data named again with --data: the user saying so is enough.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..errors import CnnkitError
from .schema import shown


def _key_path() -> Path:
    root = os.environ.get("CNNKIT_CACHE") or Path.home() / ".cache" / "cnnkit"
    return Path(root) / "run-key"


def _run_key(create: bool) -> bytes | None:
    path = _key_path()
    try:
        key = path.read_bytes()
        return key if len(key) >= 32 else None
    except OSError:
        if not create:
            return None
    try:  # first use: a new key, linked into place so two processes starting at once agree on one
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".run-key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return path.read_bytes()
    except OSError:
        return None  # nowhere to keep a key: such runs need --data to be given again


def sign_spec(spec: str) -> str | None:
    """The signature training stores next to the data spec (model.json's data.spec_mac, the state's data_mac)."""
    key = _run_key(create=True)
    return hmac.new(key, b"cnnkit data spec\0" + str(spec).encode(), hashlib.sha256).hexdigest() if key else None


def _signed(spec: str, mac) -> bool:
    key = _run_key(create=False)
    if not key or not isinstance(mac, str):
        return False
    good = hmac.new(key, b"cnnkit data spec\0" + str(spec).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(good, mac)


def check_saved_spec(spec, mac, where: str | Path) -> str:
    """The data spec `where` (a run's model.json or train_state.pt) names, if it may be read without the user
    naming it: a built-in source (digits), or a spec this user's training signed. Else one line saying to pass it."""
    if not isinstance(spec, str) or not spec or len(spec) > 4096:
        raise CnnkitError(f"{where} names no usable data set; pass one (--data SPEC)")
    from ..data.sources import parse_spec

    try:
        kind, path = parse_spec(spec)
    except CnnkitError:
        kind, path = None, spec
    if (kind is not None and path is None) or _signed(spec, mac):
        return spec
    raise CnnkitError(f"{where} names data at {shown(path)}, and nothing shows that your own training recorded it "
                      "(a run directory from elsewhere must not choose files to read): pass --data "
                      f"{shown(spec)} to read it, or --data with the data's current place")
