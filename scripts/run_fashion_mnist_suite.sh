#!/usr/bin/env bash
# The Fashion-MNIST reproduction suite (called by `make suite`): instructors, then every student config x 3 seeds,
# then the comparison report into docs/results/. Resumable: finished runs (their `done` marker) are skipped, so
# re-running after an interruption continues where it stopped.
#
#   bash scripts/run_fashion_mnist_suite.sh            # instructors + students + report (the sweep is not re-run)
#   bash scripts/run_fashion_mnist_suite.sh sweep      # instructors + the validation sweep + its report
#   bash scripts/run_fashion_mnist_suite.sh all        # instructors + sweep + students + both reports
#
# JOBS (default 2) runs that many trainings at once, each with one torch thread (OMP_NUM_THREADS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
OUT=${OUT:-docs/results}
BASE=runs/fashion_mnist/theodorakopoulos2021
what=${1:-students}

case "$what" in
  students) phases=(instructors students) ;;
  sweep) phases=(instructors sweep) ;;
  all) phases=(instructors sweep students) ;;
  *) echo "usage: $0 [students|sweep|all]" >&2; exit 2 ;;
esac

start=$(date +%s)
status=0
"$PY" -m geokt_plugin.experiments run "${phases[@]}" --jobs "$JOBS" || status=$?
echo "training finished in $(( $(date +%s) - start ))s (exit $status)"

report() {  # report NAME MIN_SEEDS DIRS...: one geokt-compare over the given experiment folders
  local name=$1 min_seeds=$2; shift 2
  local dirs=()
  for d in "$@"; do
    for s in "$BASE/$d"/*/seed*; do [ -d "$s" ] && dirs+=("$s"); done
  done
  if [ ${#dirs[@]} -gt 0 ]; then
    "$PY" -m geokt_plugin.reporting "${dirs[@]}" --out "$OUT/$name" --min-seeds "$min_seeds"
  fi
}
report instructors 1 instructors                   # one seed each, by design
if [[ " ${phases[*]} " == *" sweep "* ]]; then
  report sweep 1 sweep                             # one seed per setting, by design
fi
if [[ " ${phases[*]} " == *" students "* ]]; then
  report fashion_mnist 3 smaller_model across_architectures external_data limited_data
fi
exit $status
