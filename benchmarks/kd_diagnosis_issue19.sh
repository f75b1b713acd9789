#!/usr/bin/env bash
# Issue 19's diagnosis: why pixel KD hurts the protocol's dead-leaves students. Two queues, one core each.
# Data and the 42-epoch teacher first (the protocol's recipe, one thread):
#   OMP_NUM_THREADS=1 kedro run --env protocol --pipelines data --params "synthetic.family=dead_leaves,data_root=data/protocol-dead-leaves"
#   OMP_NUM_THREADS=1 kedro run --env protocol --pipelines teacher --params "synthetic.family=dead_leaves,data_root=data/protocol-dead-leaves"
# then  bash benchmarks/kd_diagnosis_issue19.sh  and
#   python benchmarks/kd_diagnosis.py report --records benchmarks/results/kd_diagnosis/dead_leaves.jsonl
set -u
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export TQDM_DISABLE=1  # evaluate_network's bars would bury the one line per student
ROOT=${ROOT:-data/protocol-dead-leaves}
RECORDS=${RECORDS:-benchmarks/results/kd_diagnosis/dead_leaves.jsonl}
run() { .venv/bin/python benchmarks/kd_diagnosis.py train --env protocol --data-root "$ROOT" --records "$RECORDS" "$@"; }
queue_a() {
  run --row baseline --row pixel_kd --row "pixel_kd_l1=pixel_kd:losses.pixel_kd.weight=1" --epochs 5 --seeds 0 1
  run --row baseline --row pixel_kd --row "pixel_kd_l1=pixel_kd:losses.pixel_kd.weight=1" --epochs 20 --seeds 0 1
}
queue_b() {
  run --row cwd --row sstkd --epochs 5 --seeds 0 1
  run --row cwd --row sstkd --epochs 20 --seeds 0 1
}
queue_a > "${RECORDS%.jsonl}_queue_a.log" 2>&1 &
queue_b > "${RECORDS%.jsonl}_queue_b.log" 2>&1 &
wait
