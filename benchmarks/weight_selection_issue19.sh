#!/usr/bin/env bash
# Issue 19's equal tuning on the converged recipe: each method's own weight chosen on validation at seed 0, with the
# budget pixel KD had (benchmarks/README.md "Issue 19" §8): its published weight w and w/3, w/10, w/30 (w/32 is the
# papers' lambda x lr product at our lr 0.32 against their 0.01). Every row keeps the weights already selected
# (lambda_pi 0.3, in conf/converged). Validation mIoU is all a selection reads, so the per-epoch probes are off.
# Data, pretrained backbones and teacher first (2 threads, ~50 min on an AVX512-BF16 CPU, ~100 min on an AVX2 one):
#   kedro run --env converged --pipelines data,pretraining,teacher   (AVX2: add --params training.cpu_bf16=false)
# then  bash benchmarks/weight_selection_issue19.sh all   (or its two stages, holistic_cwd then skd_sstkd), and
#   python benchmarks/kd_diagnosis.py report --records benchmarks/results/kd_diagnosis/converged_<stem>.jsonl
# SKD and SSTKD carry the holistic term, so their rows run once its lambda_d is selected: `skd_sstkd` takes it from
# LAMBDA_D or, when unset, selects it from the four holistic records (kd_diagnosis.py select), refusing to run
# before all four have finished.
set -u
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export TQDM_DISABLE=1  # evaluate_network's bars would bury the one line per epoch
ROOT=${ROOT:-data/converged}
OUT=${OUT:-benchmarks/results/kd_diagnosis}
# kedro run --params-style overrides for every row: on a CPU without bf16 arithmetic (AVX2), conf/converged's
# cpu_bf16 is refused and the study runs fp32: PARAMS=training.cpu_bf16=false
PARAMS=${PARAMS:-}
# per-epoch checkpoints: a queue stopped part-way (a session's end) resumes its student where it stopped
CHECKPOINTS=${CHECKPOINTS:-$ROOT/06_models/selection-checkpoints}
PYTHON=${PYTHON:-.venv/bin/python}
records() { echo "$OUT/converged_selection_${1}_r10_120_epochs_layered.jsonl"; }
run() {  # records: one file per row, committed as soon as it exists; a row already recorded is not run again
  local row=$1 label=${1%%=*}
  if [ -s "$(records "$label")" ]; then echo "$label: recorded in $(records "$label")"; return; fi
  "$PYTHON" benchmarks/kd_diagnosis.py train --env converged --data-root "$ROOT" --no-probes --params "$PARAMS" \
    --checkpoint-root "$CHECKPOINTS" --epochs 120 --seeds 0 --row "$row" --records "$(records "$label")"
}
pool() {  # the rows in the order given, one core each: a core takes the next row as soon as its last one ends;
  # fails (after the others have run) if a row failed: its log says why
  local row pid failed=0 pids=()
  mkdir -p "$OUT"
  for row in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
    run "$row" >> "$OUT/converged_selection_${row%%=*}.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  return $failed
}
selected() {  # the ladder value of the row best on validation (its label's suffix, without what follows an @),
  # once every row has finished
  local label
  label=$("$PYTHON" benchmarks/kd_diagnosis.py select --records "${@/#/$OUT/converged_selection_}") || exit 1
  label=${label##*_}
  echo "${label%%@*}"
}
# Each ladder in the order that brackets the range first: w, w/30, w/10, w/3. Every row names its weights: the
# env carries the selected ones since (conf/converged), so a bare method would train those, not w.
HOLISTIC=("holistic_0.1=pixel_kd_adversarial:losses.adversarial.weight=0.1"
          "holistic_0.003=pixel_kd_adversarial:losses.adversarial.weight=0.003"
          "holistic_0.01=pixel_kd_adversarial:losses.adversarial.weight=0.01"
          "holistic_0.03=pixel_kd_adversarial:losses.adversarial.weight=0.03")
CWD=("cwd_3=cwd:losses.channelwise.weight=3"
     "cwd_0.1=cwd:losses.channelwise.weight=0.1"
     "cwd_0.3=cwd:losses.channelwise.weight=0.3"
     "cwd_1=cwd:losses.channelwise.weight=1")
holistic_cwd() {  # interleaved: both ladders bracket their range first
  pool "${HOLISTIC[0]}" "${CWD[0]}" "${HOLISTIC[1]}" "${CWD[1]}" "${HOLISTIC[2]}" "${CWD[2]}" \
       "${HOLISTIC[3]}" "${CWD[3]}"
}
skd_sstkd() {
  local lambda_d=${LAMBDA_D:-}
  if [ -z "$lambda_d" ]; then
    lambda_d=$(selected "${HOLISTIC[@]/%=*/_r10_120_epochs_layered.jsonl}") || exit 1
  fi
  echo "lambda_d $lambda_d (the holistic weight of every SKD and SSTKD row)"
  # the labels carry lambda_d: a rerun with another one trains its own rows instead of finding these recorded
  local holistic=":losses.adversarial.weight=$lambda_d" ld="@ld$lambda_d"
  # SSTKD's two texture weights scaled together: no published value, so the issue-9 sweep's 0.3 and 1.0 stand for
  # w. Its rows cost ~1.5x SKD's, so they go first: the last row to end is a short one.
  pool "texture_x1$ld=sstkd:losses.structural.weight=0.3:losses.statistical.weight=1$holistic" \
       "texture_x0.033$ld=sstkd:losses.structural.weight=0.01:losses.statistical.weight=0.033$holistic" \
       "texture_x0.1$ld=sstkd:losses.structural.weight=0.03:losses.statistical.weight=0.1$holistic" \
       "texture_x0.33$ld=sstkd:losses.structural.weight=0.1:losses.statistical.weight=0.33$holistic" \
       "pairwise_0.5$ld=skd:losses.pairwise.weight=0.5$holistic" \
       "pairwise_0.015$ld=skd:losses.pairwise.weight=0.015$holistic" \
       "pairwise_0.05$ld=skd:losses.pairwise.weight=0.05$holistic" \
       "pairwise_0.15$ld=skd:losses.pairwise.weight=0.15$holistic"
}
case ${1:-} in
  holistic_cwd) holistic_cwd ;;
  skd_sstkd) skd_sstkd ;;
  all) holistic_cwd; status=$?; skd_sstkd || status=1; exit $status ;;  # SKD and SSTKD need the holistic rows only
  *) echo "usage: $0 holistic_cwd | skd_sstkd | all" >&2; exit 2 ;;
esac
