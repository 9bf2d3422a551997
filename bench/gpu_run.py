"""One prepared run for a lent GPU: CUDA kernel tests + every GPU target, one JSON table.

    OUT=some/dir bash bench/gpu.sh                 # on the GPU machine (installs, then this)
    python bench/gpu_run.py --out some/dir         # the same without the install step
    python bench/gpu_run.py --dry-run --out d      # whole script on the CPU, tiny sizes,
                                                   # Triton under TRITON_INTERPRET=1

Steps (each fails soft: an error or a timeout is recorded and the run goes on):

1. ``env``: torch / triton versions, the device name, its memory and the roofline peaks
   looked up from the device name (``PEAKS``; ``unknown`` when not listed).
2. ``tests``: pytest on every kernel test (tests that take the ``kernel_device`` fixture and
   ``tests/test_kernels_*.py``), compiled for CUDA (``TRITON_INTERPRET=0``); counts and the
   failing test ids go in the table.
3. ``cases``: every ``bench/bench_*.py`` that defines ``gpu_cases(ctx)`` (contract in
   bench/README.md). Each case returns a dict of measurements; the runner adds its wall time,
   its peak device memory, and, when the case gives ``flops`` / ``bytes`` and ``seconds``,
   the achieved rate and its fraction of the device's peak; a case's ``target``
   ``(key, op, value)`` is checked into ``met``.

Writes ``gpu_table.json`` under --out (also printed). Budget: under 8 minutes on one GPU
(``--budget`` seconds for everything; cases left when it is spent are recorded as skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import operator
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# Roofline peaks by device name (dense, no tensor cores): HBM GB/s, FP32 / FP64 TFLOP/s.
PEAKS = [
    (r"H200", {"bw_GB_s": 4800.0, "fp32_TFLOP_s": 67.0, "fp64_TFLOP_s": 34.0}),
    (r"H100.*PCIe", {"bw_GB_s": 2000.0, "fp32_TFLOP_s": 51.0, "fp64_TFLOP_s": 26.0}),
    (r"H100", {"bw_GB_s": 3350.0, "fp32_TFLOP_s": 67.0, "fp64_TFLOP_s": 34.0}),
    (r"A100.*80GB", {"bw_GB_s": 2039.0, "fp32_TFLOP_s": 19.5, "fp64_TFLOP_s": 9.7}),
    (r"A100", {"bw_GB_s": 1555.0, "fp32_TFLOP_s": 19.5, "fp64_TFLOP_s": 9.7}),
    (r"L40S", {"bw_GB_s": 864.0, "fp32_TFLOP_s": 91.6, "fp64_TFLOP_s": 1.4}),
    (r"L4\b", {"bw_GB_s": 300.0, "fp32_TFLOP_s": 30.3, "fp64_TFLOP_s": 0.5}),
    (r"V100", {"bw_GB_s": 900.0, "fp32_TFLOP_s": 15.7, "fp64_TFLOP_s": 7.8}),
]
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def peaks_for(name: str) -> dict | str:
    for pat, peaks in PEAKS:
        if re.search(pat, name):
            return dict(peaks)
    return "unknown"


class CaseTimeout(Exception):
    pass


@dataclass
class GpuContext:
    """What a ``gpu_cases(ctx)`` function gets (see bench/README.md)."""

    device: object  # torch.device: cuda, or cpu in a dry run
    dry_run: bool
    out: Path
    device_name: str = "cpu"
    peaks: dict | str = "unknown"
    notes: list = field(default_factory=list)

    def size(self, gpu, dry):
        """``gpu`` on the device, ``dry`` in a dry run (tiny sizes)."""
        return dry if self.dry_run else gpu

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timeit(self, fn, *, reps: int = 5, warmup: int = 1) -> float:
        """Median wall seconds of ``fn()`` over ``reps`` (synchronised), after ``warmup``."""
        for _ in range(warmup):
            fn()
        self.sync()
        ts = []
        for _ in range(max(1, reps if not self.dry_run else min(reps, 2))):
            t = time.perf_counter()
            fn()
            self.sync()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)


def _alarm(seconds: float):
    @contextlib.contextmanager
    def cm():
        if not hasattr(signal, "SIGALRM"):
            yield
            return

        def handler(*_):
            raise CaseTimeout(f"case exceeded its {seconds:.0f} s limit")

        old = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    return cm()


def env_step(ctx: GpuContext) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "device": ctx.device_name,
            "roofline_peaks": ctx.peaks, "dry_run": ctx.dry_run,
            "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
            "torch_threads": torch.get_num_threads()}  # fmt: skip
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        info["triton"] = f"unavailable: {e}"
    if ctx.device.type == "cuda":
        p = torch.cuda.get_device_properties(ctx.device)
        info.update(memory_bytes=p.total_memory, capability=f"{p.major}.{p.minor}",
                    multiprocessors=p.multi_processor_count)  # fmt: skip
    return info


def kernel_test_files() -> list[str]:
    """Every test file that runs Triton kernels: those using the ``kernel_device`` fixture
    and tests/test_kernels_*.py (new helpers' kernel tests are picked up automatically), plus
    the theory functions on CUDA torch and cupy arrays (tests/test_theory_array_api.py; its
    cupy cases skip where cupy is not installed)."""
    files = {"tests/test_theory_array_api.py"}
    for p in sorted((ROOT / "tests").glob("test_*.py")):
        if p.name.startswith("test_kernels_") or "kernel_device" in p.read_text():
            files.add(str(p.relative_to(ROOT)))
    return sorted(files)


def tests_step(ctx: GpuContext, files: list[str], timeout: float) -> dict:
    xml = ctx.out / "kernel_tests.xml"
    env = dict(os.environ, TRITON_INTERPRET="1" if ctx.dry_run else "0")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
           f"--junitxml={xml}", *files]  # fmt: skip
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = "timeout", str(e)[-500:]
    res = {"files": files, "returncode": rc, "seconds": time.perf_counter() - t,
           "compiled": not ctx.dry_run, "log_tail": tail}  # fmt: skip
    if xml.exists():
        root = ET.parse(xml).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        res.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
        res["passed"] = res["tests"] - res["failures"] - res["errors"] - res["skipped"]
        res["failed_ids"] = [
            f"{tc.get('classname')}::{tc.get('name')}"
            for tc in suite.iter("testcase")
            if tc.find("failure") is not None or tc.find("error") is not None
        ]
    return res


def discover_cases(ctx: GpuContext, only: list[str] | None = None):
    """[(module, case dict)] from every bench/bench_*.py defining ``gpu_cases(ctx)``; a module
    that fails to import or to list its cases becomes one failed pseudo-case."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    found, errors = [], {}
    for path in sorted(BENCH.glob("bench_*.py")):
        if only and not any(o in path.stem for o in only):
            continue
        try:
            spec = importlib.util.spec_from_file_location(f"gpu_{path.stem}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            if not hasattr(mod, "gpu_cases"):
                continue
            for case in mod.gpu_cases(ctx):
                found.append((path.stem, case))
        except Exception as e:  # noqa: BLE001 - fail soft per module
            errors[path.stem] = f"{type(e).__name__}: {e}"
    return found, errors


def run_case(ctx: GpuContext, case: dict, limit: float) -> dict:
    import torch

    res: dict = {}
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)
    t = time.perf_counter()
    try:
        with _alarm(min(limit, case.get("timeout_s", 120))):
            res.update(case["run"]() or {})
        res["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - fail soft per case
        res.update(status="error", error=f"{type(e).__name__}: {e}"[:500],
                   traceback=traceback.format_exc()[-1500:])  # fmt: skip
    res["wall_s"] = time.perf_counter() - t
    if cuda:
        res["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(ctx.device))
    else:
        import resource

        res["peak_rss_bytes_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sec = res.get("seconds")
    if sec:
        peaks = ctx.peaks if isinstance(ctx.peaks, dict) else {}
        prec = "fp64" if res.get("dtype") == "float64" else "fp32"
        if res.get("flops"):
            res["achieved_TFLOP_s"] = res["flops"] / sec / 1e12
            pk = peaks.get(f"{prec}_TFLOP_s")
            res["frac_peak_flops"] = res["achieved_TFLOP_s"] / pk if pk else "unknown"
        if res.get("bytes"):
            res["achieved_GB_s"] = res["bytes"] / sec / 1e9
            pk = peaks.get("bw_GB_s")
            res["frac_peak_bandwidth"] = res["achieved_GB_s"] / pk if pk else "unknown"
    tgt = case.get("target")
    if tgt:
        key, op, val = tgt
        res["target"] = f"{key} {op} {val}"
        got = res.get(key)
        res["met"] = bool(OPS[op](got, val)) if isinstance(got, int | float) else None
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    ap.add_argument("--dry-run", action="store_true", help="on the CPU, tiny sizes, interpreted")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all steps")
    ap.add_argument("--only", action="append", help="bench files whose name contains this")
    ap.add_argument("--tests", nargs="*", default=None, help="test files (default: all kernel)")
    ap.add_argument("--no-tests", action="store_true", help="skip the pytest step")
    a = ap.parse_args(argv)
    start = time.perf_counter()
    if a.dry_run:  # before anything imports triton (it reads this at import time)
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    torch.set_num_threads(int(os.environ.get("SGDYN_BENCH_THREADS", "1")))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and not a.dry_run
    if not cuda and not a.dry_run:
        print("no CUDA device: running as --dry-run (tiny sizes, Triton interpreted)")
        a.dry_run = True
        os.environ["TRITON_INTERPRET"] = "1"
    dev = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(dev) if cuda else f"cpu ({platform.processor() or 'cpu'})"
    ctx = GpuContext(device=dev, dry_run=a.dry_run, out=out, device_name=name,
                     peaks=peaks_for(name) if cuda else "unknown")  # fmt: skip
    table: dict = {"device": name, "dry_run": a.dry_run, "steps": {}, "cases": {}}

    def left():
        return a.budget - (time.perf_counter() - start)

    def save():
        table["total_s"] = time.perf_counter() - start
        (out / "gpu_table.json").write_text(json.dumps(table, indent=2, default=str))

    try:
        table["steps"]["env"] = env_step(ctx)
    except Exception as e:  # noqa: BLE001
        table["steps"]["env"] = {"error": str(e)}
    save()
    if not a.no_tests:
        files = a.tests if a.tests is not None else kernel_test_files()
        table["steps"]["tests"] = tests_step(ctx, files, timeout=min(180.0, max(left() - 60, 10)))
        print(f"== tests: {table['steps']['tests'].get('passed')} passed, "
              f"{table['steps']['tests'].get('failures')} failed", flush=True)  # fmt: skip
        save()
    cases, errors = discover_cases(ctx, a.only)
    table["steps"]["discovery"] = {"cases": [f"{m}:{c['name']}" for m, c in cases],
                                   "module_errors": errors}  # fmt: skip
    for mod, case in cases:
        key = f"{mod}:{case['name']}"
        if left() < 15:
            table["cases"][key] = {"status": "skipped", "why": "time budget spent"}
            continue
        print(f"== {key} ({time.perf_counter() - start:.0f}s elapsed)", flush=True)
        table["cases"][key] = res = run_case(ctx, case, limit=left() - 10)
        brief = {k: res.get(k) for k in ("status", "ratio", "target", "met", "error") if k in res}
        print(f"   {brief}", flush=True)
        save()
    table["summary"] = {
        "targets": {k: {"target": v.get("target"), "ratio": v.get("ratio"), "met": v.get("met")}
                    for k, v in table["cases"].items() if "target" in v},
        "errors": [k for k, v in table["cases"].items() if v.get("status") == "error"],
    }  # fmt: skip
    save()
    print(json.dumps(table["summary"], indent=1, default=str))
    print(f"total {time.perf_counter() - start:.0f}s; table in {out / 'gpu_table.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
