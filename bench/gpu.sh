#!/usr/bin/env bash
# One command for a lent GPU machine (torch + triton preinstalled, no package registry):
#
#   OUT=some/dir bash bench/gpu.sh
#
# installs sgdyn without dependencies, then runs bench/gpu_run.py: the CUDA kernel tests
# (Triton compiled), every gpu_cases(ctx) of bench/bench_*.py with its baseline measured in
# the same run, the roofline fractions for the device it reads, the peak memory per case,
# all in ONE table: $OUT/gpu_table.json. Budget under 8 minutes; every step fails soft.
# A CPU dry run of the same script: python bench/gpu_run.py --dry-run --out some/dir
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONUNBUFFERED=1
timeout 120 "$PY" -m pip install --no-deps --no-build-isolation -q -e . >"$OUT/install.log" 2>&1
echo "install rc=$? (log: $OUT/install.log)"
timeout --kill-after=15 "${GPU_RUN_LIMIT:-470}" "$PY" bench/gpu_run.py --out "$OUT" \
  --budget "${BUDGET:-440}" "$@" 2>&1 | tee "$OUT/gpu_run.log"
echo "gpu_run rc=${PIPESTATUS[0]}; table: $OUT/gpu_table.json"
