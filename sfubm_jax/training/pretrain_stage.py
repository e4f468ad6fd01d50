"""Pipeline stage `pretrain`: SASRec and GRU4Rec per domain (SPEC §5, §8).

For every domain of `config.domains` and each model in ("sasrec", "gru4rec"): train on
the training sequences (resumable: Orbax checkpoints under
`DIR/pretrain/<domain>/<model>/ckpt`), select on validation, score the test split and
write, under `DIR/pretrain/<domain>/<model>/`,
  params.msgpack  best-on-valid params (flax.serialization), read by `training.export`
  model.json      the model constructor arguments
  history.json    per-epoch training loss and validation metrics (for plots)
  metrics.json    {"valid": ..., "test": ..., "best_epoch": ..., "seconds": ...}
and merge the test metrics into `DIR/results.json` under "sasrec" / "gru4rec", beside
those of the `pop` floor (training-set frequency, `training.popularity`). A model
whose metrics.json exists is done and skipped on rerun.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import jax
import ml_collections
import optax
from absl import logging
from flax import serialization

from sfubm_jax import io_utils, sharding
from sfubm_jax.data.split import DomainSplit, load_split
from sfubm_jax.results import update_results
from sfubm_jax.training import seqrec_train as st
from sfubm_jax.training.popularity import evaluate_pop
from sfubm_jax.training.position_ce import position_capacity
from sfubm_jax.training.trainer import LoopConfig, LoopResult, train_loop

STAGE = "pretrain"


def model_dir(workdir: pathlib.Path, domain: str, kind: str) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / STAGE / domain / kind


def spec_for(kind: str, section, split: DomainSplit) -> dict:
  """Constructor arguments of `kind` on `split`: SASRec learns as many position rows as
  the longest training input holds items (`seqrec_train.trained_positions`)."""
  return st.model_spec(kind, section, split.num_items, split.max_len,
                       st.trained_positions(split.history("train")[0]))


def train_model(
    kind: str,
    spec: dict,
    hp: st.TrainHParams,
    split: DomainSplit,
    mesh,
    ckpt_dir: pathlib.Path,
    *,
    checkpoint_every: int,
    max_to_keep: int = 2,
    log_every_s: float = 5.0,
    on_step: Callable[[int], None] | None = None,
) -> tuple[LoopResult, dict[str, float]]:
  """Trains one model on `split` (resuming from `ckpt_dir`); returns (loop result, test)."""
  st.check_batch_size(hp.batch_size, mesh)
  model = st.build_model(kind, spec)
  tx = optax.adam(hp.lr)
  init_key, dropout_key = jax.random.split(jax.random.key(hp.seed))
  state = st.make_state(model, tx, init_key, spec["max_len"], mesh)
  train_seqs, _ = split.history("train")  # [U, L]
  capacity = position_capacity(train_seqs, hp.batch_size, hp.seed, hp.epochs)
  step = st.jit_train_step(st.make_train_step(model, tx, dropout_key, capacity=capacity),
                           state, mesh)
  scorer = st.make_scorer(model)
  loop = LoopConfig(epochs=hp.epochs, eval_every=hp.eval_every, patience=hp.patience,
                    checkpoint_every=checkpoint_every, select_metric=hp.select_metric,
                    max_to_keep=max_to_keep, log_every_s=log_every_s)
  result = train_loop(
      state,
      step,
      lambda epoch: st.epoch_batches(train_seqs, hp.batch_size, hp.seed, epoch),
      lambda params: st.evaluate(scorer, params, split, "valid", hp.eval_batch_size),
      ckpt_dir,
      loop,
      on_step=on_step,
      desc=f"{kind}/{split.name}",
  )
  test = st.evaluate(scorer, result.best_params, split, "test", hp.eval_batch_size)
  return result, test


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  workdir = pathlib.Path(workdir).absolute()
  mesh = sharding.make_mesh(config.mesh.shape)
  for domain in config.domains:
    split = load_split(workdir, domain)
    update_results(workdir, "pop", domain, evaluate_pop(split, "test", config.data.seed))
    for kind in st.MODELS:
      out = model_dir(workdir, domain, kind)
      if (out / "metrics.json").exists():
        metrics = io_utils.read_json(out / "metrics.json")
        update_results(workdir, kind, domain, metrics["test"])
        logging.info("%s/%s: done earlier, test %s", kind, domain, metrics["test"])
        continue
      section = config[kind]
      spec = spec_for(kind, section, split)
      start = time.time()
      result, test = train_model(
          kind, spec, st.hparams(section), split, mesh, out / "ckpt",
          checkpoint_every=config.runtime.checkpoint_every,
          max_to_keep=config.runtime.max_to_keep, log_every_s=config.runtime.log_every_s,
      )
      params = jax.device_get(result.best_params)
      io_utils.atomic_write_bytes(out / "params.msgpack", serialization.to_bytes(params))
      io_utils.write_json(out / "model.json", {"kind": kind, "spec": spec})
      io_utils.write_json(out / "history.json", result.history)
      seconds = round(time.time() - start, 2)
      io_utils.write_json(out / "metrics.json", {
          "valid": result.best_metrics, "test": test, "best_epoch": result.best_epoch,
          "seconds": seconds, "users": split.num_users, "items": split.num_items,
      })
      update_results(workdir, kind, domain, test)
      logging.info("%s/%s: best epoch %d, valid %s, test %s (%.1fs)", kind, domain,
                   result.best_epoch, result.best_metrics, test, seconds)
