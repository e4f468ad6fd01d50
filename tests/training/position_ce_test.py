"""Cross-entropy at the real positions only (gathered, optionally chunked) against the
all-position formulation the steps used before: same loss and gradients to 1e-5."""

import fkd_fixtures as fx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from seqrec_synthetic import synthetic_split

from sfubm_jax.models import fkd
from sfubm_jax.models.gru4rec import GRU4Rec
from sfubm_jax.models.sasrec import SASRec
from sfubm_jax.training import position_ce
from sfubm_jax.training import seqrec_train as st


def _all_positions_ce(hidden, table, labels, weights):
  """Σ w · CE with logits at every position over the whole table (the old step)."""
  logits = jnp.einsum("bld,nd->bln", hidden, table)  # [B, L, N]
  return jnp.sum(weights * optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _assert_trees_close(a, b, tol=1e-5):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("capacity,chunk", [(None, None), (24, None), (24, 7), (20, 50)])
def test_weighted_ce_equals_all_positions(capacity, chunk):
  rng = np.random.default_rng(0)
  b, length, d, n = 4, 9, 6, 50
  hidden = jnp.asarray(rng.normal(size=(b, length, d)), jnp.float32)
  table = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, n, size=(b, length)), jnp.int32)
  mask = rng.random((b, length)) < 0.45
  assert mask.sum() == 20
  weights = jnp.asarray(mask * rng.random((b, length)), jnp.float32)
  got_fn = lambda h, t: position_ce.weighted_ce(h, t, labels, weights, capacity=capacity,
                                                chunk=chunk)
  ref_fn = lambda h, t: _all_positions_ce(h, t, labels, weights)
  got, got_grads = jax.jit(jax.value_and_grad(got_fn, argnums=(0, 1)))(hidden, table)
  ref, ref_grads = jax.jit(jax.value_and_grad(ref_fn, argnums=(0, 1)))(hidden, table)
  np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
  _assert_trees_close(got_grads, ref_grads)


def test_overfull_buffer_gives_nan():
  hidden, table = jnp.ones((2, 3, 4)), jnp.ones((5, 4))
  labels, weights = jnp.zeros((2, 3), jnp.int32), jnp.ones((2, 3))
  ce = jax.jit(position_ce.weighted_ce, static_argnames=("capacity", "chunk"))
  assert np.isnan(float(ce(hidden, table, labels, weights, capacity=5)))
  assert np.isfinite(float(ce(hidden, table, labels, weights, capacity=6)))


def test_position_capacity_bounds_every_batch_of_the_run():
  seqs = synthetic_split(num_users=50).history("train")[0]
  cap = position_ce.position_capacity(seqs, 8, seed=3, epochs=4, multiple=1)
  counts = [int((b[:, :-1] != 0).sum()) for e in range(4)
            for b in st.epoch_batches(seqs, 8, seed=3, epoch=e)]
  assert cap == max(counts)
  assert position_ce.position_capacity(seqs, 8, 3, 4) == -(-cap // 8) * 8


def _old_next_item_loss(model, params, seqs, key):
  inputs, targets = seqs[:, :-1], seqs[:, 1:]
  hidden = model.apply(params, inputs, deterministic=False, rngs={"dropout": key})
  table = params["params"]["item_emb"]["embedding"][1:]
  mask = (inputs != 0).astype(jnp.float32)
  return _all_positions_ce(hidden, table, jnp.maximum(targets - 1, 0), mask / mask.sum())


@pytest.mark.parametrize("model", [
    SASRec(num_items=30, dim=16, num_blocks=2, num_heads=1, dropout=0.2, max_len=10),
    GRU4Rec(num_items=30, dim=16, num_layers=1, dropout=0.2, max_len=10)],
    ids=["sasrec", "gru4rec"])
def test_next_item_loss_and_grads_equal_all_positions(model):
  seqs = jnp.asarray(synthetic_split(num_users=16).history("train")[0])  # [16, 10]
  params = model.init(jax.random.key(0), jnp.zeros((1, 10), jnp.int32))
  capacity = position_ce.position_capacity(np.asarray(seqs), 16, seed=0, epochs=1)
  assert capacity < seqs.shape[0] * (seqs.shape[1] - 1)
  key = jax.random.key(3)  # dropout on: both sides draw the same masks
  got_fn = lambda p: st.next_item_loss(model, p, seqs, key=key, capacity=capacity)[0]
  got, got_grads = jax.jit(jax.value_and_grad(got_fn))(params)
  ref_fn = jax.value_and_grad(lambda p: _old_next_item_loss(model, p, seqs, key))
  ref, ref_grads = jax.jit(ref_fn)(params)
  np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
  _assert_trees_close(got_grads, ref_grads)


@pytest.mark.parametrize("rec_positions", ["all", "last"])
def test_fkd_rec_loss_and_grads_equal_all_positions(rec_positions):
  n, d, dt, length = 40, 8, 6, 8
  split, local, federated = fx.cluster_domain(12, 4, 10, length, dt, seed=0)
  seqs = jnp.asarray(split.history("train")[0])  # [12, 8]
  encode, sasrec = fx.frozen_sasrec(n, d, length, seed=1)
  hp = fx.hparams(encode, d, dt, hidden=5, rec_positions=rec_positions)
  params = fkd.init_params(jax.random.PRNGKey(2), hp)
  frozen = fkd.frozen_tables(sasrec, sasrec["params"]["item_emb"]["embedding"], federated,
                             local)
  capacity = position_ce.position_capacity(np.asarray(seqs), 12, seed=0, epochs=1)
  key = jax.random.PRNGKey(4)

  def ref_rec(p):
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    mask = inputs > 0
    if rec_positions == "last":
      mask = mask.at[:, :-1].set(False)
    logits = jnp.einsum("bld,nd->bln", encode(sasrec, inputs),
                        fkd.fused_item_embeddings(p, frozen, hp)[1:])
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets - 1, 0))
    return fkd.masked_mean(nll, mask)

  got_fn = lambda p: fkd.fkd_loss(p, frozen, {"seqs": seqs, "touched": seqs}, key=key, hp=hp,
                                  rec_capacity=capacity)[1]["l_rec"]
  got, got_grads = jax.jit(jax.value_and_grad(got_fn))(params)
  ref, ref_grads = jax.jit(jax.value_and_grad(ref_rec))(params)
  np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
  _assert_trees_close(got_grads, ref_grads)
