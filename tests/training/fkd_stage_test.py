"""The `fkd` stage on a workdir holding what the data, federate and pretrain stages write."""

import fkd_fixtures as fx
import numpy as np
from conftest import load_config
from flax import serialization

from sfubm_jax import io_utils
from sfubm_jax.data.split import save_split
from sfubm_jax.federation import artifacts
from sfubm_jax.results import read_results
from sfubm_jax.training import export, fkd_stage
from sfubm_jax.training.seqrec_train import model_spec

D, DT, L = 16, 12, 6


def _workdir(tmp_path, config, domain):
  split, local, federated = fx.cluster_domain(num_users=64, clusters=6, per_cluster=8,
                                              length=L, text_dim=DT, seed=1)
  save_split(split, tmp_path / "data" / domain)
  directory = artifacts.domain_dir(tmp_path, domain)
  directory.mkdir(parents=True)
  artifacts.save_array(directory / "local.npy", local)
  artifacts.save_array(directory / "federated.npy", federated)
  _, params = fx.frozen_sasrec(split.num_items, D, L, seed=0)
  spec = model_spec("sasrec", config.sasrec, split.num_items, L)
  spec.update(dim=D, num_blocks=1, dropout=0.0)
  out = tmp_path / "pretrain" / domain / "sasrec"
  io_utils.atomic_write_bytes(out / "params.msgpack", serialization.to_bytes(params))
  io_utils.write_json(out / "model.json", {"kind": "sasrec", "spec": spec})
  io_utils.write_json(tmp_path / "results.json", {})
  return split, params


def test_stage_writes_embeddings_and_results_and_skips_when_done(tmp_path, monkeypatch):
  config = load_config("tiny")
  config.domains = ("food",)
  config.fkd.variants = ("fkd", "id_only")
  config.fkd.hidden = 16
  split, params = _workdir(tmp_path, config, "food")
  fkd_stage.run(config, tmp_path)

  results = read_results(tmp_path)
  for variant in ("fkd", "id_only"):
    emb = export.load_item_embeddings(tmp_path, "food", variant)
    assert emb.shape == (split.num_items + 1, D) and emb.dtype == np.float32
    assert set(results[variant]["food"]) == {"hit@1", "hr@5", "ndcg@5", "ndcg@10"}
    saved = io_utils.read_json(tmp_path / "fkd" / "food" / variant / "metrics.json")
    assert saved["test"] == results[variant]["food"]
  # id_only's ID Encoding Layer is the frozen SASRec table.
  np.testing.assert_array_equal(export.load_item_embeddings(tmp_path, "food", "id_only")[1:],
                                np.asarray(params["params"]["item_emb"]["embedding"])[1:])
  assert not np.array_equal(export.load_item_embeddings(tmp_path, "food", "fkd"),
                            export.load_item_embeddings(tmp_path, "food", "id_only"))

  def no_training(*args, **kwargs):
    raise AssertionError("a finished variant was trained again")

  monkeypatch.setattr(fkd_stage, "train_fkd", no_training)
  io_utils.write_json(tmp_path / "results.json", {})
  fkd_stage.run(config, tmp_path)  # rerun: skips training, restores results.json entries
  assert read_results(tmp_path) == results
