"""Every parameter that encodes a validation or test history was trained (SPEC §5).

Validation and test histories hold one and two items more than the longest training
input (the training history without its last item). The test finds the position rows
that change r_u on the validation/test histories (perturbing one row at a time) and
checks that the summed gradient of one training epoch reaches each of them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config
from seqrec_synthetic import synthetic_split

from sfubm_jax.training import pretrain_stage
from sfubm_jax.training import seqrec_train as st


def _epoch_grads(model, params, split):
  total = jax.tree.map(jnp.zeros_like, params)
  grad = jax.jit(jax.grad(lambda p, s: st.next_item_loss(model, p, s, key=None)[0]))
  for batch in st.epoch_batches(split.history("train")[0], 16, seed=0, epoch=0):
    total = jax.tree.map(jnp.add, total, grad(params, jnp.asarray(batch)))
  return total


def _eval_histories(split):
  return np.concatenate([split.history("valid")[0], split.history("test")[0]])


def _setup(kind):
  config = load_config("tiny")
  section = config[kind]
  split = synthetic_split(num_users=64, num_items=30, max_len=10, seed=3)
  assert split.lengths.max() == 10  # the test history then holds 9 items, training 7
  spec = pretrain_stage.spec_for(kind, section, split)
  spec.update(dim=8, dropout=0.0)
  model = st.build_model(kind, spec)
  params = model.init(jax.random.key(0), jnp.zeros((1, split.max_len), jnp.int32))
  return model, params, split


def test_sasrec_position_rows_used_at_evaluation_are_trained():
  model, params, split = _setup("sasrec")
  grads = _epoch_grads(model, params, split)
  hist = jnp.asarray(_eval_histories(split))
  base = model.apply(params, hist)[:, -1]
  table = params["params"]["pos_emb"]["embedding"]
  used = []
  for row in range(table.shape[0]):
    moved = jax.tree.map(lambda x: x, params)
    moved["params"]["pos_emb"]["embedding"] = table.at[row].add(1.0)
    if float(jnp.abs(model.apply(moved, hist)[:, -1] - base).max()) > 1e-6:
      used.append(row)
  assert len(used) >= 7
  row_grad = np.abs(np.asarray(grads["params"]["pos_emb"]["embedding"])).sum(-1)
  untrained = [r for r in used if row_grad[r] == 0.0]
  assert not untrained, f"position rows {untrained} encode eval histories but never trained"


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_every_item_row_of_eval_histories_gets_gradient(kind):
  model, params, split = _setup(kind)
  grads = _epoch_grads(model, params, split)
  items = np.unique(_eval_histories(split))
  items = items[items > 0]
  row_grad = np.abs(np.asarray(grads["params"]["item_emb"]["embedding"])).sum(-1)
  assert np.all(row_grad[items] > 0)
  # GRU4Rec has no position table: all its other leaves get gradient too.
  if kind == "gru4rec":
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
      assert float(jnp.abs(leaf).sum()) > 0, path
