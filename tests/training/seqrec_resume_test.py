"""Kill a pre-training run at a step, rerun it: the result equals an uninterrupted run."""

import jax
import numpy as np
import pytest
from seqrec_synthetic import synthetic_split

from sfubm_jax import sharding
from sfubm_jax.checkpoint import Checkpointer
from sfubm_jax.training import seqrec_train as st
from sfubm_jax.training.pretrain_stage import train_model


class Crash(Exception):
  pass


def _train(tmp_dir, kind="sasrec", crash_at=None):
  split = synthetic_split(num_users=40, num_items=30)
  # One device: bit-exactness is a single-device property (an all-reduce over 8 CPU
  # devices may sum in arrival order); sharded == unsharded is tested with a tolerance.
  mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
  if kind == "sasrec":
    spec = dict(num_items=30, dim=8, num_blocks=1, num_heads=1, dropout=0.3, max_len=10)
  else:
    spec = dict(num_items=30, dim=8, num_layers=1, dropout=0.3, max_len=10)
  hp = st.TrainHParams(lr=1e-2, batch_size=16, epochs=4, eval_every=2, seed=1,
                       select_metric="hit@1")

  def on_step(step):
    if step == crash_at:
      raise Crash(step)

  # 40 users / batch 16 = 3 steps per epoch (the last one padded), 12 steps in all.
  return train_model(kind, spec, hp, split, mesh, tmp_dir, checkpoint_every=2,
                     on_step=on_step)


def _assert_same(a, b):
  (res_a, test_a), (res_b, test_b) = a, b
  assert test_a == test_b
  assert res_a.history == res_b.history
  assert (res_a.best_epoch, res_a.best_metrics) == (res_b.best_epoch, res_b.best_metrics)
  for x, y in ((res_a.best_params, res_b.best_params), (res_a.state, res_b.state)):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(x), jax.device_get(y))


@pytest.mark.parametrize("kind,crashes", [("sasrec", (5, 9)), ("gru4rec", (7,))])
def test_resume_after_crash_equals_uninterrupted(tmp_path, kind, crashes):
  # Step 5: mid-epoch, one step after the checkpoint at 4; step 9: an epoch end after a
  # validation, on a run that itself resumed; step 7: right after the epoch-end
  # checkpoint at 6.
  reference = _train(tmp_path / "ref", kind)
  for crash_at in crashes:
    with pytest.raises(Crash):
      _train(tmp_path / "run", kind, crash_at=crash_at)
    # The latest checkpoint's meta describes the state saved with it.
    ckpt = Checkpointer(tmp_path / "run")
    _, meta = ckpt.restore({"state": reference[0].state, "best": reference[0].best_params})
    assert meta["step"] == ckpt.latest_step() == crash_at - 1
    ckpt.close()
  resumed = _train(tmp_path / "run", kind)
  _assert_same(reference, resumed)
  assert int(resumed[0].state["step"]) == 12
  assert len(reference[0].history["epoch_loss"]) == 4
  if kind == "sasrec":
    # A finished run that is started again trains nothing and returns the same result.
    _assert_same(reference, _train(tmp_path / "run", kind, crash_at=1))
