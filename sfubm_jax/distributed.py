"""Multi-host start-up: `jax.distributed.initialize` from SLURM or explicit env variables.

`maybe_initialize()` must run before JAX touches a device. It initialises when the
process is one of several: explicitly with COORDINATOR_ADDRESS (host:port),
NUM_PROCESSES and PROCESS_ID, or under SLURM with more than one task (JAX reads the
SLURM variables itself). A single process does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from absl import logging

from sfubm_jax.errors import UserError

EXPLICIT = ("COORDINATOR_ADDRESS", "NUM_PROCESSES", "PROCESS_ID")


def initialize_kwargs(env: Mapping[str, str]) -> dict | None:
  """Arguments of jax.distributed.initialize for `env`; None = single process."""
  given = [k for k in EXPLICIT if env.get(k)]
  if given:
    missing = [k for k in EXPLICIT if not env.get(k)]
    if missing:
      raise UserError(f"multi-host launch: {given} are set but {missing} are not; set all of "
                      f"{list(EXPLICIT)} (see launch/multi_host.sh)")
    return {"coordinator_address": env["COORDINATOR_ADDRESS"],
            "num_processes": int(env["NUM_PROCESSES"]), "process_id": int(env["PROCESS_ID"])}
  if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
    return {}  # jax detects the SLURM cluster (coordinator = first node of the job)
  return None


def maybe_initialize(env: Mapping[str, str] | None = None) -> bool:
  """Initialises jax.distributed when launched as several processes; True if it did."""
  kwargs = initialize_kwargs(os.environ if env is None else env)
  if kwargs is None:
    return False
  import jax

  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True
