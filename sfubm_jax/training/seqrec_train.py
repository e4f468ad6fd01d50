"""Pre-training of an ID sequence model (SASRec or GRU4Rec) and its ranking evaluation.

Training (SPEC §5, paper §3.3.3): at every real position t of a training sequence the
model output H_t scores all items, logits = H_t · E[1:]^T (full softmax, padding row
excluded), and the loss is the cross-entropy of the next item, averaged over real
positions. Adam (optax); the jitted step donates its state and takes the batch sharded
on the mesh batch axes with params replicated, so 1 or N devices give the same numbers.

Evaluation: r_u = the last-position output on the user's history, scores = r_u · E_c
over the 20 stored candidates, metrics from `sfubm_jax.metrics`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from sfubm_jax import sharding
from sfubm_jax.data.split import DomainSplit
from sfubm_jax.errors import UserError
from sfubm_jax.metrics import ranking_metrics
from sfubm_jax.models.gru4rec import GRU4Rec
from sfubm_jax.models.sasrec import SASRec
from sfubm_jax.training.position_ce import weighted_ce

MODELS = ("sasrec", "gru4rec")


@dataclasses.dataclass(frozen=True)
class TrainHParams:
  """Optimisation settings of one pre-training run (from config.sasrec / config.gru4rec)."""

  lr: float
  batch_size: int
  epochs: int
  eval_every: int
  seed: int
  patience: int = 0  # early stopping: evaluations without a new best (0 = off)
  select_metric: str = "ndcg@10"
  eval_batch_size: int = 512


def trained_positions(train_seqs: np.ndarray) -> int:
  """Real items in the longest training input: train history [U, L] minus its last item.

  SASRec learns this many position rows; evaluation histories (one or two items longer)
  clamp their oldest positions to the last of them, so none is used untrained.
  """
  longest = int((np.asarray(train_seqs) != 0).sum(1).max(initial=0))
  return max(1, longest - 1)


def model_spec(kind: str, section, num_items: int, max_len: int,
               positions: int = 0) -> dict[str, Any]:
  """The constructor arguments of model `kind` (saved beside its params for export).

  `positions` (SASRec only): `trained_positions` of the training histories; 0 = max_len.
  """
  if kind == "sasrec":
    return dict(num_items=num_items, dim=section.dim, num_blocks=section.num_blocks,
                num_heads=section.num_heads, dropout=section.dropout, max_len=max_len,
                positions=positions)
  if kind == "gru4rec":
    return dict(num_items=num_items, dim=section.dim, num_layers=section.num_layers,
                dropout=section.dropout, max_len=max_len)
  raise UserError(f"unknown sequence model {kind!r}; models are {MODELS}")


def build_model(kind: str, spec: dict[str, Any]) -> nn.Module:
  return {"sasrec": SASRec, "gru4rec": GRU4Rec}[kind](**spec)


def hparams(section) -> TrainHParams:
  return TrainHParams(lr=section.lr, batch_size=section.batch_size, epochs=section.epochs,
                      eval_every=section.eval_every, seed=section.seed, patience=section.patience,
                      select_metric=section.select_metric)


def next_item_loss(model: nn.Module, params, seqs: jax.Array, *, key: jax.Array | None,
                   capacity: int | None = None, chunk: int | None = None):
  """Mean next-item cross-entropy over real positions; key None = no dropout.

  seqs [B, L] left-padded; inputs seqs[:, :-1] predict targets seqs[:, 1:]. Only the
  real positions reach the item projection (`position_ce.weighted_ce`: a gather buffer
  of `capacity` rows, None = all B·(L-1); `chunk` as there).
  Returns (loss, aux) with aux = {"positions": number of scored positions}.
  """
  inputs, targets = seqs[:, :-1], seqs[:, 1:]  # [B, L-1] each
  rngs = None if key is None else {"dropout": key}
  hidden = model.apply(params, inputs, deterministic=key is None, rngs=rngs)  # [B, L-1, d]
  table = params["params"]["item_emb"]["embedding"][1:]  # [N, d]
  mask = (inputs != 0).astype(jnp.float32)  # [B, L-1]; left padding: target is real too
  count = mask.sum()
  weights = mask / jnp.maximum(count, 1.0)
  loss = weighted_ce(hidden, table, jnp.maximum(targets - 1, 0), weights,
                     capacity=capacity, chunk=chunk)
  return loss, {"positions": count}


def init_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
               max_len: int) -> dict[str, Any]:
  """{"params", "opt", "step"}: a plain pytree train state."""
  params = model.init(key, jnp.zeros((1, max_len), jnp.int32))
  return {"params": params, "opt": tx.init(params), "step": jnp.zeros((), jnp.int32)}


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, base_key: jax.Array,
                    *, capacity: int | None = None, chunk: int | None = None):
  """(state, seqs [B, L]) -> (state, loss); dropout key = fold_in(base_key, step).

  capacity: the gather buffer of `next_item_loss` (`position_capacity` of the run's
  batches; None = every position).
  """

  def step(state, seqs):
    key = jax.random.fold_in(base_key, state["step"])
    grad_fn = jax.value_and_grad(
        lambda p: next_item_loss(model, p, seqs, key=key, capacity=capacity, chunk=chunk),
        has_aux=True)
    (loss, _), grads = grad_fn(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt": opt, "step": state["step"] + 1}, loss

  return step


def jit_train_step(step: Callable, state, mesh: Mesh) -> Callable:
  """Jits `step` once: state replicated and donated, batch sharded on the batch axes."""
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), state)
  return jax.jit(
      step,
      in_shardings=(state_sh, sharding.batch_sharding(mesh, 2)),
      out_shardings=(state_sh, sharding.replicated(mesh)),
      donate_argnums=0,
  )


def place_state(state, mesh: Mesh):
  """Puts every leaf of `state` on all devices of `mesh` (replicated)."""
  return jax.device_put(state, sharding.replicated(mesh))


def make_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
               max_len: int, mesh: Mesh) -> dict[str, Any]:
  """`init_state` as one compiled program (not op by op), replicated on `mesh`."""
  init = jax.jit(lambda k: init_state(model, tx, k, max_len),
                 out_shardings=sharding.replicated(mesh))
  return init(key)


def epoch_batches(seqs: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
  """The epoch's batches: a permutation seeded by (seed, epoch), last batch zero-padded.

  seqs [U, L] -> list of [batch_size, L] int32; padded rows are all padding, so they
  score no position. The position (epoch, index) alone determines each batch.
  """
  order = np.random.default_rng([seed, epoch]).permutation(len(seqs))
  shuffled = seqs[order]
  num = -(-len(seqs) // batch_size)
  padded = np.zeros((num * batch_size, seqs.shape[1]), np.int32)
  padded[: len(seqs)] = shuffled
  return [padded[i * batch_size:(i + 1) * batch_size] for i in range(num)]


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  if batch_size % sharding.batch_divisor(mesh):
    raise UserError(
        f"batch size {batch_size} is not a multiple of the {sharding.batch_divisor(mesh)} "
        f"devices on the mesh batch axes; change the batch_size config field or config.mesh"
    )


def make_scorer(model: nn.Module) -> Callable:
  """Jitted (params, hist [B, L], cands [B, C]) -> scores [B, C] = r_u · E_c."""

  def score(params, hist, cands):
    r = model.apply(params, hist, deterministic=True)[:, -1]  # [B, d]
    table = params["params"]["item_emb"]["embedding"]  # [N+1, d]
    return jnp.einsum("bd,bcd->bc", r, table[cands])

  return jax.jit(score)


def score_candidates(scorer: Callable, params, hist: np.ndarray, cands: np.ndarray,
                     batch_size: int) -> np.ndarray:
  """Scores in fixed-size batches (one compilation); hist [U, L], cands [U, C] -> [U, C]."""
  users = len(hist)
  size = min(batch_size, users)
  num = -(-users // size)
  out = []
  for i in range(num):
    h = np.zeros((size, hist.shape[1]), np.int32)
    c = np.zeros((size, cands.shape[1]), np.int32)
    part_h, part_c = hist[i * size:(i + 1) * size], cands[i * size:(i + 1) * size]
    h[: len(part_h)], c[: len(part_c)] = part_h, part_c
    out.append(scorer(params, h, c))
  return np.concatenate(jax.device_get(out))[:users]


def evaluate(scorer: Callable, params, split: DomainSplit, which: str,
             batch_size: int = 512, users: np.ndarray | None = None) -> dict[str, float]:
  """Ranking metrics of `params` on split `which` ("valid" or "test"), over the rows
  `users` (all when None)."""
  hist, _ = split.history(which)
  cands, target_pos = split.candidates(which)
  if users is not None:
    hist, cands, target_pos = hist[users], cands[users], target_pos[users]
  scores = score_candidates(scorer, params, hist, cands, batch_size)
  return ranking_metrics(scores, target_pos)
