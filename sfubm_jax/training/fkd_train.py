"""Training and evaluation of one FKD run (one domain, one variant) with SASRec frozen.

The step is `fkd.fkd_loss` under Adam; only the four FKD nets train, the frozen SASRec
params and item/text tables are a separate, replicated argument of the jitted step.
The counterfactual key is fold_in(base_key, step) and batch (epoch, index) comes from a
seeded permutation, so the generic resumable loop (`trainer.train_loop`) resumes exactly.

Evaluation: r_u = the frozen SASRec's last-position output on the history (computed once
per split), scores = r_u · ẽ_c over the stored candidates, `ranking_metrics`; the params
best on validation give the test metrics and the saved fused embeddings.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from sfubm_jax import sharding
from sfubm_jax.metrics import ranking_metrics
from sfubm_jax.models import fkd
from sfubm_jax.training import trainer
from sfubm_jax.training.position_ce import position_capacity
from sfubm_jax.training.seqrec_train import check_batch_size, epoch_batches


@dataclasses.dataclass(frozen=True)
class FKDTrainConfig:
  """Optimisation and loop settings of one FKD run (config.fkd + config.runtime)."""

  lr: float = 1e-4
  batch_size: int = 32
  epochs: int = 10
  eval_every: int = 1
  patience: int = 0  # early stopping: evaluations without a new best (0 = off)
  seed: int = 5
  select_metric: str = "ndcg@10"
  checkpoint_every: int = 200
  max_to_keep: int = 2
  log_every_s: float = 5.0
  eval_batch_size: int = 512


@dataclasses.dataclass(frozen=True)
class FKDData:
  """Host arrays of one domain: frozen SASRec, text tables, sequences, candidates."""

  sasrec_params: Any
  item_emb: np.ndarray  # [N+1, d] E^id, the frozen SASRec item table
  local: np.ndarray  # [N+1, d_t] X, raw normalised text vectors (never uploaded)
  federated: np.ndarray  # [N+1, d_t] C, synchronised centroids
  train_seqs: np.ndarray  # [U, L] training histories (no valid/test target)
  touched: np.ndarray  # [U, L] stored sequences (with the targets): what S' excludes
  valid: tuple[np.ndarray, np.ndarray, np.ndarray]  # history [U, L], cands [U, C], pos [U]
  test: tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass
class FKDResult:
  params: Any  # best-on-valid FKD params
  item_emb: np.ndarray  # [N+1, d] fused ẽ of those params (row 0 = 0)
  valid: dict[str, float]
  test: dict[str, float]
  best_epoch: int
  history: dict[str, list]


def frozen_inputs(data: FKDData, switches: fkd.Switches) -> dict[str, Any]:
  """The frozen argument of `fkd_loss`: f_t reads C, or X for the `local` switch."""
  if switches.text not in ("federated", "local"):
    raise ValueError(f"switches.text must be 'federated' or 'local', got {switches.text!r}")
  text_in = data.federated if switches.text == "federated" else data.local
  return fkd.frozen_tables(data.sasrec_params, data.item_emb, text_in, data.local)


def make_train_step(hp: fkd.FKDHParams, tx: optax.GradientTransformation, base_key: jax.Array,
                    rec_capacity: int | None = None):
  """(state {"params","opt","step"}, frozen, rows [B, 2L]) -> (state, loss).

  rows = [training history | stored sequence] side by side (`batch_rows`), so one
  seeded permutation orders both.
  """

  def step(state, frozen, rows):
    key = jax.random.fold_in(base_key, state["step"])
    half = rows.shape[1] // 2
    batch = {"seqs": rows[:, :half], "touched": rows[:, half:]}
    grad_fn = jax.value_and_grad(
        lambda p: fkd.fkd_loss(p, frozen, batch, key=key, hp=hp, rec_capacity=rec_capacity),
        has_aux=True
    )
    (loss, _), grads = grad_fn(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt": opt, "step": state["step"] + 1}, loss

  return step


def batch_rows(data: FKDData) -> np.ndarray:
  """[U, 2L]: each user's training history beside the stored sequence S' must avoid."""
  if data.touched.shape != data.train_seqs.shape:
    raise ValueError(f"touched {data.touched.shape} != train_seqs {data.train_seqs.shape}")
  return np.concatenate([data.train_seqs, data.touched], axis=1).astype(np.int32)


def user_vectors(encode: fkd.Encoder, sasrec_params, hist: np.ndarray, batch_size: int):
  """r_u = last-position output of the frozen SASRec; hist [U, L] -> [U, d] numpy."""
  fn = jax.jit(lambda p, h: encode(p, h)[:, -1])
  size = min(batch_size, len(hist))
  out = []
  for i in range(0, len(hist), size):
    part = np.zeros((size, hist.shape[1]), np.int32)
    rows = hist[i:i + size]
    part[: len(rows)] = rows
    out.append(np.asarray(fn(sasrec_params, part))[: len(rows)])
  return np.concatenate(out)


def candidate_scores(user: np.ndarray, item_emb: np.ndarray, cands: np.ndarray) -> np.ndarray:
  """r_u · ẽ_c: user [U, d], item_emb [N+1, d], cands [U, C] -> [U, C]."""
  return np.einsum("ud,ucd->uc", user, item_emb[cands])


def train_fkd(
    data: FKDData,
    hp: fkd.FKDHParams,
    tc: FKDTrainConfig,
    ckpt_dir: pathlib.Path,
    mesh: Mesh,
    *,
    on_step: Callable[[int], None] | None = None,
    desc: str = "fkd",
) -> FKDResult:
  """Trains the FKD nets (resuming from `ckpt_dir`), selects on valid, scores test."""
  check_batch_size(tc.batch_size, mesh)
  tx = optax.adam(tc.lr)
  init_key, step_key = jax.random.split(jax.random.PRNGKey(tc.seed))
  params = fkd.init_params(init_key, hp)
  state = {"params": params, "opt": tx.init(params), "step": jnp.zeros((), jnp.int32)}
  replicated = sharding.replicated(mesh)
  state = jax.device_put(state, replicated)
  frozen = jax.device_put(frozen_inputs(data, hp.switches), replicated)

  state_sh = jax.tree.map(lambda _: replicated, state)
  frozen_sh = jax.tree.map(lambda _: replicated, frozen)
  step = jax.jit(
      make_train_step(hp, tx, step_key, position_capacity(
          data.train_seqs, tc.batch_size, tc.seed, tc.epochs)),
      in_shardings=(state_sh, frozen_sh, sharding.batch_sharding(mesh, 2)),
      out_shardings=(state_sh, replicated),
      donate_argnums=0,
  )
  fused = jax.jit(functools.partial(fkd.fused_item_embeddings, hp=hp))
  users = {
      name: user_vectors(hp.encode, data.sasrec_params, hist, tc.eval_batch_size)
      for name, (hist, _, _) in (("valid", data.valid), ("test", data.test))
  }

  def evaluate(p, which: str = "valid") -> dict[str, float]:
    _, cands, pos = getattr(data, which)
    emb = np.asarray(fused(p, frozen))
    return ranking_metrics(candidate_scores(users[which], emb, cands), pos)

  loop = trainer.LoopConfig(
      epochs=tc.epochs, eval_every=tc.eval_every, patience=tc.patience,
      checkpoint_every=tc.checkpoint_every,
      select_metric=tc.select_metric, max_to_keep=tc.max_to_keep, log_every_s=tc.log_every_s,
  )
  result = trainer.train_loop(
      state,
      lambda s, seqs: step(s, frozen, seqs),
      lambda epoch: epoch_batches(batch_rows(data), tc.batch_size, tc.seed, epoch),
      evaluate,
      ckpt_dir,
      loop,
      on_step=on_step,
      desc=desc,
  )
  best = jax.device_get(result.best_params)
  return FKDResult(
      params=best,
      item_emb=np.asarray(fused(best, frozen), np.float32),
      valid=dict(result.best_metrics),
      test=evaluate(best, "test"),
      best_epoch=result.best_epoch,
      history=result.history,
  )
