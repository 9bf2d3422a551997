"""Dependencies point one way (ARCHITECTURE.md): checked on the source, import by import.

theory imports neither torch nor any other sgdyn subpackage; kernels never import the
simulator or validation; the simulator never imports validation; inside validation, probes
never import studies or the CLI, and nothing but the CLI imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "sgdyn": ROOT / "sgdyn_pkg",
    "sgdyn.theory": ROOT / "theory",
    "sgdyn.kernels": ROOT / "kernels",
    "sgdyn.simulator": ROOT / "simulator",
    "sgdyn.validation": ROOT / "validation",
}


def _modules():
    for pkg, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            is_pkg = path.name == "__init__.py"
            yield name, is_pkg, path


def imports_of(name: str, is_pkg: bool, path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


MODULES = list(_modules())


def _violations(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for name, is_pkg, path in MODULES:
        if not (name == prefix or name.startswith(prefix + ".")):
            continue
        for imp in imports_of(name, is_pkg, path):
            if any(imp == f or imp.startswith(f + ".") for f in forbidden):
                bad.append(f"{name} imports {imp}")
    return bad


RULES = [
    (
        "sgdyn.theory",
        ("torch", "triton", "sgdyn.kernels", "sgdyn.simulator", "sgdyn.validation"),
    ),
    ("sgdyn.kernels", ("sgdyn.simulator", "sgdyn.validation")),
    ("sgdyn.simulator", ("sgdyn.validation",)),
    (
        "sgdyn.validation.probes",
        (
            "sgdyn.validation.studies",
            "sgdyn.validation.cli",
            "sgdyn.validation.training",
            "sgdyn.validation.io",
        ),
    ),
    ("sgdyn.validation.studies", ("sgdyn.validation.cli",)),
    ("sgdyn.validation.training", ("sgdyn.validation.studies", "sgdyn.validation.cli")),
    ("sgdyn.validation.data", ("sgdyn.validation.studies", "sgdyn.validation.cli")),
    ("sgdyn.validation.models", ("sgdyn.validation.studies", "sgdyn.validation.cli")),
    ("sgdyn.validation.io", ("sgdyn.validation.studies", "sgdyn.validation.cli")),
]


@pytest.mark.parametrize("prefix,forbidden", RULES, ids=[r[0] for r in RULES])
def test_import_direction(prefix, forbidden):
    assert _violations(prefix, forbidden) == []


def test_rule_checker_catches_a_violation(tmp_path):
    """The checker itself can fail: a probe importing a study is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..studies.capture import capture_window\nimport torch\n")
    found = imports_of("sgdyn.validation.probes.bad", False, bad)
    assert "sgdyn.validation.studies.capture" in found
    assert "torch" in found


def test_every_module_is_seen():
    names = {n for n, _, _ in MODULES}
    assert "sgdyn.validation.probes.recorder" in names
    assert "sgdyn.theory.flatness" in names
    assert len(names) > 40


def test_legacy_flat_imports_still_work():
    """sgdyn 0.1's flat module paths are aliases of the modules that now hold the code."""
    import importlib

    from sgdyn.validation import LEGACY_MODULES

    for old, new in LEGACY_MODULES.items():
        a = importlib.import_module(f"sgdyn.validation.{old}")
        b = importlib.import_module(f"sgdyn.validation.{new}")
        assert a is b, old
