#!/usr/bin/env bash
# The GPU checks of issue 6 in one go, for a lent GPU machine (one or more GPUs):
#   1. launch/gpu_smoke.py: a short, sharded Stage 2 loop on an OPT-6.7B-shaped LLM;
#   2. benchmarks/stage2_answer_span.py at OPT-6.7B shape (answer-span vs all logits).
# Each prints one JSON line; both lines are also written to $OUT/gpu_checks.jsonl
# (OUT defaults to ./gpu_checks_out). Takes about 3 minutes on one H100/H200.
#   launch/gpu_checks.sh            # FSDP over every visible GPU
set -uo pipefail
OUT=${OUT:-gpu_checks_out}
mkdir -p "${OUT}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
status=0
python launch/gpu_smoke.py --steps=5 | tee -a "${OUT}/gpu_checks.jsonl" || status=1
python benchmarks/stage2_answer_span.py --shape=opt-6.7b --batch=8 --seq=512 --steps=5 \
  | tee -a "${OUT}/gpu_checks.jsonl" || status=1
exit ${status}
