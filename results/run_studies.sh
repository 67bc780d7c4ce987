#!/usr/bin/env bash
# The committed studies of issue 14, in results/: the privacy-utility frontier on
# Location-30, the shadow-quality studies and the factors of vulnerability, and their
# small-multiples figures. Run from anywhere: bash results/run_studies.sh
#
# * Stops at the first failure (a setting or factor this checkout does not have yet fails
#   before any training, with one line in results/NAME.log).
# * Skips a study whose study.json exists, so running it again resumes; a study
#   interrupted mid-way resumes from the shadow pools it keeps in results/NAME/pools.
# * Sized for about 30 minutes on 2 CPU cores: one Location-30 audit with 64 shadows
#   took 21 s there, with 16 shadows 12 s (n-boot 0; compilation cached). Frontier:
#   17 settings x 64 shadows (~12 min, DP-SGD and the adversarial defences cost more);
#   factors of vulnerability: 24 audits x 32 shadows (~7 min, some share a pool);
#   shadow quality: ~20 audits x 16 shadows (~6 min).
#
# Environment: RESULTS (output root, default results), EXTRA (flags appended to every
# study, e.g. "--dataset digits --shadows 4 --epochs 3" for a quick check), ONLY (run only
# the studies whose name contains it), FRONTIER (the frontier's settings: a TOML file or
# inline "none; NAME=KEY:VALUE,...").
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's jaxmia
jaxmia() { python -m jaxmia.cli "$@"; }
RESULTS=${RESULTS:-results}
EXTRA=${EXTRA:-}
ONLY=${ONLY:-}
FRONTIER=${FRONTIER:-results/frontier-location30.toml}

study() {  # study NAME ARGS...: jaxmia study ARGS into $RESULTS/NAME, unless done
  local name=$1 out="$RESULTS/$1"
  shift
  [[ -z $ONLY || $name == *"$ONLY"* ]] || return 0
  if [[ -f $out/study.json ]]; then
    echo "skip $name: $out/study.json exists"
    return 0
  fi
  echo "$(date -u +%H:%M:%S) $name: jaxmia study $* --n-boot 0 $EXTRA -o $out"
  mkdir -p "$RESULTS"
  # shellcheck disable=SC2086  # EXTRA is a list of flags
  if ! jaxmia study "$@" --n-boot 0 $EXTRA -o "$out" >"$out.stdout" 2>"$out.log"; then
    echo "FAILED $name (see $out.log):" >&2
    tail -n 3 "$out.log" >&2
    exit 1
  fi
}

# 1. The privacy-utility frontier: every defence, shadows defended as the target.
study frontier-location30 --factor defence --values "$FRONTIER" --shadows 64

# 2. Factors of vulnerability (target trained as by default: 128 tanh units, 30 epochs).
study study-epochs --factor epochs --values 5,10,20,40,80 --shadows 32
study study-width --factor width --values 16,32,64,128,256,512 --shadows 32
study study-target-size --factor target_size --values 250,500,1000,2000 --shadows 32
study study-classes --factor classes --values 2,5,10,20,30 --shadows 32
study study-access --factor access --values probs,topk,label,loss --shadows 32

# 3. Shadow quality: the shadows differ from the target (width 128, depth 1, 30 epochs,
#    learning rate 1e-3, every member of its half of the records, the target's
#    distribution). shadow_data_size: the fraction of its members a shadow trains on;
#    shadow_shift: strength of a class-prior shift (a fixed half of the classes loses
#    that fraction of each shadow's members) or of a feature shift (that fraction of
#    the features zeroed for the shadows).
study study-shadow-width --factor shadow_width --values 16,32,128,512 --shadows 16
study study-shadow-depth --factor shadow_depth --values 1,2,3 --shadows 16
study study-shadow-epochs --factor shadow_epochs --values 5,10,30,60 --shadows 16
study study-shadow-lr --factor shadow_lr --values 0.0001,0.001,0.01 --shadows 16
study study-shadow-data-size --factor shadow_data_size --values 0.25,0.5,1 --shadows 16
study study-shadow-shift --factor shadow_shift --values none,0.25,0.5,0.75 --shadows 16
study study-shadow-shift-features --factor shadow_shift --values none,0.25,0.5,0.75 \
  --shadow-shift-kind features --shadows 16

# 4. The figures of several studies (cheap: redrawn on every run from what exists).
plots() {  # plots OUT.png NAME...: small multiples of the studies that exist
  local out=$1 dirs=()
  shift
  for name in "$@"; do
    if [[ -f $RESULTS/$name/study.json ]]; then dirs+=("$RESULTS/$name"); fi
  done
  if ((${#dirs[@]})); then jaxmia plot-studies "$out" "${dirs[@]}"; fi
}
SHADOW_QUALITY=(study-shadow-width study-shadow-depth study-shadow-epochs study-shadow-lr
  study-shadow-data-size study-shadow-shift study-shadow-shift-features)
plots "$RESULTS/shadow-quality.png" "${SHADOW_QUALITY[@]}"
plots "$RESULTS/factors-of-vulnerability.png" study-epochs study-width study-target-size \
  study-classes study-access study-shadow-width study-shadow-data-size study-shadow-shift

# 5. DP-SGD: the noise study (Poisson-sampled batches) and the empirical audit of DP training
#    (2,048 models per accountant epsilon; about 6-12 minutes on 2 cores).
study study-dp --factor dp_noise --values none,0.5,1,2,4,8 --lr 0.005 --shadows 16
if [[ (-z $ONLY || dp-audit == *"$ONLY"*) && ! -f $RESULTS/dp-audit/dp_audit.json ]]; then
  echo "$(date -u +%H:%M:%S) dp-audit: jaxmia dp-audit --output-dir $RESULTS/dp-audit"
  jaxmia dp-audit --output-dir "$RESULTS/dp-audit" >"$RESULTS/dp-audit.stdout" \
    2>"$RESULTS/dp-audit.log" || { echo "FAILED dp-audit (see $RESULTS/dp-audit.log)" >&2; exit 1; }
fi
