"""Run directories: atomic writes, JSON summaries, refusing to clobber a finished result."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


class RunDirError(RuntimeError):
    """The output folder holds a different finished run (use --force or another --out)."""


def _default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _clean(o):
    """Replace non-finite floats by None so the JSON is standard."""
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    text = json.dumps(_clean(json.loads(json.dumps(obj, default=_default))), indent=2)
    atomic_write_bytes(path, (text + "\n").encode())


def write_npz(path: Path, arrays: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def prepare_out_dir(out: Path, config: dict, force: bool) -> bool:
    """Create ``out``; return True if it already holds a finished run with this config.

    A finished run with a *different* config is never overwritten unless ``force``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} exists and is not a folder")
    summary = out / "summary.json"
    if summary.exists() and not force:
        try:
            old = json.loads(summary.read_text())
        except json.JSONDecodeError:
            old = None
        if old is not None and old.get("config") == json.loads(
            json.dumps(config, default=_default)
        ):
            return True
        raise RunDirError(
            f"{out} already holds a finished run with different settings; "
            "choose another --out or pass --force to overwrite it"
        )
    out.mkdir(parents=True, exist_ok=True)
    return False
