"""The pretrain stage end to end on a synthetic split, and the export functions that
FKD and Stage 2 use: the reloaded model reproduces the stage's test metrics."""

import sys

import numpy as np
import pytest
from seqrec_synthetic import synthetic_split

from sfubm_jax import io_utils
from sfubm_jax.data.split import save_split
from sfubm_jax.errors import UserError
from sfubm_jax.metrics import ranking_metrics
from sfubm_jax.results import read_results
from sfubm_jax.training import export, pretrain_stage

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from conftest import load_config  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("pretrain")
  split = synthetic_split(num_users=150, num_items=30, name="toy")
  save_split(split, workdir / "data" / "toy")
  config = load_config("tiny")
  config.domains = ("toy",)
  pretrain_stage.run(config, workdir)
  return workdir, split


def test_results_and_files(trained):
  workdir, _ = trained
  results = read_results(workdir)
  for kind in ("sasrec", "gru4rec"):
    out = workdir / "pretrain" / "toy" / kind
    metrics = io_utils.read_json(out / "metrics.json")
    assert results[kind]["toy"] == metrics["test"]
    assert set(metrics["test"]) == {"hit@1", "hr@5", "ndcg@5", "ndcg@10"}
    history = io_utils.read_json(out / "history.json")
    assert len(history["epoch_loss"]) == 2 and len(history["valid"]) == 2


def test_reloaded_sasrec_reproduces_test_metrics(trained):
  workdir, split = trained
  model, params = export.load_sasrec(workdir, "toy")
  encode = export.make_user_encoder(workdir, "toy", batch_size=64)
  table = export.load_item_embeddings(workdir, "toy", "sasrec")
  hist, _ = split.history("test")
  r = encode(hist)  # 150 users: two full chunks and a padded one
  assert r.shape == (150, 50) and r.dtype == np.float32
  np.testing.assert_allclose(r[:7], np.asarray(model.apply(params, hist[:7]))[:, -1],
                             atol=1e-5)
  cands, target_pos = split.candidates("test")
  scores = np.einsum("ud,ucd->uc", r, table[cands])
  saved = io_utils.read_json(workdir / "pretrain" / "toy" / "sasrec" / "metrics.json")
  got = ranking_metrics(scores, target_pos)
  for k, v in saved["test"].items():
    assert got[k] == pytest.approx(v, abs=1e-9)
  assert table.shape == (31, 50)


def test_gru4rec_table_and_fkd_files(trained):
  workdir, _ = trained
  _, params = export.load_pretrained(workdir, "toy", "gru4rec")
  np.testing.assert_array_equal(export.load_item_embeddings(workdir, "toy", "gru4rec"),
                                np.asarray(params["params"]["item_emb"]["embedding"]))
  with pytest.raises(UserError, match="fkd stage"):
    export.load_item_embeddings(workdir, "toy", "kd_local")
  fused = np.random.default_rng(0).normal(size=(31, 50)).astype(np.float32)
  (workdir / "fkd" / "toy" / "kd_local").mkdir(parents=True)
  np.save(workdir / "fkd" / "toy" / "kd_local" / "item_emb.npy", fused)
  np.testing.assert_array_equal(export.load_item_embeddings(workdir, "toy", "kd_local"), fused)
  with pytest.raises(UserError, match="pretrain stage"):
    export.load_sasrec(workdir, "other")


def test_rerun_skips_finished_models(trained):
  workdir, _ = trained
  params_path = workdir / "pretrain" / "toy" / "sasrec" / "params.msgpack"
  before = params_path.stat().st_mtime_ns
  config = load_config("tiny")
  config.domains = ("toy",)
  pretrain_stage.run(config, workdir)
  assert params_path.stat().st_mtime_ns == before
