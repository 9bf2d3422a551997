"""An editable install and a built wheel both import as the ``sgdyn.*`` namespace."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_editable_install_imports_from_repo(tmp_path):
    code = (
        "import sgdyn.kernels, sgdyn.theory, sgdyn.simulator, sgdyn.validation.cli; "
        "print(sgdyn.kernels.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()).resolve().parent == REPO / "kernels"


@pytest.mark.slow
def test_wheel_builds_and_imports(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("sgdyn-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "sgdyn" in tops and not tops & {"theory", "kernels", "simulator", "validation"}
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sgdyn.theory, sgdyn.kernels, "
        "sgdyn.validation.cli; print(sgdyn.theory.__file__, sgdyn.kernels.__file__)"
    )
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert all(p.startswith(str(site)) for p in out.stdout.split())
