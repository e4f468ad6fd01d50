"""Mesh shapes: -1 fills, bad shapes are clear errors; 8 forced CPU devices exist."""

import jax
import pytest

from sfubm_jax import sharding
from sfubm_jax.errors import UserError


def test_eight_cpu_devices_are_forced():
  assert len(jax.devices()) == 8


@pytest.mark.parametrize(
    "shape,expected",
    [((-1, 1, 1), (8, 1, 1)), ((1, -1, 2), (1, 4, 2)), ((2, 2, 2), (2, 2, 2))],
)
def test_resolve_mesh_shape(shape, expected):
  assert sharding.resolve_mesh_shape(shape, 8) == expected
  mesh = sharding.make_mesh(shape)
  assert tuple(mesh.shape.values()) == expected
  assert sharding.batch_divisor(mesh) == expected[0] * expected[1]


@pytest.mark.parametrize("shape", [(-1, -1, 1), (3, -1, 1), (2, 2, 1), (1, 8)])
def test_bad_mesh_shapes(shape):
  with pytest.raises(UserError):
    sharding.resolve_mesh_shape(shape, 8)
