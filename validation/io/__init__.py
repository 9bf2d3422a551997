"""Run directories: refusal to overwrite, atomic writes, summary.json last, HTML report."""

from .html import markdown_to_html
from .rundir import (
    RunDir,
    RunDirError,
    atomic_write_bytes,
    environment_info,
    prepare_out_dir,
    save_figure,
    write_json,
    write_npz,
)
from .tensors import owned, owned_tree

__all__ = [
    "RunDir",
    "RunDirError",
    "atomic_write_bytes",
    "environment_info",
    "markdown_to_html",
    "owned",
    "owned_tree",
    "prepare_out_dir",
    "save_figure",
    "write_json",
    "write_npz",
]
