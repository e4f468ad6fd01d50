"""GRU4Rec: equals a numpy GRU on the real items, causal, independent of left padding."""

import jax
import jax.numpy as jnp
import numpy as np

from sfubm_jax.models.gru4rec import GRU4Rec

SEQS = np.array([[0, 0, 0, 5, 9, 3, 7, 1], [0, 2, 4, 6, 8, 10, 12, 14]], np.int32)


def _model_and_params(num_layers=2):
  model = GRU4Rec(num_items=20, dim=8, num_layers=num_layers, dropout=0.3, max_len=12)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  params = jax.tree.map(
      lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape), params)
  return model, params


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _numpy_gru4rec(p, seq):
  """The textbook GRU (Cho et al.) over the real items of one sequence -> [n, d]."""
  x = np.asarray(p["item_emb"]["embedding"])[seq[seq != 0]]
  layer = 0
  while f"gru_{layer}" in p:
    c = jax.tree.map(np.asarray, p[f"gru_{layer}"]["scan"]["cell"])
    h = np.zeros(c["hn"]["kernel"].shape[0])
    outs = []
    for xt in x:
      r = _sigmoid(xt @ c["ir"]["kernel"] + c["ir"]["bias"] + h @ c["hr"]["kernel"])
      z = _sigmoid(xt @ c["iz"]["kernel"] + c["iz"]["bias"] + h @ c["hz"]["kernel"])
      n = np.tanh(xt @ c["in"]["kernel"] + c["in"]["bias"]
                  + r * (h @ c["hn"]["kernel"] + c["hn"]["bias"]))
      h = (1 - z) * n + z * h
      outs.append(h)
    x = np.stack(outs)
    layer += 1
  return x @ np.asarray(p["out"]["kernel"]) + np.asarray(p["out"]["bias"])


def test_matches_numpy_gru():
  model, params = _model_and_params()
  h = np.asarray(model.apply(params, SEQS))
  for row, seq in enumerate(SEQS):
    np.testing.assert_allclose(h[row][seq != 0], _numpy_gru4rec(params["params"], seq),
                               atol=1e-5)
    assert np.all(h[row][seq == 0] == 0)


def test_causal_and_padding_invariant():
  model, params = _model_and_params()
  h = np.asarray(model.apply(params, SEQS))
  changed = SEQS.copy()
  changed[:, 6:] = changed[:, 6:] % 20 + 1
  h2 = np.asarray(model.apply(params, changed))
  np.testing.assert_allclose(h2[:, :6], h[:, :6], atol=1e-6)
  assert np.abs(h2[:, 6:] - h[:, 6:]).max() > 1e-3
  padded = np.pad(SEQS, ((0, 0), (3, 0)))
  hp = np.asarray(model.apply(params, padded))[:, 3:]
  np.testing.assert_allclose(hp, h, atol=1e-6)


def test_dropout_only_in_training_mode():
  model, params = _model_and_params()
  a = model.apply(params, SEQS, deterministic=False, rngs={"dropout": jax.random.key(3)})
  b = model.apply(params, SEQS, deterministic=True)
  assert np.abs(np.asarray(a - b)).max() > 1e-3


def test_matches_pytorch_reference(repo_root):
  """The benchmark's PyTorch GRU4Rec (packed sequences) computes the same H."""
  import importlib.util

  import torch

  spec = importlib.util.spec_from_file_location(
      "gru4rec_torch", repo_root / "benchmarks" / "gru4rec_torch.py")
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  model, params = _model_and_params()
  seqs = np.concatenate([SEQS, np.zeros((1, 8), np.int32)])  # with a batch's all-padding row
  torch_model = ref.TorchGRU4Rec(20, 8, 2, 0.3).eval()
  ref.load_flax_params(torch_model, params)
  with torch.no_grad():
    expected = torch_model(torch.tensor(seqs, dtype=torch.long)).numpy()
  np.testing.assert_allclose(np.asarray(model.apply(params, seqs)), expected, atol=2e-5)
