"""The federate stage end to end, in process and as separate client/server processes."""

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from sfubm_jax import config_io, io_utils, results
from sfubm_jax.data.split import DomainSplit, save_split
from sfubm_jax.federation import artifacts, client, server, stage, text_encoder
from tests.conftest import REPO, load_config


def _split(domain, n_items, seed):
  rng = np.random.default_rng(seed)
  texts = [""] + [f"{domain} item {i}. words {rng.integers(1000)}" for i in range(n_items)]
  seqs = rng.integers(1, n_items + 1, (6, 5)).astype(np.int32)
  return DomainSplit(
      name=domain, item_ids=[""] + [f"{domain}:{i}" for i in range(n_items)],
      titles=texts, shown_titles=texts, texts=texts,
      user_ids=[f"{domain}:u{i}" for i in range(6)], seqs=seqs,
      lengths=np.full(6, 5, np.int32), valid_candidates=seqs[:, :3].copy(),
      valid_target_pos=np.zeros(6, np.int32), test_candidates=seqs[:, :3].copy(),
      test_target_pos=np.zeros(6, np.int32),
  )


def _fake_encoder(texts):
  """Random but text-determined vectors (the real model is tested elsewhere)."""
  return np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(16)
                   for t in texts]).astype(np.float32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("fed")
  config = load_config("tiny")
  config.server.num_clusters = 5
  config.privacy.tile = 16
  config.privacy.sweep = (0.5, config.privacy.noise_scale, 0.005)
  for i, domain in enumerate(config.domains):
    split = _split(domain, 40 + 9 * i, i)
    save_split(split, workdir / "data" / domain)
    # Fill the text cache so the stage never needs to load the real model.
    text_encoder.encode_texts(split.texts[1:], model=config.text_encoder.model,
                              cache_dir=workdir / "federate" / "text_cache",
                              encoder=_fake_encoder)
  config_io.save_config(config, workdir)
  stage.run(config, workdir)
  return config, workdir


def test_stage_outputs(run_dir):
  config, workdir = run_dir
  fed = workdir / "federate"
  privacy = io_utils.read_json(fed / "privacy.json")
  report = io_utils.read_json(fed / "cluster_report.json")
  assert set(privacy) == set(config.domains)
  for figures in privacy.values():
    assert set(figures) >= {"sim", "reid@1", "noise_scale", "replace_with", "unprotected"}
    assert -1 <= figures["sim"] <= 1 and 0 <= figures["reid@1"] <= 1
  assert report["num_clusters"] == 5 and sum(report["sizes"]) == 40 + 49
  assert 0 <= report["bridge_share"] <= 1
  assert results.read_results(workdir)["federate"].keys() == set(config.domains)
  for domain in config.domains:
    local, federated = artifacts.load_item_vectors(workdir, domain)
    n = 40 if domain == config.domains[0] else 49
    assert local.shape == federated.shape == (n + 1, 16) and local.dtype == np.float32
    assert not local[0].any() and not federated[0].any()
    np.testing.assert_allclose(np.linalg.norm(local[1:], axis=1), 1.0, rtol=1e-5)
    assert len(np.unique(federated[1:], axis=0)) <= 5  # every row is one of K centroids
  sweep = (fed / "privacy_sweep.md").read_text()
  assert sweep.count("\n") == 8 and "| 0.5 | food |" in sweep and "| 0.005 | kitchen |" in sweep
  attack_keys = {"mech_top1", "mech_top10", "mech_mrr", "ridge_top1", "ridge_top10",
                 "mlp_top1", "mlp_top10", "bow_precision", "bow_recall", "bow_f1"}
  for figures in privacy.values():
    assert attack_keys <= set(figures)
    assert set(figures["by_lambda"]) == {"0.5", f"{config.privacy.noise_scale:g}", "0.005"}
    # the configured λ's row is the round's own figures (copied, same secret)
    assert figures["by_lambda"][f"{config.privacy.noise_scale:g}"] == {
        k: v for k, v in figures.items() if k != "by_lambda"}
    for row in figures["by_lambda"].values():
      assert attack_keys | {"sim", "reid@1"} <= set(row)
  assert (fed / "privacy_sweep.png").read_bytes()[:4] == b"\x89PNG"
  table = io_utils.read_json(fed / "privacy_sweep.json")
  for domain in config.domains:
    assert table["0.005"][domain]["sim"] > table["0.5"][domain]["sim"]


def test_missing_outputs_are_user_errors(tmp_path):
  from sfubm_jax.errors import UserError

  with pytest.raises(UserError, match="run the federate stage"):
    artifacts.load_item_vectors(tmp_path, "food")


def test_separate_processes_give_the_same_replies(run_dir, tmp_path):
  config, workdir = run_dir
  inbox, outbox = tmp_path / "up", tmp_path / "down"
  for domain in config.domains:
    assert client.main(["upload", "--workdir", str(workdir), "--domain", domain,
                        "--outbox", str(inbox)]) == 0
  env = dict(os.environ, PYTHONPATH=str(REPO))
  done = subprocess.run(
      [sys.executable, "-m", "sfubm_jax.federation.server", "--inbox", str(inbox),
       "--outbox", str(outbox), "--num_clusters", "5", "--seed", str(config.server.seed),
       "--max_iter", str(config.server.max_iter)],
      env=env, capture_output=True, text=True, timeout=300,
  )
  assert done.returncode == 0, done.stderr
  wire = workdir / "federate" / "wire"
  for domain in config.domains:
    name = f"{domain}.msg"
    assert (inbox / name).read_bytes() == (wire / "uploads" / name).read_bytes()
    assert (outbox / name).read_bytes() == (wire / "replies" / name).read_bytes()
  # A client refuses the other client's reply (wrong count and wrong upload).
  a, b = config.domains
  assert client.main(["receive", "--workdir", str(workdir), "--domain", a,
                      "--reply", str(outbox / f"{b}.msg")]) == 2
  assert client.main(["receive", "--workdir", str(workdir), "--domain", a,
                      "--reply", str(outbox / f"{a}.msg")]) == 0


def test_server_config_comes_from_the_server_section_only(run_dir):
  config, _ = run_dir
  cfg = server.ServerConfig.from_config(config.server)
  assert cfg.num_clusters == 5 and cfg.max_iter == config.server.max_iter


def test_sweep_reuses_the_rounds_figures_and_they_equal_a_recomputation(run_dir, monkeypatch):
  """The configured λ is not recomputed, and recomputing it gives the same figures."""
  from sfubm_jax.data.split import load_split
  from sfubm_jax.federation import sweep

  config, workdir = run_dir
  vectors = {d: artifacts.load_item_vectors(workdir, d)[0] for d in config.domains}
  args = (vectors, (config.privacy.noise_scale,),
          client.PrivacyConfig.from_config(config.privacy),
          {d: client.client_secret(workdir, d) for d in config.domains},
          {d: load_split(workdir, d).titles for d in config.domains},
          client.attack_config(config.privacy))
  fresh = sweep.privacy_sweep(*args)
  privacy = io_utils.read_json(workdir / "federate" / "privacy.json")
  known = {d: {k: v for k, v in f.items() if k != "by_lambda"} for d, f in privacy.items()}
  lam = float(config.privacy.noise_scale)
  for d in config.domains:
    assert fresh[lam][d] == known[d]
  calls = []
  monkeypatch.setattr(client, "make_upload", lambda *a, **k: calls.append(a))
  reused = sweep.privacy_sweep(*args, known={lam: known})
  assert not calls and reused[lam] == known
  # rows that say another λ are not taken for this one
  with pytest.raises(TypeError):  # the patched make_upload returns None: it was called
    sweep.privacy_sweep(*args, known={lam: {d: {**f, "noise_scale": 0.5}
                                            for d, f in known.items()}})
