#!/usr/bin/env bash
# The prepared GPU check of the performance issue, run once as one script on a machine
# with a GPU (e.g. through the team's device tool, whose $OUT folder comes back):
#
#   bash benchmarks/gpu_run.sh            # results in $OUT, else benchmarks/results/gpu
#
# It needs a Python whose jax has a GPU backend (pip install -e ".[test]" "jax[cuda12]");
# it stops at once, before any timing, when there is none. What it runs (about 5 minutes
# on an H200 by estimate; the 256-model digits point comes first, as it is the target):
#   1. digits, k = 256: engine against sequential-jit (target: >= 20x);
#   2. both workloads at k = 64: engine against sequential-jit;
#   3. the scaling sweep over k and width.
# ALLOW_CPU=1 QUICK=1 runs the same steps tiny on a CPU, to check the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
python=${PYTHON:-python}
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
"$python" - <<'PY' | tee "$out/device.txt"
import os, jax
print("backend", jax.default_backend(), "devices", jax.devices())
if jax.default_backend() == "cpu" and os.environ.get("ALLOW_CPU") != "1":
    raise SystemExit("no GPU backend in this jax: install jax[cuda12] (or set ALLOW_CPU=1)")
PY
(nvidia-smi || true) > "$out/nvidia-smi.txt" 2>&1
"$python" benchmarks/shadow_throughput.py --workload digits --k 256 \
  --modes vmap,sequential-jit "${quick[@]}" --json "$out/digits-k256.json" | tee "$out/digits-k256.txt"
"$python" benchmarks/shadow_throughput.py --modes vmap,sequential-jit "${quick[@]}" \
  --json "$out/throughput.json" | tee "$out/throughput.txt"
"$python" benchmarks/scaling_sweep.py "${quick[@]}" --json "$out/scaling.json" \
  --plot "$out/scaling.png" | tee "$out/scaling.txt"
