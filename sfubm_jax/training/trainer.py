"""The one resumable training loop: SASRec/GRU4Rec pre-training, FKD and Stage 2.

The loop owns the effects (checkpoints, evaluation calls, logging); the numerics live in
the step function it is given. Determinism makes resume exact: the data of step
(epoch, batch) is a pure function of that position (`batches(epoch)[batch]`), the step
function derives its dropout key from the step counter inside the state, and the
best-on-validation params are part of the checkpoint. Killing a run at any step and
running it again therefore ends with the same params and metrics bit for bit.

Resume order: latest checkpoint in `ckpt_dir` → (train state, best params) + meta
{epoch, batch, step, losses of the unfinished epoch, history, best metric} → continue
at `batches(epoch)[batch:]`. An empty directory is a fresh start.

Each trainer supplies only its state, its step, its batches and its evaluation: `params_of`
picks what evaluation and model selection read from the state (SASRec's "params",
Stage 2's "trainable"); without an evaluation (`evaluate=None`, Stage 2 whose
evaluation is the eval stage) the last params are the result. The history records the
loss of every epoch and of every step.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from sfubm_jax.checkpoint import Checkpointer
from sfubm_jax.errors import UserError
from sfubm_jax.progress import Bar

State = Any  # A pytree with a "params" entry.
StepFn = Callable[[State, Any], tuple[State, jax.Array]]  # (state, batch) -> (state, loss)
EvalFn = Callable[[Any], dict[str, float]]  # params -> validation metrics


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How long to train, how often to evaluate and checkpoint, what selects the model."""

  epochs: int
  eval_every: int  # Validate every this many epochs (and after the last one).
  checkpoint_every: int  # Checkpoint every this many steps (and at each epoch end).
  select_metric: str = "ndcg@10"  # Validation metric whose maximum picks the params.
  # Early stopping: end training after this many evaluations in a row without a new best
  # (0 = train every epoch). The stop is a function of the validation history, so a
  # resumed run stops at the same epoch.
  patience: int = 0
  max_to_keep: int = 2
  log_every_s: float = 5.0


@dataclasses.dataclass
class LoopResult:
  """The selected params and what happened on the way."""

  best_params: Any
  best_metrics: dict[str, float]  # Validation metrics of best_params.
  best_epoch: int  # 1-based epoch after which best_params were evaluated.
  # {"epoch_loss": [float], "step_loss": [float], "valid": [{"epoch": e, **metrics}]}, and
  # "stopped_at": the epoch after which early stopping ended training, if it did.
  history: dict[str, Any]
  state: State  # The final train state.


@jax.jit
def copy_tree(tree: Any) -> Any:
  """Fresh buffers, so a later step that donates `tree`'s arrays leaves the copy intact."""
  return jax.tree.map(jnp.copy, tree)


def _fresh_meta() -> dict[str, Any]:
  return {
      "epoch": 0, "batch": 0, "step": 0, "epoch_losses": [],
      "history": {"epoch_loss": [], "step_loss": [], "valid": []},
      "best_metric": None, "best_metrics": {}, "best_epoch": 0,
  }


def evals_since_best(valid: Sequence[dict], best_epoch: int) -> int:
  """Evaluations after the one that gave the best params."""
  return sum(1 for v in valid if v["epoch"] > best_epoch)


