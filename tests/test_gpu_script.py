"""bench/gpu_run.py cannot rot: its dry run (CPU, tiny sizes, Triton interpreted) runs every
step and every discovered GPU case, and writes the one JSON table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _dry_run(out, *extra):
    env = dict(os.environ, TRITON_INTERPRET="1", SGDYN_BENCH_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_run.py"), "--dry-run", "--out", str(out),
         *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((out / "gpu_table.json").read_text())


def _check_table(t):
    assert t["dry_run"] is True and t["device"]
    env = t["steps"]["env"]
    assert env["torch"] and env["triton_interpret"] == "1"
    tests = t["steps"]["tests"]
    assert tests["passed"] > 0 and tests["failures"] == 0 and tests["errors"] == 0, tests
    assert not t["steps"]["discovery"]["module_errors"]
    names = set(t["cases"])
    for want in ("bench_simulator:simulator_vs_dense_N2500", "bench_capture:capture_overhead",
                 "bench_capture:capture_host_syncs_per_step",
                 "bench_kernels_projections:projections_vs_torch_func",
                 "bench_kernels_pca:streaming_pca_vs_ipca",
                 "bench_validate:validate_quick_suite"):  # fmt: skip
        assert want in names
    for key, case in t["cases"].items():
        assert case["status"] == "ok", (key, case.get("error"), case.get("traceback"))
        assert case["wall_s"] >= 0 and ("peak_rss_bytes_process" in case)
        if "target" in case:
            assert case["met"] in (True, False), key
    assert t["summary"]["errors"] == []


def test_gpu_script_dry_run(tmp_path):
    """Every case at tiny sizes; the pytest step on one kernel test file (the full list of
    kernel tests runs in the slow variant below)."""
    t = _dry_run(tmp_path, "--tests", "tests/test_sim_kernels.py")
    _check_table(t)
    assert t["steps"]["tests"]["files"] == ["tests/test_sim_kernels.py"]


@pytest.mark.slow
def test_gpu_script_full_dry_run(tmp_path):
    t = _dry_run(tmp_path)
    _check_table(t)
    files = t["steps"]["tests"]["files"]
    assert "tests/test_sim_kernels.py" in files and "tests/test_kernels_pca.py" in files


def test_roofline_peaks_come_from_the_device_name():
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_run import peaks_for

    assert peaks_for("NVIDIA H100 80GB HBM3")["bw_GB_s"] == 3350.0
    assert peaks_for("NVIDIA H100 PCIe")["bw_GB_s"] == 2000.0
    assert peaks_for("NVIDIA H200")["bw_GB_s"] == 4800.0
    assert peaks_for("Some Future GPU") == "unknown"
