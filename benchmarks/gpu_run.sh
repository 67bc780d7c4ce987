#!/usr/bin/env bash
# The GPU measurements of issue 16, run once as one script on a machine with a GPU (the
# team's device tool: an H200 whose python3 has jax with CUDA, flax, optax, torch with
# CUDA, but no network and no `datasets` package, so jaxmia runs from the checkout):
#
#   OUT=$OUT bash benchmarks/gpu_run.sh          # everything under $OUT
#   ALLOW_CPU=1 QUICK=1 OUT=/tmp/rehearsal PYTHON=python bash benchmarks/gpu_run.sh
#
# The second line rehearses every step tiny on a CPU. Steps, most important first (each
# with its own time limit, so a slow one cannot eat the others' time; a failed step is
# recorded and the next one runs):
#   1. the device: backend, devices, nvidia-smi, whether float32 matmuls run as TF32;
#   2. digits, k = 256: the engine against sequential-jit;
#   3. location30, k = 64, 256, 1024: the engine, sequential-jit, the PyTorch loop and
#      torch.func vmap on the same GPU (the slow ones timed on a subset of the models
#      and extrapolated by member count, as the JSON says);
#   4. the MNIST CNN at k = 64, vmapped and one at a time;
#   5. `jaxmia audit` (64 shadows) with an empty compilation cache, then again with the
#      cache warm (fresh output and pool each time), then with 256 shadows twice (the
#      cache holding the 64-shadow audit's programs, then its own too);
#   6. the scaling sweep over k.
# summary.txt gets a line per step as it ends (and the step's table), so a run cut short
# still says what finished; every step's full output is in its .log and .json files. No
# step starts after BUDGET_S seconds (default 480) and none runs past them.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
quick=${QUICK:-0}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/jaxmia-gpu.XXXXXX")  # pools and caches: not sent back
summary="$out/summary.txt"
: > "$summary"

deadline=$(($(date +%s) + ${BUDGET_S:-480}))  # no step starts after it, none runs past it

note() { echo "$*" | tee -a "$summary"; }

# step NAME LIMIT_S COMMAND...: runs COMMAND with its output in NAME.log; one summary line
step() {
  local name=$1 limit=$2
  shift 2
  local t0 t1 rc left=$((deadline - $(date +%s)))
  if [ "$left" -le 5 ]; then
    note "$(printf '%-22s skipped: the budget (BUDGET_S) is spent' "$name")"
    return 1
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  t0=$(date +%s%N)
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  t1=$(date +%s%N)
  note "$(printf '%-22s rc=%-3s %8d ms' "$name" "$rc" $(((t1 - t0) / 1000000)))"
  return $rc
}

# the device, and TF32: a float32 matmul against float64 (TF32 keeps ~10 mantissa bits)
step device 120 "$python" - <<'PY'
import os
import jax, jax.numpy as jnp, numpy as np
print("backend", jax.default_backend(), "devices", jax.devices(), "jax", jax.__version__)
print("jax_default_matmul_precision", jax.config.jax_default_matmul_precision)
if jax.default_backend() == "cpu" and os.environ.get("ALLOW_CPU") != "1":
    raise SystemExit("no GPU backend in this jax (set ALLOW_CPU=1 to rehearse on a CPU)")
a, b = (np.random.default_rng(i).standard_normal((1024, 1024)).astype(np.float32) for i in (0, 1))
exact = a.astype(np.float64) @ b.astype(np.float64)
for precision in ("default", "highest"):
    got = np.asarray(jnp.matmul(a, b, precision=precision), np.float64)
    err = float(np.abs(got - exact).max() / np.abs(exact).max())
    print(f"float32 matmul, precision={precision}: max relative error {err:.2e}",
          "(TF32-like)" if err > 1e-4 else "(full float32)")
PY
cat "$out/device.log" | tee -a "$summary"
grep -q "no GPU backend" "$out/device.log" && exit 1
(nvidia-smi || true) > "$out/nvidia-smi.txt" 2>&1

if [ "$quick" = 1 ]; then
  kd=8 kls="4 8" kcnn=4 audits="4 8" flags=(--quick) audit_flags=(--epochs 2 --n-boot 20)
  sweep=(--quick --ks 1,4 --modes vmap,sequential-jit)
else
  kd=256 kls="64 256 1024" kcnn=64 audits="64 256" flags=() audit_flags=()
  sweep=(--ks 1,16,64,256,1024 --modes vmap,sequential-jit --widths "" --cnn-k 0)
fi
tp=benchmarks/shadow_throughput.py

# the throughput table's rows (the lines after its dashes) into the summary
table() { sed -n '/^-----/,$p' "$out/$1.log" | sed '1d;/^$/,$d' | tee -a "$summary"; }

step "digits-k$kd" 150 "$python" $tp --workload digits --k "$kd" \
  --modes vmap,sequential-jit "${flags[@]}" --json "$out/digits-k$kd.json" && table "digits-k$kd"

for k in $kls; do
  seq_models=$((k > 64 ? 64 : k))
  step "location30-k$k" 180 "$python" $tp --workload location30 --k "$k" \
    --modes vmap,sequential-jit,torch-loop,torch-vmap --slow-models 16 \
    --sequential-models "$seq_models" --repeats $((k > 256 ? 1 : 2)) "${flags[@]}" \
    --json "$out/location30-k$k.json" && table "location30-k$k"
done

for mode in vmap sequential-jit; do
  spec="{\"workload\": \"mnist-cnn\", \"mode\": \"$mode\", \"k\": $kcnn, \"width\": 64, \"epochs\": 3}"
  step "cnn-k$kcnn-$mode" 150 "$python" benchmarks/scaling_sweep.py --point "$spec" &&
    tail -n 1 "$out/cnn-k$kcnn-$mode.log" | tee -a "$summary"
done

# the audits: wall time of the whole command (process start included) and its phases
phases() {
  "$python" -c 'import json, sys; m = json.load(open(sys.argv[1]))
print("  phases", m["timings_s"]); print("  attacks", m.get("timings_s_by_attack"))
print("  auc", {a: round(v["auc"], 4) for a, v in m["attacks"].items()})' "$1" | tee -a "$summary"
}
cache="$scratch/xla"  # empty for the first audit (cold); the others find its programs
for shadows in $audits; do
  for run in first second; do
    dir="$scratch/audit-$shadows-$run"
    name="audit-$shadows-$run"
    step "$name" 240 env JAXMIA_COMPILATION_CACHE="$cache" "$python" -m jaxmia.cli audit \
      --shadows "$shadows" "${audit_flags[@]}" -q -o "$dir" &&
      cp "$dir/metrics.json" "$out/$name-metrics.json" && cp "$dir/report.md" "$out/$name.md" &&
      phases "$out/$name-metrics.json"
  done
done

step sweep 300 "$python" benchmarks/scaling_sweep.py "${sweep[@]}" --json "$out/scaling.json" \
  --plot "$out/scaling.png" && sed -n '/^| workload/,$p' "$out/sweep.log" | tee -a "$summary"

rm -rf "$scratch"
note "done: $out"
