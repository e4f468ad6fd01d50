#!/usr/bin/env bash
# Several hosts: one process per host, all GPUs of a host in that process.
#
# Under SLURM (jax.distributed reads SLURM_* itself):
#   srun --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 \
#     launch/multi_host.sh configs/food_kitchen.py /shared/runs/fk \
#       --config.llm.checkpoint=/shared/models/opt-6.7b
# Without SLURM, on every host (PROCESS_ID = 0 .. NUM_PROCESSES-1):
#   COORDINATOR_ADDRESS=host0:12345 NUM_PROCESSES=2 PROCESS_ID=0 launch/multi_host.sh ...
# The workdir must be on a filesystem every host sees (Orbax writes from all processes).
# MESH defaults to "(1,-1,1)" (FSDP over all GPUs of all hosts). `sfubm_jax.main` calls
# `jax.distributed.initialize` itself when it sees SLURM or the variables above; the rest
# is the one-host launch.
set -euo pipefail
exec "$(dirname "$0")/multi_gpu.sh" "$@"
