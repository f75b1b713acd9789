#!/usr/bin/env bash
# Issue 19's answer: the converged protocol's comparison (baseline, pixel KD, + holistic, SKD, CWD, SSTKD; 5 seeds;
# conf/converged) on both built-in datasets, then their reports. It refuses to start before every method's weight
# is selected on validation (weight_selection_issue19.sh: each ladder's four records committed, and the env
# carrying the winners). Each stage is a real `kedro run`, resumable: a run stopped part-way (a session's end)
# resumes every student from its last epoch's checkpoint, and finished models are "up to date".
#   bash benchmarks/comparison_issue19.sh layered | dead_leaves | all
# On a CPU without bf16 arithmetic (AVX2): PARAMS=training.cpu_bf16=false. Wall times go to the log, one line a run.
# The teacher-output cache (conf/converged's training.teacher_cache_gb, under each data root) needs that much free
# disk less what it holds already; `all` removes the layered study's cache once its run has ended. A data root
# whose report is written holds .comparison-done, and a later start passes it by (remove it to run it again).
# Every student of a study trains on one committed src/ (each starts a fresh worker process that imports it): a
# data root remembers its src/ tree at the first start, and a later start with other or uncommitted src/ refuses.
set -u
cd "$(dirname "$0")/.." || exit 1
LAYERED=${LAYERED:-data/converged}
DEAD_LEAVES=${DEAD_LEAVES:-data/converged-dead-leaves}
PARAMS=${PARAMS:-}
KEDRO=${KEDRO:-.venv/bin/kedro}
PYTHON=${PYTHON:-.venv/bin/python}
RECORDS=benchmarks/results/kd_diagnosis
LOG=${LOG:-$RECORDS/converged_comparison_wall_times.log}