def train_loop(
    state: State,
    train_step: StepFn,
    batches: Callable[[int], Sequence[Any]],
    evaluate: EvalFn | None,
    ckpt_dir: pathlib.Path | str,
    loop: LoopConfig,
    *,
    on_step: Callable[[int], None] | None = None,
    desc: str = "train",
    params_of: Callable[[State], Any] = lambda s: s["params"],
) -> LoopResult:
  """Trains `state` for `loop.epochs` epochs (fewer if early stopping ends it), resuming
  from `ckpt_dir` if it holds one.

  `state` is the freshly initialised train state (its structure and shardings are the
  restore target); `train_step` may donate it. `batches(epoch)` returns the epoch's
  batches in order. `on_step(step)` is called after every step (tests use it to
  simulate a crash). `evaluate=None`: no validation, the final params are the result.
  """
  ckpt = Checkpointer(pathlib.Path(ckpt_dir).absolute(), max_to_keep=loop.max_to_keep)
  bar = None
  meta = _fresh_meta()
  try:
    keeps_best = evaluate is not None  # without validation no best params are kept
    best = copy_tree(params_of(state)) if keeps_best else {}
    if ckpt.latest_step() is not None:
      restored, meta = ckpt.restore({"state": state, **({"best": best} if keeps_best else {})})
      meta["history"].setdefault("step_loss", [])
      state, best = restored["state"], restored.get("best", best)
      state_step = int(state["step"]) if "step" in state else meta["step"]
      if meta["step"] != ckpt.latest_step() or state_step != meta["step"]:
        raise UserError(f"checkpoint {ckpt.directory}/{ckpt.latest_step()} is inconsistent "
                        f"(meta step {meta['step']}); delete that step's folder and rerun")
      logging.info("%s: resumed at epoch %d batch %d (step %d) from %s", desc,
                   meta["epoch"], meta["batch"], meta["step"], ckpt.directory)

    def save():
      # Owned host copies: Orbax would compile a slice per shape for replicated device
      # arrays, and a zero-copy host view could be overwritten by the next donating step
      # while the asynchronous save still writes it. Arrays spread over several hosts
      # (a multi-host Stage 2) go to Orbax as they are: each host writes its shards.
      tree = {"state": state, **({"best": best} if keeps_best else {})}
      local = all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(tree))
      host = jax.tree.map(np.array, jax.device_get(tree)) if local else tree
      # A deep copy too: the save serialises `meta` later, while the loop mutates it.
      ckpt.save(meta["step"], host, copy.deepcopy(meta))

    last_log = time.monotonic()
    while meta["epoch"] < loop.epochs and not meta["history"].get("stopped_at"):
      epoch = meta["epoch"]
      epoch_batches = batches(epoch)
      if bar is None:  # steps still to run, taking every epoch to be as long as this one
        todo = len(epoch_batches) * (loop.epochs - epoch) - meta["batch"]
        bar = Bar(desc, todo, every_s=loop.log_every_s, unit="step")
      pending: list[jax.Array] = []  # Device losses not yet fetched (no per-step sync).
      for index in range(meta["batch"], len(epoch_batches)):
        state, loss = train_step(state, epoch_batches[index])
        pending.append(loss)
        meta["step"] += 1
        meta["batch"] = index + 1
        if meta["step"] % loop.checkpoint_every == 0 and meta["batch"] < len(epoch_batches):
          meta["epoch_losses"] += [float(x) for x in jax.device_get(pending)]
          pending = []
          save()
        if on_step is not None:
          on_step(meta["step"])
        if time.monotonic() - last_log >= loop.log_every_s:
          last_log = time.monotonic()
          bar.set(epoch=f"{epoch + 1}/{loop.epochs}", loss=float(loss))
        bar.update(1)
      losses = meta["epoch_losses"] + [float(x) for x in jax.device_get(pending)]
      meta["history"]["epoch_loss"].append(float(np.mean(np.asarray(losses, np.float32))))
      meta["history"]["step_loss"].extend(losses)
      meta.update(epoch=epoch + 1, batch=0, epoch_losses=[])
      if evaluate is not None and ((epoch + 1) % loop.eval_every == 0
                                   or epoch + 1 == loop.epochs):
        metrics = {k: float(v) for k, v in evaluate(params_of(state)).items()}
        meta["history"]["valid"].append({"epoch": epoch + 1, **metrics})
        value = metrics[loop.select_metric]
        if meta["best_metric"] is None or value > meta["best_metric"]:
          best = copy_tree(params_of(state))
          meta.update(best_metric=value, best_metrics=metrics, best_epoch=epoch + 1)
        logging.info("%s: epoch %d loss %.4f valid %s (best %s=%.4f at epoch %d)", desc,
                     epoch + 1, meta["history"]["epoch_loss"][-1], metrics,
                     loop.select_metric, meta["best_metric"], meta["best_epoch"])
        bar.set(**{f"valid {loop.select_metric}": value})
        if (loop.patience and epoch + 1 < loop.epochs
            and evals_since_best(meta["history"]["valid"], meta["best_epoch"]) >= loop.patience):
          meta["history"]["stopped_at"] = epoch + 1
          logging.info("%s: no better %s in %d evaluations: stopped after epoch %d", desc,
                       loop.select_metric, loop.patience, epoch + 1)
      bar.set(epoch=f"{epoch + 1}/{loop.epochs}", loss=meta["history"]["epoch_loss"][-1])
      save()
  finally:
    if bar is not None:
      bar.close(**({f"best {loop.select_metric}": meta["best_metric"]}
                   if meta.get("best_metric") is not None else {}))
    ckpt.close()
  if evaluate is None:
    best, meta["best_epoch"] = params_of(state), meta["epoch"]
  return LoopResult(
      best_params=best,
      best_metrics=dict(meta["best_metrics"]),
      best_epoch=int(meta["best_epoch"]),
      history=meta["history"],
      state=state,
  )
