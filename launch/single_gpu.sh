#!/usr/bin/env bash
# One GPU: the whole SF-UBM pipeline of one domain pair.
#   launch/single_gpu.sh configs/food_kitchen.py runs/fk [--config.llm.checkpoint=/models/opt-6.7b]
# bf16 compute for the LLM; extra arguments go to sfubm_jax.main (e.g. --stages=llm,eval).
set -euo pipefail
CONFIG=${1:?usage: $0 CONFIG WORKDIR [main flags...]}
WORKDIR=${2:?usage: $0 CONFIG WORKDIR [main flags...]}
shift 2
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
exec python -m sfubm_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" \
  --config.llm.dtype=bfloat16 --config.llm.param_dtype=bfloat16 \
  --config.text_encoder.device=cuda --config.mesh.shape='(1,1,1)' "$@"
