"""Early stopping in the one training loop: it stops after `patience` evaluations without
a new best, keeps the best params, and a run killed after the stop's checkpoint resumes to
the same result."""

import jax.numpy as jnp
import numpy as np
import pytest

from sfubm_jax.training import trainer


class Crash(Exception):
  pass


def _step(state, batch):
  new = {"params": {"w": state["params"]["w"] + batch}, "step": state["step"] + 1}
  return new, jnp.float32(batch)


def _run(tmp_dir, scores, patience, crash_at=None):
  """One step per epoch; validation returns scores[epoch - 1] (epoch read from w)."""
  state = {"params": {"w": jnp.float32(0.0)}, "step": jnp.int32(0)}
  evaluate = lambda p: {"ndcg@10": scores[int(p["w"]) - 1]}

  def on_step(step):
    if step == crash_at:
      raise Crash(step)

  loop = trainer.LoopConfig(epochs=len(scores), eval_every=1, checkpoint_every=100,
                            patience=patience, log_every_s=1e9)
  return trainer.train_loop(state, _step, lambda epoch: [jnp.float32(1.0)], evaluate,
                            tmp_dir, loop, on_step=on_step)


SCORES = [0.1, 0.5, 0.4, 0.45, 0.3, 0.9, 0.2, 0.1]


def test_stops_after_patience_evaluations_without_a_new_best(tmp_path):
  res = _run(tmp_path, SCORES, patience=2)
  # best 0.5 at epoch 2; epochs 3 and 4 do not beat it: stop after epoch 4, so the 0.9 at
  # epoch 6 is never seen.
  assert res.history["stopped_at"] == 4
  assert len(res.history["epoch_loss"]) == 4
  assert [v["epoch"] for v in res.history["valid"]] == [1, 2, 3, 4]
  assert res.best_epoch == 2 and float(res.best_params["w"]) == 2.0
  assert int(res.state["step"]) == 4


def test_patience_zero_trains_every_epoch(tmp_path):
  res = _run(tmp_path, SCORES, patience=0)
  assert "stopped_at" not in res.history
  assert len(res.history["epoch_loss"]) == len(SCORES)
  assert res.best_epoch == 6


def test_a_rerun_after_the_stop_or_a_crash_ends_the_same(tmp_path):
  ref = _run(tmp_path / "ref", SCORES, patience=3)
  assert ref.history["stopped_at"] == 5 and ref.best_epoch == 2
  with pytest.raises(Crash):
    _run(tmp_path / "run", SCORES, patience=3, crash_at=4)
  again = _run(tmp_path / "run", SCORES, patience=3)
  assert again.history == ref.history and again.best_epoch == ref.best_epoch
  np.testing.assert_array_equal(again.best_params["w"], ref.best_params["w"])
  # A finished, stopped run rerun trains nothing more.
  done = _run(tmp_path / "run", SCORES, patience=3)
  assert done.history == ref.history and int(done.state["step"]) == 5


def test_a_stop_rule_met_at_the_last_epoch_is_no_early_stop(tmp_path):
  res = _run(tmp_path, [0.5, 0.4, 0.3], patience=2)
  assert "stopped_at" not in res.history and len(res.history["epoch_loss"]) == 3


def test_config_patience_reaches_each_loop():
  from conftest import load_config

  from sfubm_jax.training import fkd_stage, seqrec_train

  cpu, paper = load_config("food_kitchen", "cpu"), load_config("food_kitchen", "")
  assert seqrec_train.hparams(cpu.sasrec).patience == 1
  assert seqrec_train.hparams(cpu.gru4rec).patience == 1
  assert fkd_stage.train_config(cpu).patience == 2
  assert seqrec_train.hparams(paper.sasrec).patience == 0
  assert fkd_stage.train_config(paper).patience == 0
