"""Run directories: refusal to overwrite, atomic writes, JSON / npz helpers."""

from .rundir import RunDirError, atomic_write_bytes, prepare_out_dir, write_json, write_npz

__all__ = ["RunDirError", "atomic_write_bytes", "prepare_out_dir", "write_json", "write_npz"]
