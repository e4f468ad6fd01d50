"""Pre-training numerics: the loss against numpy, a sharded step against one device, the
data order, and that training on a small split lowers the loss and beats random ranking."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from seqrec_synthetic import synthetic_split

from sfubm_jax import sharding
from sfubm_jax.models.sasrec import SASRec
from sfubm_jax.training import seqrec_train as st


def _setup(num_items=30, max_len=10):
  model = SASRec(num_items=num_items, dim=16, num_blocks=2, num_heads=1, dropout=0.2,
                 max_len=max_len)
  tx = optax.adam(1e-2)
  state = st.init_state(model, tx, jax.random.key(0), max_len)
  return model, tx, state


def test_loss_equals_numpy_cross_entropy():
  model, _, state = _setup()
  seqs = synthetic_split(num_users=8).history("train")[0]  # [8, 10]
  loss, aux = st.next_item_loss(model, state["params"], jnp.asarray(seqs), key=None)
  hidden = np.asarray(model.apply(state["params"], seqs[:, :-1]), np.float64)
  table = np.asarray(state["params"]["params"]["item_emb"]["embedding"], np.float64)
  total, count = 0.0, 0
  for b in range(seqs.shape[0]):
    for t in range(seqs.shape[1] - 1):
      if seqs[b, t] == 0:
        continue
      logits = table[1:] @ hidden[b, t]
      log_z = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
      total += log_z - logits[seqs[b, t + 1] - 1]
      count += 1
  assert int(aux["positions"]) == count
  np.testing.assert_allclose(float(loss), total / count, rtol=1e-5)


def test_epoch_batches_are_a_seeded_padded_permutation():
  seqs = np.arange(1, 11, dtype=np.int32)[:, None] * np.ones((1, 4), np.int32)
  a = st.epoch_batches(seqs, 4, seed=3, epoch=1)
  b = st.epoch_batches(seqs, 4, seed=3, epoch=1)
  c = st.epoch_batches(seqs, 4, seed=3, epoch=2)
  assert [x.shape for x in a] == [(4, 4)] * 3
  np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
  rows = np.concatenate(a)[:, 0]
  assert sorted(rows[rows != 0].tolist()) == list(range(1, 11))
  assert (rows == 0).sum() == 2 and np.all(np.concatenate(a)[-2:] == 0)
  assert not np.array_equal(np.concatenate(a), np.concatenate(c))


def test_sharded_step_equals_single_device_step():
  assert len(jax.devices()) == 8
  model, tx, state = _setup()
  seqs = synthetic_split(num_users=16).history("train")[0]
  step = st.make_train_step(model, tx, jax.random.key(7))
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = sharding.make_mesh((-1, 1, 1), devices)
    placed = st.place_state(jax.tree.map(jnp.copy, state), mesh)
    jitted = st.jit_train_step(step, placed, mesh)
    new_state, loss = jitted(placed, seqs)
    new_state, loss2 = jitted(new_state, seqs)
    assert len(new_state["params"]["params"]["item_emb"]["embedding"].devices()) == len(devices)
    results.append((jax.device_get(new_state), float(loss), float(loss2)))
  (s1, l1, m1), (s8, l8, m8) = results
  np.testing.assert_allclose([l8, m8], [l1, m1], rtol=1e-6)
  checked = 0
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(s1), jax.tree.leaves(s8)):
    name = jax.tree_util.keystr(path)
    # The attention key bias has an exactly-zero gradient (softmax ignores a per-query
    # constant), so Adam turns float noise of ~1e-9 into +-lr steps on either side.
    if "['params']['params']" in name and "['key']['bias']" in name:
      continue
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    checked += 1
  assert checked > 40 and int(s8["step"]) == 2


def test_batch_size_must_divide_over_devices():
  mesh = sharding.make_mesh((-1, 1, 1))
  with pytest.raises(Exception, match="multiple of the 8 devices"):
    st.check_batch_size(12, mesh)


def test_training_lowers_loss_and_beats_random(tmp_path):
  from sfubm_jax.training.pretrain_stage import train_model

  split = synthetic_split(num_users=128, num_items=30)
  mesh = sharding.make_mesh((-1, 1, 1))
  spec = dict(num_items=30, dim=16, num_blocks=2, num_heads=1, dropout=0.1, max_len=10)
  hp = st.TrainHParams(lr=5e-3, batch_size=32, epochs=12, eval_every=4, seed=0)
  result, test = train_model("sasrec", spec, hp, split, mesh, tmp_path / "ckpt",
                             checkpoint_every=100)
  losses = result.history["epoch_loss"]
  assert len(losses) == 12 and losses[-1] < 0.5 * losses[0]
  assert [v["epoch"] for v in result.history["valid"]] == [4, 8, 12]
  assert result.best_metrics["hit@1"] > 0.5 and test["hit@1"] > 0.5
