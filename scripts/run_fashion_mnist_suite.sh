#!/usr/bin/env bash
# The Fashion-MNIST reproduction suite v2 (called by `make suite`; protocol: docs/reproducing.md, "Protocol"):
# instructors on the reserve, the validation sweep, a check that the configs use the sweep's choice, every student
# cell x 5 seeds, the convergence check, then the raw per-run data into docs/results/v2/raw and every table and plot
# regenerated from it. Resumable: finished runs (their `done` marker, same config text) are skipped.
#
#   bash scripts/run_fashion_mnist_suite.sh          # everything (~2 h on 2 CPU cores)
#   bash scripts/run_fashion_mnist_suite.sh sweep    # instructors + sweep, then check-choice
#   bash scripts/run_fashion_mnist_suite.sh report   # only collect + report (from finished runs)
#
# JOBS (default 2) runs that many trainings at once, each with one torch thread (OMP_NUM_THREADS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
what=${1:-all}
X=("$PY" -m geokt_plugin.experiments)

start=$(date +%s)
case "$what" in
  all|sweep)
    "${X[@]}" run instructors sweep --jobs "$JOBS"
    "${X[@]}" check-choice  # stops here when the configs do not use the sweep's choice
    if [ "$what" = all ]; then "${X[@]}" run students convergence --jobs "$JOBS"; fi ;;
  report) ;;
  *) echo "usage: $0 [all|sweep|report]" >&2; exit 2 ;;
esac
echo "training finished in $(( $(date +%s) - start ))s"
"${X[@]}" collect
"${X[@]}" report