selection_done() {  # every ladder's four records committed, and conf/converged running their winners
  local verdict uncommitted
  uncommitted=$(git status --porcelain -- conf/converged "$RECORDS/converged_pixel_kd_l*" \
                "$RECORDS/converged_selection_*" 2>/dev/null)
  if [ -n "$uncommitted" ]; then
    echo "conf/converged or the selection records have uncommitted changes; a study runs committed weights:" >&2
    echo "$uncommitted" >&2
    return 1
  fi
  verdict=$(OMP_NUM_THREADS=1 "$PYTHON" -m pytest -q -p no:cacheprovider tests/pipelines/test_environments.py \
    -k committed_selection 2>&1) && return
  echo "the weight selection is not finished, or conf/converged does not carry what it chose" \
       "(bash benchmarks/weight_selection_issue19.sh all; tests/pipelines/test_environments.py -k committed_selection):" >&2
  grep -E "^E +(AssertionError|assert)" <<< "$verdict" | head -n 3 >&2
  grep -qE "^E +(AssertionError|assert)" <<< "$verdict" || tail -n 5 <<< "$verdict" >&2  # e.g. a collection error
  return 1
}
disk_room() {  # data root: refuses when the teacher cache could not grow to its bound there
  local root=$1 bound held free
  bound=$(sed -n 's/.*training\.teacher_cache_gb=\([0-9.]*\).*/\1/p' <<< "$PARAMS")  # PARAMS' own, else the env's
  [ -n "$bound" ] || bound=$(sed -n 's/^ *teacher_cache_gb: *\([0-9.]*\).*/\1/p' conf/converged/parameters.yml)
  mkdir -p "$root"
  held=$(du -sk "$root/06_models/teacher-outputs" 2>/dev/null | cut -f1)
  free=$(df -k --output=avail "$root" | tail -n 1)
  if awk -v room="$(( free + ${held:-0} ))" -v bound="$bound" 'BEGIN { exit !(room / 1048576 < bound) }'; then
    echo "$root: $(( free / 1048576 )) GB free and $(( ${held:-0} / 1048576 )) GB of teacher outputs there," \
         "below the cache's bound of $bound GB (conf/converged training.teacher_cache_gb); free disk" \
         "(another study's 06_models/teacher-outputs is a cache: it can go) or lower the bound in PARAMS" >&2
    return 1
  fi
}
one_src_tree() {  # data root: refuses when its students would train on another src/ than those before them
  local root=$1 stamp="$1/.comparison-src-tree" tree
  tree=$(git rev-parse HEAD:src 2>/dev/null) || { echo "not a git checkout: src/ versions unchecked" >&2; return 0; }
  if [ -n "$(git status --porcelain -- src)" ]; then
    echo "src/ has uncommitted changes; a study's students all train on one committed src/: commit or stash them" >&2
    return 1
  fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$tree" ]; then
    echo "$root: its students train on src/ tree $(cat "$stamp") ($stamp), this checkout's is $tree; a study" \
         "mixes no code: check out its code again, or start the study in a new data root (LAYERED=, DEAD_LEAVES=)" >&2
    return 1
  fi
  mkdir -p "$root" && echo "$tree" > "$stamp"
}
RUNNING_LABEL="" RUNNING_SINCE=0 RUNNING_PID=""
# ^C or a TERM/HUP to the driver: the kedro run it cut short stops too, and its wall time goes to the log. A machine
# taken away at a session's end kills everything at once (SIGKILL cannot be trapped): a start with no "exit" or
# "interrupted" line after it in the log is such a run.
interrupted() {
  if [ -n "$RUNNING_PID" ]; then  # the run and its student workers: its own process group (setsid below)
    kill -TERM -- "-$RUNNING_PID" 2>/dev/null
    wait "$RUNNING_PID" 2>/dev/null
  fi
  [ -n "$RUNNING_LABEL" ] && echo "$(date -Is) $RUNNING_LABEL: interrupted ($1) after" \
    "$(( $(date +%s) - RUNNING_SINCE )) s; the next start resumes it" >> "$LOG"
  exit 130
}
trap 'interrupted SIGINT' INT
trap 'interrupted SIGTERM' TERM
trap 'interrupted SIGHUP' HUP
timed() {  # label, then the kedro arguments
  local label=$1 started status
  shift
  started=$(date +%s)
  RUNNING_LABEL=$label RUNNING_SINCE=$started
  echo "$(date -Is) $label: kedro run $*" >> "$LOG"
  # in the background and waited for: bash runs a trap only once its foreground child has ended. Its own process
  # group (setsid), so that the trap stops the student workers with it
  setsid "$KEDRO" run "$@" <&0 &
  RUNNING_PID=$!
  wait "$RUNNING_PID"
  status=$?
  RUNNING_LABEL="" RUNNING_PID=""
  echo "$(date -Is) $label: exit $status after $(( $(date +%s) - started )) s" >> "$LOG"
  return $status
}
students() {  # label, data root, more --params: the teacher's stages ("up to date" where done), students, report
  local label=$1 root=$2 params="data_root=$2${3:+,$3}${PARAMS:+,$PARAMS}" done="$2/.comparison-done"
  if [ -f "$done" ]; then  # its report is written: `all` goes on to the next dataset without evaluating it again
    echo "$(date -Is) $label: done before ($done; remove it to run its stages again)" | tee -a "$LOG" >&2
    return 0
  fi
  one_src_tree "$root" && disk_room "$root" || return
  timed "$label data, pretraining, teacher" --env converged --pipelines data,pretraining,teacher \
    --params "$params" || return
  timed "$label students and report" --env converged --pipelines distillation,evaluation \
    --runner sstkd.runner.StudentThreadRunner --params "$params" || return
  date -Is > "$done"
}
layered() { students layered "$LAYERED"; }
dead_leaves() { students dead_leaves "$DEAD_LEAVES" synthetic.family=dead_leaves; }

mkdir -p "$(dirname "$LOG")"
case ${1:-} in
  layered|dead_leaves|all) selection_done || exit 1 ;;
  *) echo "usage: $0 layered | dead_leaves | all" >&2; exit 2 ;;
esac
case $1 in
  layered) layered ;;
  dead_leaves) dead_leaves ;;
  all)
    layered || exit
    # the layered students are done: their teacher outputs (exact, ~35 GB a seed in fp32) are needed no more,
    # and both studies' caches need not fit the disk together
    if [ -d "$LAYERED/06_models/teacher-outputs" ]; then
      echo "$(date -Is) layered study done: its teacher-output cache removed" >> "$LOG"
      rm -rf "$LAYERED/06_models/teacher-outputs"
    fi
    dead_leaves ;;
esac
