#!/usr/bin/env bash
# Several GPUs on one host, one process: OPT sharded over the mesh (data, fsdp, tensor).
#   launch/multi_gpu.sh configs/food_kitchen.py runs/fk --config.llm.checkpoint=/models/opt-6.7b
# MESH defaults to FSDP over every visible GPU, "(1,-1,1)"; e.g. MESH="(2,2,2)" on 8 GPUs.
# Batch sizes (config.llm.batch_size, eval_batch_size) must be multiples of data × fsdp.
set -euo pipefail
CONFIG=${1:?usage: $0 CONFIG WORKDIR [main flags...]}
WORKDIR=${2:?usage: $0 CONFIG WORKDIR [main flags...]}
shift 2
MESH=${MESH:-"(1,-1,1)"}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
exec python -m sfubm_jax.main --config="${CONFIG}" --workdir="${WORKDIR}" \
  --config.llm.dtype=bfloat16 --config.llm.param_dtype=bfloat16 \
  --config.text_encoder.device=cuda --config.mesh.shape="${MESH}" "$@"
