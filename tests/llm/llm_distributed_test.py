"""Multi-host start-up arguments from explicit env variables or SLURM."""

import pytest

from sfubm_jax import distributed
from sfubm_jax.errors import UserError


def test_single_process_does_nothing():
  assert distributed.initialize_kwargs({}) is None
  assert distributed.initialize_kwargs({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
  assert distributed.maybe_initialize({}) is False


def test_explicit_env():
  env = {"COORDINATOR_ADDRESS": "h0:1234", "NUM_PROCESSES": "4", "PROCESS_ID": "2"}
  assert distributed.initialize_kwargs(env) == {
      "coordinator_address": "h0:1234", "num_processes": 4, "process_id": 2}
  with pytest.raises(UserError, match="PROCESS_ID"):
    distributed.initialize_kwargs({"COORDINATOR_ADDRESS": "h0:1234", "NUM_PROCESSES": "4"})


def test_slurm_with_several_tasks_lets_jax_detect():
  assert distributed.initialize_kwargs({"SLURM_NTASKS": "2", "SLURM_PROCID": "1"}) == {}
