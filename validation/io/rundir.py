"""Run directories: one code path for every command's output folder.

A run directory is finished when it holds ``summary.json`` (written last, its ``config`` says
which run it is) and unfinished otherwise; it is never a mix of two runs:

- :meth:`RunDir.start` refuses a folder holding a finished run with other settings (unless
  ``force``), reports the same finished run as done, and otherwise *first* invalidates the old
  ``summary.json`` and removes the files the old or interrupted run wrote (the manifest
  ``.sgdyn-files``), keeping only declared checkpoints (``keep``, e.g. ``capture.pt``, which
  carry their own key);
- every file goes through :func:`atomic_write_bytes` (temporary file + ``os.replace``, created
  with the user's umask) and is recorded in the manifest before it is written;
- :meth:`RunDir.finish` writes ``arrays.npz``, ``report.md``, the self-contained
  ``report.html`` and, last, ``summary.json`` with ``command``, ``config``, ``environment``
  and ``files``.

File-system problems (read-only, not a folder, disk full) raise :class:`RunDirError` with one
line that names the path and what to do.
"""

from __future__ import annotations

import io
import json
import os
import platform
import secrets
from pathlib import Path

import numpy as np

MANIFEST = ".sgdyn-files"
SUMMARY = "summary.json"


class RunDirError(RuntimeError):
    """The output folder cannot be used as asked (message says why and what to do)."""


def _default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple | set):
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


def plain(obj):
    """``obj`` as plain JSON types (lists, dicts, str, int, float, None; NaN -> None)."""
    return _clean(json.loads(json.dumps(obj, default=_default)))


def _fs_error(path: Path, e: OSError) -> RunDirError:
    what = e.strerror or str(e)
    return RunDirError(
        f"cannot write {path}: {what}; choose another --out (a writable folder with free space)"
    )


def _record(path: Path) -> None:
    """Add ``path`` to its folder's manifest (only inside a started run directory)."""
    man = path.parent / MANIFEST
    if path.name == MANIFEST or not man.is_file():
        return
    names = man.read_text().split("\n")
    if path.name not in names:
        with open(man, "a") as fh:
            fh.write(path.name + "\n")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; the file gets the user's umask (not 0600)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _record(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as e:
        if tmp.exists():
            tmp.unlink()
        raise _fs_error(path, e) from e


def write_json(path: Path, obj) -> None:
    text = json.dumps(plain(obj), indent=2)
    atomic_write_bytes(path, (text + "\n").encode())


def write_npz(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def save_figure(fig, path: Path, dpi: int = 110) -> str:
    """Save a :class:`matplotlib.figure.Figure` (no pyplot, no global backend) atomically;
    returns the file name."""
    path = Path(path)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def environment_info(**extra) -> dict:
    """Versions and execution settings recorded beside every run's numbers."""
    import torch

    from sgdyn import __version__

    return {
        "sgdyn": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }


class RunDir:
    """One run's output folder (module docstring). ``config`` must be plain JSON types."""

    def __init__(self, path, config: dict, *, command: str, force: bool = False, keep=()):
        self.path = Path(path)
        self.config = plain(config)
        self.command = command
        self.force = bool(force)
        self.keep = set(keep)

    def file(self, name: str) -> Path:
        return self.path / name

    def _read_summary(self):
        try:
            return json.loads(self.file(SUMMARY).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def check(self) -> str:
        """``"new"`` or ``"done"`` (same finished run); raises if the folder cannot be used.
        Reads only: nothing is created."""
        p = self.path
        for parent in [p, *p.parents]:
            if parent.exists():
                if not parent.is_dir():
                    raise RunDirError(f"--out {p}: {parent} exists and is not a folder")
                break
        if not p.exists():
            return "new"
        if self.file(SUMMARY).exists():
            if self.force:
                return "new"
            old = self._read_summary()
            if old is None:
                raise RunDirError(
                    f"{p} holds an unreadable summary.json; pass --force to overwrite the run "
                    "or choose another --out"
                )
            if old.get("config") == self.config and old.get("command", self.command) == (
                self.command
            ):
                return "done"
            raise RunDirError(
                f"{p} already holds a finished {old.get('command', '')} run with different "
                "settings; choose another --out or pass --force to overwrite it"
            )
        if not self.file(MANIFEST).exists() and any(p.iterdir()):
            raise RunDirError(
                f"--out {p} is a non-empty folder that is not an sgdyn run directory; "
                "choose a new or empty folder"
            )
        return "new"

    def start(self) -> bool:
        """Make the folder ready for a new run; True when it already holds this finished run.

        The old ``summary.json`` is removed *before* anything else, so an interrupted rerun
        leaves an unfinished folder, never a finished-looking mix."""
        if self.check() == "done":
            return True
        man = self.file(MANIFEST)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            old = man.read_text().split("\n") if man.exists() else []
            if self.file(SUMMARY).exists():
                self.file(SUMMARY).unlink()  # invalidate first
            kept = []
            for name in filter(None, old):
                f = self.file(name)
                if name in self.keep and f.is_file():
                    kept.append(name)
                elif name != MANIFEST and f.is_file() and f.parent == self.path:
                    f.unlink()
            man.write_text("".join(n + "\n" for n in kept))
        except OSError as e:
            raise _fs_error(man, e) from e
        return False

    def summary(self) -> dict:
        return json.loads(self.file(SUMMARY).read_text())

    # --- writers (atomic, recorded in the manifest) -----------------------------------------
    def write_bytes(self, name: str, data: bytes) -> str:
        atomic_write_bytes(self.file(name), data)
        return name

    def write_text(self, name: str, text: str) -> str:
        return self.write_bytes(name, text.encode())

    def write_json(self, name: str, obj) -> str:
        write_json(self.file(name), obj)
        return name

    def write_npz(self, name: str, arrays: dict) -> str:
        write_npz(self.file(name), arrays)
        return name

    def save_figure(self, fig, name: str, dpi: int = 110) -> str:
        return save_figure(fig, self.file(name), dpi=dpi)

    def files(self) -> list[str]:
        man = self.file(MANIFEST)
        names = man.read_text().split("\n") if man.exists() else []
        return sorted({n for n in names if n and self.file(n).is_file()})

    def finish(
        self, summary: dict, *, arrays: dict | None = None, report: str = "", title: str = ""
    ) -> dict:
        """Write ``arrays.npz``, ``report.md``, ``report.html`` and, last, ``summary.json``.

        ``summary`` gets ``command``, ``config``, ``environment`` (merged with any given) and
        ``files`` (everything this run wrote). Returns the summary as written."""
        from .html import markdown_to_html

        if arrays:
            self.write_npz("arrays.npz", arrays)
        self.write_text("report.md", report)
        self.write_text(
            "report.html",
            markdown_to_html(report, base_dir=self.path, title=title or f"sgdyn {self.command}"),
        )
        out = {"command": self.command, **summary, "config": self.config}
        out["environment"] = environment_info(**summary.get("environment", {}))
        out["files"] = self.files() + [SUMMARY]
        out = plain(out)
        write_json(self.file(SUMMARY), out)  # last: marks the run finished
        return out


def prepare_out_dir(out: Path, config: dict, force: bool, command: str = "") -> bool:
    """Compatibility wrapper: ``RunDir(out, config, ...).start()`` (True: already finished)."""
    return RunDir(out, config, command=command, force=force).start()
