#!/usr/bin/env bash
# One script for a lent GPU machine (torch + triton preinstalled, no package registry):
# install sgdyn without dependencies, run the CUDA tests (Triton compiled, not interpreted),
# then every benchmark, and write a JSON table of speed ratios and achieved FLOP rate /
# bandwidth against the H100 roofline (3.35 TB/s, 67 TFLOP/s FP32) under $OUT.
# Budget: under 8 minutes. Each step is fail-soft (its exit code is logged, the script goes
# on); logs and JSON land in $OUT (default ./gpu_out).
#
#   OUT=/some/dir bash bench/gpu.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT/bench_json"
PY="${PYTHON:-python}"
export TRITON_INTERPRET=0 SGDYN_BENCH_JSON_DIR="$OUT/bench_json" PYTHONUNBUFFERED=1
STATUS="$OUT/steps.tsv"
: >"$STATUS"
START=$(date +%s)
BUDGET=${BUDGET:-450}  # seconds for all steps (the summary takes a few more)

step() {  # step NAME TIMEOUT_S CMD...  (logs to $OUT/NAME.log, never aborts the script)
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  local left=$((BUDGET - (t0 - START)))
  if [ "$left" -lt 20 ]; then
    printf '%s	skipped	(time budget spent)
' "$name" | tee -a "$STATUS"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name ($((t0 - START))s elapsed, limit ${limit}s)"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%ss\n' "$name" "$rc" "$(($(date +%s) - t0))" | tee -a "$STATUS"
  tail -n 5 "$OUT/$name.log"
}

step env 60 "$PY" -c "import torch, triton; print(torch.__version__, triton.__version__, \
torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '-')"
step install 120 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
# CUDA tests: the Triton kernels compiled for the GPU, against their twins
step tests_kernels 150 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_kernels_per_sample.py \
  tests/test_kernels_pca.py
BENCH=(bench/bench_kernels_projections.py bench/bench_kernels_pca.py)
# simulator: matrix-free Philox step vs a dense torch loop at GPU sizes (issue 5)
[ -f bench/bench_simulator.py ] && step bench_simulator_gpu 150 "$PY" bench/bench_simulator.py \
  --device cuda --N 2500 --N 20000 --replicas 64
for f in bench/bench_capture.py bench/bench_pca_window.py; do
  [ -f "$f" ] && BENCH+=("$f")
done
for f in "${BENCH[@]}"; do
  name=$(basename "$f" .py)
  step "$name" 150 "$PY" -m pytest -q -s -p no:cacheprovider "$f" \
    --benchmark-json="$OUT/bench_json/pytest_$name.json" --benchmark-columns=median,rounds
done

# one table: every ratio and roofline figure the benchmarks reported
"$PY" - "$OUT" <<'EOF' >"$OUT/summary.log" 2>&1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
table = {"steps": [l.split("\t") for l in (out / "steps.tsv").read_text().splitlines()],
         "roofline": {"H100_bw_TB_s": 3.35, "H100_fp32_TFLOP_s": 67.0}, "benchmarks": {}}
for p in sorted((out / "bench_json").glob("*.json")):
    if p.name.startswith("pytest_"):
        data = json.loads(p.read_text())
        table["machine"] = data.get("machine_info", {}).get("cpu", {}).get("brand_raw")
        table["benchmarks"][p.stem] = {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}
    else:
        table[p.stem] = json.loads(p.read_text())
(out / "gpu_table.json").write_text(json.dumps(table, indent=2, default=str))
print(json.dumps({k: v for k, v in table.items() if k != "benchmarks"}, indent=1, default=str))
EOF
echo "summary rc=$?"; head -c 6000 "$OUT/summary.log"
echo "total $(($(date +%s) - START))s; results in $OUT/gpu_table.json"
