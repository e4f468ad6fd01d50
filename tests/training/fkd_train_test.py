"""The FKD loop: it learns on synthetic clusters, id_only = SASRec, resume = uninterrupted."""

import fkd_fixtures as fx
import jax
import numpy as np
import pytest

from sfubm_jax import sharding
from sfubm_jax.metrics import ranking_metrics
from sfubm_jax.training.fkd_train import (
    FKDTrainConfig,
    candidate_scores,
    frozen_inputs,
    train_fkd,
    user_vectors,
)

D, DT, L = 32, 12, 6


@pytest.fixture(scope="module")
def domain():
  split, local, federated = fx.cluster_domain(num_users=192, clusters=6, per_cluster=8,
                                              length=L, text_dim=DT, seed=0)
  encode, sasrec = fx.frozen_sasrec(split.num_items, D, L, seed=0)
  return encode, fx.fkd_data(split, sasrec, local, federated)


def _tc(**kw):
  base = dict(lr=1e-2, batch_size=32, epochs=6, eval_every=1, seed=0, checkpoint_every=3,
              log_every_s=1e9)
  return FKDTrainConfig(**{**base, **kw})


def test_fkd_learns_the_clusters_and_id_only_equals_sasrec(domain, tmp_path):
  encode, data = domain
  mesh = sharding.make_mesh((-1, 1, 1))
  _, cands, pos = data.test
  rng = np.random.default_rng(0)
  random = ranking_metrics(rng.normal(size=cands.shape), pos)
  r = user_vectors(encode, data.sasrec_params, data.test[0], 512)
  sasrec = ranking_metrics(candidate_scores(r, data.item_emb, cands), pos)

  fkd = train_fkd(data, fx.hparams(encode, D, DT, "fkd", hidden=32), _tc(), tmp_path / "a", mesh)
  # The frozen random SASRec ranks like chance; f_t(c) learns which cluster a user buys.
  for metric in ("hr@5", "ndcg@10"):
    assert fkd.test[metric] > max(random[metric], sasrec[metric]) + 0.1, (fkd.test, random, sasrec)
  assert fkd.history["epoch_loss"][-1] < fkd.history["epoch_loss"][0]
  assert fkd.item_emb.shape == data.item_emb.shape and fkd.item_emb.dtype == np.float32
  assert not fkd.item_emb[0].any()

  id_only = train_fkd(data, fx.hparams(encode, D, DT, "id_only", hidden=32), _tc(epochs=1),
                      tmp_path / "b", mesh)
  np.testing.assert_array_equal(id_only.item_emb[1:], data.item_emb[1:])
  assert id_only.test == pytest.approx(sasrec)

  # kd_local reads X, whose rows are all distinct: f_t's table is kept with an empty index,
  # and that path runs sharded on the 8-device mesh too.
  hp_local = fx.hparams(encode, D, DT, "kd_local", hidden=32)
  assert frozen_inputs(data, hp_local.switches)["text_index"].shape == (0,)
  kd_local = train_fkd(data, hp_local, _tc(epochs=1), tmp_path / "c", mesh)
  assert np.isfinite(kd_local.history["epoch_loss"]).all() and not kd_local.item_emb[0].any()


class _Crash(Exception):
  pass


def test_resume_equals_uninterrupted(domain, tmp_path):
  """Crash between two checkpoints (step 4), resume, crash on an epoch's last step (6, before
  its evaluation and epoch-end checkpoint), resume again: all equals one uninterrupted run."""
  encode, data = domain
  mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
  hp = fx.hparams(encode, D, DT, "fkd", hidden=32)
  tc = _tc(epochs=2)  # 6 steps per epoch, a checkpoint every 3 steps
  full = train_fkd(data, hp, tc, tmp_path / "full", mesh)

  def crash_at(at):
    def on_step(step):
      if step == at:
        raise _Crash
    return on_step

  for at in (4, 6):
    with pytest.raises(_Crash):
      train_fkd(data, hp, tc, tmp_path / "resumed", mesh, on_step=crash_at(at))
  resumed = train_fkd(data, hp, tc, tmp_path / "resumed", mesh)
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(full.item_emb, resumed.item_emb)
  assert full.test == resumed.test and full.valid == resumed.valid
  assert full.history == resumed.history
