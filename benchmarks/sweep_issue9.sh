#!/usr/bin/env bash
# The issue-9 sweep on the fixed texture losses: 3 seeds per row, one core per job, three queues side by side.
# Run from the project root after `kedro run` (data + teacher):  bash benchmarks/sweep_issue9.sh
# Rows go to benchmarks/results/sweep_issue9.jsonl; tabulate with
#   python benchmarks/compare_methods.py --table benchmarks/results/sweep_issue9.jsonl --reference pixel_kd
set -u
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RECORDS=benchmarks/results/sweep_issue9.jsonl
row() {  # row LABEL METHOD [--set ...]
  local label=$1 method=$2; shift 2
  .venv/bin/python benchmarks/compare_methods.py --methods "$method" --label "$label" --seeds 0 1 2 \
    --records "$RECORDS" "$@"
}
S=sstkd.losses
# Most important rows first in each queue: on a shared 2-core machine the tail may not finish in a session.
queue_a() {
  row baseline baseline
  row pixel_kd pixel_kd
  row "pixel_kd_adversarial (λ_adv 0.1)" pixel_kd_adversarial
  row "pixel_kd_adversarial (λ_adv 0.001)" pixel_kd_adversarial --set pixel_kd_adversarial.losses.adversarial.weight=0.001
  row "sstkd, L_str border 2" sstkd --set $S.structural.border=2
  row "sstkd, CDM levels 2" sstkd --set $S.structural.levels=2
}
queue_b() {
  row "sstkd (λ_str 0.3, λ_sta 1)" sstkd
  row "sstkd λ_sta 0.3" sstkd --set $S.statistical.weight=0.3
  row "sstkd, clip-limit denoising" sstkd --set $S.statistical.denoise=clip_limit
  row "sstkd λ_sta 3" sstkd --set $S.statistical.weight=3
  row "sstkd, importance 0.5" sstkd --set $S.statistical.importance=0.5
}
queue_c() {
  row "sstkd λ_str 1" sstkd --set $S.structural.weight=1
  row "sstkd, DTIEM joint standardisation" sstkd --set $S.statistical.normalize=joint
}
queue_a > benchmarks/results/sweep_issue9_queue_a.log 2>&1 &
queue_b > benchmarks/results/sweep_issue9_queue_b.log 2>&1 &
queue_c > benchmarks/results/sweep_issue9_queue_c.log 2>&1 &
wait
