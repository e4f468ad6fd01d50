"""Device meshes and batch sharding.

Mesh axes are ("data", "fsdp", "tensor"); the shape comes from config, where one entry
may be -1 (it takes the remaining devices). Batches are sharded over ("data", "fsdp")
on their leading dimension; model-specific partition rules live beside each model
(by logical axes, see `sfubm_jax.models.causal_lm.logical`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sfubm_jax.errors import UserError

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Replaces a single -1 in `shape` so that the product equals `num_devices`."""
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(AXES):
    raise UserError(f"mesh shape {shape} must have {len(AXES)} entries for axes {AXES}")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise UserError(f"mesh shape {shape}: entries are positive, with at most one -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise UserError(f"mesh shape {shape} does not divide {num_devices} devices")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise UserError(f"mesh shape {shape} needs {math.prod(shape)} devices, have {num_devices}")
  return shape


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices=None) -> Mesh:
  """A classic (Auto axis types) mesh over `devices` (default: all)."""
  devices = jax.devices() if devices is None else list(devices)
  shape = resolve_mesh_shape(shape, len(devices))
  return Mesh(np.asarray(devices).reshape(shape), AXES)


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
  """Leading dim over the batch axes, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh) -> int:
  """Batch sizes must be multiples of this (the product of the batch axes)."""
  return int(mesh.shape["data"] * mesh.shape["fsdp"])
