#!/usr/bin/env bash
# Issue 19's equal tuning on the converged recipe: each method's own weight chosen on validation at seed 0, with the
# budget pixel KD had (benchmarks/README.md "Issue 19" §8): its published weight w and w/3, w/10, w/30 (w/32 is the
# papers' lambda x lr product at our lr 0.32 against their 0.01). Every row keeps the weights already selected
# (lambda_pi 0.3, in conf/converged). Validation mIoU is all a selection reads, so the per-epoch probes are off.
# Data, pretrained backbones and teacher first (2 threads, ~50 min on an AVX512-BF16 CPU, ~100 min on an AVX2 one):
#   kedro run --env converged --pipelines data,pretraining,teacher   (AVX2: add --params training.cpu_bf16=false)
# then  bash benchmarks/weight_selection_issue19.sh holistic_cwd   (two queues, one core each)  and
#   python benchmarks/kd_diagnosis.py report --records benchmarks/results/kd_diagnosis/converged_<stem>.jsonl
# A method whose other terms are selected elsewhere (SKD's and SSTKD's holistic weight: pixel KD + holistic's)
# waits for that selection: `skd_sstkd` is run once conf/converged carries it.
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
run() {  # records: one file per row, committed as soon as it exists; a row already recorded is not run again
  local row=$1 label=${1%%=*}
  local records="$OUT/converged_selection_${label}_r10_120_epochs_layered.jsonl"
  if [ -s "$records" ]; then echo "$label: recorded in $records"; return; fi
  .venv/bin/python benchmarks/kd_diagnosis.py train --env converged --data-root "$ROOT" --no-probes --params "$PARAMS" \
    --checkpoint-root "$CHECKPOINTS" --epochs 120 --seeds 0 --row "$row" --records "$records"
}
# Each queue's rows in the order that brackets the range first: w, w/30, w/10, w/3
HOLISTIC=("holistic_0.1=pixel_kd_adversarial"
          "holistic_0.003=pixel_kd_adversarial:losses.adversarial.weight=0.003"
          "holistic_0.01=pixel_kd_adversarial:losses.adversarial.weight=0.01"
          "holistic_0.03=pixel_kd_adversarial:losses.adversarial.weight=0.03")
CWD=("cwd_3=cwd"
     "cwd_0.1=cwd:losses.channelwise.weight=0.1"
     "cwd_0.3=cwd:losses.channelwise.weight=0.3"
     "cwd_1=cwd:losses.channelwise.weight=1")
PAIRWISE=("pairwise_0.5=skd"
          "pairwise_0.015=skd:losses.pairwise.weight=0.015"
          "pairwise_0.05=skd:losses.pairwise.weight=0.05"
          "pairwise_0.15=skd:losses.pairwise.weight=0.15")
# SSTKD's two texture weights scaled together: no published value, so the issue-9 sweep's 0.3 and 1.0 stand for w
TEXTURE=("texture_x1=sstkd"
         "texture_x0.033=sstkd:losses.structural.weight=0.01:losses.statistical.weight=0.033"
         "texture_x0.1=sstkd:losses.structural.weight=0.03:losses.statistical.weight=0.1"
         "texture_x0.33=sstkd:losses.structural.weight=0.1:losses.statistical.weight=0.33")
queue() {  # one core's rows, one after another, into the queue's log
  local name=$1; shift
  for row in "$@"; do run "$row"; done > "$OUT/converged_selection_$name.log" 2>&1
}
case ${1:-} in
  holistic_cwd) queue holistic "${HOLISTIC[@]}" & queue cwd "${CWD[@]}" & wait ;;
  skd_sstkd) queue pairwise "${PAIRWISE[@]}" & queue texture "${TEXTURE[@]}" & wait ;;
  *) echo "usage: $0 holistic_cwd | skd_sstkd" >&2; exit 2 ;;
esac
