"""Docs and repository hygiene that a reader trips on: commands in the docs parse, no machine
paths, no global matplotlib backend in library code, `pytest bench/` collects the benchmarks."""

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import tomllib

from sgdyn.validation.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
LIBRARY = ["sgdyn_pkg", "theory", "kernels", "simulator", "validation"]


def _doc_commands():
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r"(?m)(?:^|`)\s*(sgdyn [a-z-]+(?: [^`#\n]*)?)", text):
            cmd = m.group(1).strip().rstrip("`").strip()
            if "..." in cmd or "<" in cmd:
                continue
            yield doc.name, cmd


@pytest.mark.parametrize("doc, cmd", sorted(set(_doc_commands())))
def test_every_documented_command_parses(doc, cmd):
    argv = shlex.split(cmd)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: unknown option or bad value (--help exits with 0)
        if e.code != 0:
            pytest.fail(f"{doc}: `{cmd}` does not parse with the current CLI ({e})")


def test_no_machine_paths_in_docs_or_benchmarks():
    files = [*DOCS, *(ROOT / "bench").glob("*.py"), *(ROOT / "bench").glob("*.sh")]
    for f in files:
        for bad in ("/work/", "/tmp/", "/home/", "/root/"):
            assert bad not in f.read_text(), f"{f.name} names a machine path ({bad})"


def test_no_global_matplotlib_backend_or_stale_references_in_library_code():
    for room in LIBRARY:
        for f in (ROOT / room).rglob("*.py"):
            text = f.read_text()
            assert "matplotlib.use(" not in text, f"{f}: use matplotlib.figure.Figure instead"
            assert "DESIGN.md" not in text, f"{f}: refers to a file that is not shipped"
    loop = (ROOT / "validation" / "training" / "loop.py").read_text()
    assert "LDC" not in loop and "EWC" not in loop  # not implemented there


def test_pytest_bench_collects_every_benchmark_file():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    patterns = cfg.get("python_files", ["test_*.py", "*_test.py"])
    if isinstance(patterns, str):
        patterns = patterns.split()
    benches = sorted((ROOT / "bench").glob("bench_*.py"))
    assert benches
    for f in benches:
        assert any(fnmatch.fnmatch(f.name, p) for p in patterns), f"{f.name} not collected"
        assert re.search(r"(?m)^def test_", f.read_text()), f"{f.name} has no test function"
