"""The `fkd` pipeline stage: FKD and its ablations per domain (SPEC §6, §8).

For every domain in `config.domains` and every variant in `config.fkd.variants`
(fkd, kd_local, id_only, text_only) it trains the FKD nets on top of the frozen SASRec of
the `pretrain` stage, with the text vectors of the `federate` stage, and writes

  DIR/fkd/<domain>/<variant>/item_emb.npy   fused ẽ [N+1, d] float32 (Stage 2 reads it)
  DIR/fkd/<domain>/<variant>/metrics.json   valid/test metrics, best epoch, curves
  DIR/fkd/<domain>/<variant>/ckpt/          Orbax checkpoints (resume)

and merges the test metrics into DIR/results.json under the variant's name. A finished
(domain, variant) is skipped on rerun; an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import io
import pathlib

import ml_collections
import numpy as np
from absl import logging

from sfubm_jax import io_utils, sharding
from sfubm_jax.data.split import load_split
from sfubm_jax.errors import UserError
from sfubm_jax.federation.artifacts import load_item_vectors
from sfubm_jax.models import fkd
from sfubm_jax.results import update_results
from sfubm_jax.training import export
from sfubm_jax.training.fkd_train import FKDData, FKDTrainConfig, train_fkd

ITEM_EMB = "item_emb.npy"
METRICS = "metrics.json"


def train_config(config: ml_collections.ConfigDict) -> FKDTrainConfig:
  c, rt = config.fkd, config.runtime
  return FKDTrainConfig(
      lr=c.lr, batch_size=c.batch_size, epochs=c.epochs, eval_every=c.eval_every,
      patience=c.patience, seed=c.seed, select_metric=c.select_metric,
      checkpoint_every=rt.checkpoint_every, max_to_keep=rt.max_to_keep, log_every_s=rt.log_every_s,
  )


def hparams(config: ml_collections.ConfigDict, variant: str, encode: fkd.Encoder,
            dim: int, text_dim: int) -> fkd.FKDHParams:
  c = config.fkd
  return fkd.FKDHParams(
      encode=encode, dim=dim, text_dim=text_dim, hidden=c.hidden, activation=c.activation,
      alpha=c.alpha, beta=c.beta, rec_positions=c.rec_positions,
      text_out_init=c.text_out_init, teacher=c.teacher, switches=fkd.VARIANTS[variant],
  )


def load_domain(workdir: pathlib.Path, domain: str) -> tuple[fkd.Encoder, FKDData]:
  """The frozen SASRec (pretrain stage), X and C (federate stage) and the split."""
  split = load_split(workdir, domain)
  model, params = export.load_sasrec(workdir, domain)
  local, federated = load_item_vectors(workdir, domain)
  item_emb = np.asarray(params["params"]["item_emb"]["embedding"], np.float32)
  rows = split.num_items + 1
  for name, table in (("SASRec item table", item_emb), ("local text vectors", local),
                      ("federated centroids", federated)):
    if table.shape[0] != rows:
      raise UserError(
          f"{name} of domain {domain!r} has {table.shape[0]} rows but the split has {rows} "
          f"(N+1); the stages of {workdir} disagree: rerun them in a new --workdir"
      )
  data = FKDData(
      sasrec_params=params, item_emb=item_emb,
      local=np.asarray(local, np.float32), federated=np.asarray(federated, np.float32),
      train_seqs=split.history("train")[0], touched=split.seqs,
      valid=(split.history("valid")[0], *split.candidates("valid")),
      test=(split.history("test")[0], *split.candidates("test")),
  )

  def encode(p, seqs):
    return model.apply(p, seqs, deterministic=True)

  return encode, data


def save_item_emb(path: pathlib.Path, emb: np.ndarray) -> None:
  buf = io.BytesIO()
  np.save(buf, np.asarray(emb, np.float32))
  io_utils.atomic_write_bytes(path, buf.getvalue())


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  unknown = [v for v in config.fkd.variants if v not in fkd.VARIANTS]
  if unknown:
    raise UserError(f"unknown fkd variant(s) {unknown}; variants are {list(fkd.VARIANTS)}")
  mesh = sharding.make_mesh(config.mesh.shape)
  tc = train_config(config)
  for domain in config.domains:
    encode, data = load_domain(workdir, domain)
    for variant in config.fkd.variants:
      out = workdir / "fkd" / domain / variant
      if (out / METRICS).exists() and (out / ITEM_EMB).exists():
        logging.info("fkd %s/%s: done, skipped", domain, variant)
        update_results(workdir, variant, domain, io_utils.read_json(out / METRICS)["test"])
        continue
      hp = hparams(config, variant, encode, data.item_emb.shape[1], data.local.shape[1])
      result = train_fkd(data, hp, tc, out / "ckpt", mesh, desc=f"fkd {domain}/{variant}")
      save_item_emb(out / ITEM_EMB, result.item_emb)
      io_utils.write_json(out / METRICS, {
          "valid": result.valid, "test": result.test, "best_epoch": result.best_epoch,
          "history": result.history, "variant": variant, "domain": domain,
      })
      update_results(workdir, variant, domain, result.test)
      logging.info("fkd %s/%s: test %s (best epoch %d)", domain, variant, result.test,
                   result.best_epoch)
