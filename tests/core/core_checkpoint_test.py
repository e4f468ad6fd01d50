"""Orbax wrapper: optax state and meta round-trip, latest step wins, old ones pruned."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sfubm_jax.checkpoint import Checkpointer


def test_save_restore_round_trip(tmp_path):
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = tx.update(grads, opt_state, params)
  state = {"params": params, "opt": opt_state}
  ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, jax.tree.map(lambda x, s=step: x * s, state), {"step": step, "epoch": 0})
  ckpt.wait()
  assert ckpt.latest_step() == 3
  assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == [2, 3]
  fresh = Checkpointer(tmp_path / "ckpt")
  restored, meta = fresh.restore(state)
  assert meta == {"step": 3, "epoch": 0}
  assert type(restored["opt"][0]).__name__ == type(opt_state[0]).__name__
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b) * 3)
  fresh.close()
