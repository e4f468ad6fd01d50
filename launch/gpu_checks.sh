#!/usr/bin/env bash
# The GPU checks of issue 15 in one command, for a lent GPU machine:
# launch/gpu_stage2.py at OPT-6.7B and Llama-3-8B shapes (random bf16 weights built on the
# device): PyTorch's Stage 2 step and HF generate on the same batch, our Stage 2 step
# (MFU, peak memory), the eval stage's program (greedy decoding + ranking of 20 candidates)
# and greedy decoding alone; then, while BUDGET lasts, the step with remat and with logits
# at every position. Writes to $OUT (default ./gpu_checks_out): gpu_stage2.jsonl (a line per
# part as it ends), gpu_stage2.json (everything, with versions and ratios), gpu_stage2.log
# and nvidia_smi.csv. About 7 minutes on one H200.
#   launch/gpu_checks.sh                       # every part
#   BUDGET=300 launch/gpu_checks.sh --families=opt
set -uo pipefail
OUT=${OUT:-gpu_checks_out}
mkdir -p "${OUT}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
  > "${OUT}/nvidia_smi.csv" 2>&1 || true
"${PYTHON}" launch/gpu_stage2.py --out="${OUT}" --budget="${BUDGET:-420}" \
  --parts=torch,train,eval,train_remat,train_all_logits "$@" 2>&1 | tee "${OUT}/gpu_stage2.log"
