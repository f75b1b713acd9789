#!/usr/bin/env bash
# Issue 19's answer: the converged protocol's comparison (baseline, pixel KD, + holistic, SKD, CWD, SSTKD; 5 seeds;
# conf/converged, every weight selected on validation first: weight_selection_issue19.sh) on both built-in
# datasets, then their reports. Each stage is a real `kedro run`, resumable: a run stopped part-way (a session's
# end) resumes every student from its last epoch's checkpoint, and finished models are "up to date".
#   bash benchmarks/comparison_issue19.sh layered | dead_leaves | all
# On a CPU without bf16 arithmetic (AVX2): PARAMS=training.cpu_bf16=false. Wall times go to the log, one line a run.
set -u
LAYERED=${LAYERED:-data/converged}
DEAD_LEAVES=${DEAD_LEAVES:-data/converged-dead-leaves}
PARAMS=${PARAMS:-}
KEDRO=${KEDRO:-.venv/bin/kedro}
LOG=${LOG:-benchmarks/results/kd_diagnosis/converged_comparison_wall_times.log}

timed() {  # label, then the kedro arguments
  local label=$1 started status
  shift
  started=$(date +%s)
  echo "$(date -Is) $label: kedro run $*" >> "$LOG"
  "$KEDRO" run "$@"
  status=$?
  echo "$(date -Is) $label: exit $status after $(( $(date +%s) - started )) s" >> "$LOG"
  return $status
}
students() {  # the students and the report of one dataset, whose data and teacher are there already or made now
  local label=$1 extra=$2
  # the teacher's stages first, in the run's own process with both threads; a finished stage is "up to date"
  timed "$label data, pretraining, teacher" --env converged --pipelines data,pretraining,teacher \
    --params "$extra${PARAMS:+,$PARAMS}" || return
  timed "$label students and report" --env converged --pipelines distillation,evaluation \
    --runner sstkd.runner.StudentThreadRunner --params "$extra${PARAMS:+,$PARAMS}"
}
layered() {
  students layered "data_root=$LAYERED"
}
dead_leaves() {
  # The layered study's teacher outputs (~35 GB a seed in fp32) are a cache of exact values that only that study's
  # students read: once its report exists, they go, so that both studies' caches never need the disk together.
  if [ -s "$LAYERED/08_reporting/metrics.json" ] && [ -d "$LAYERED/06_models/teacher-outputs" ]; then
    echo "$(date -Is) layered report exists: its teacher-output cache removed" >> "$LOG"
    rm -rf "$LAYERED/06_models/teacher-outputs"
  fi
  students dead_leaves "synthetic.family=dead_leaves,data_root=$DEAD_LEAVES"
}
mkdir -p "$(dirname "$LOG")"
case ${1:-} in
  layered) layered ;;
  dead_leaves) dead_leaves ;;
  all) layered && dead_leaves ;;
  *) echo "usage: $0 layered | dead_leaves | all" >&2; exit 2 ;;
esac
