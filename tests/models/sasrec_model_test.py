"""SASRec: causality, padding invariance, padding row, and equality with a PyTorch SASRec."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sfubm_jax.models.sasrec import SASRec


def _model_and_params(max_len=12, num_heads=2):
  model = SASRec(num_items=40, dim=16, num_blocks=2, num_heads=num_heads, dropout=0.2,
                 max_len=max_len)
  params = model.init(jax.random.key(0), jnp.zeros((1, max_len), jnp.int32))
  # Random non-trivial layer-norm biases, so padding slots are not accidentally zero.
  params = jax.tree.map(
      lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape), params)
  return model, params


SEQS = np.array([[0, 0, 0, 5, 9, 3, 7, 1], [0, 2, 4, 6, 8, 10, 12, 14],
                 [0, 0, 0, 0, 0, 0, 33, 21]], np.int32)


def test_causal_changing_later_items_leaves_earlier_outputs():
  model, params = _model_and_params()
  apply = jax.jit(model.apply)  # One compilation for all the same-shaped calls.
  h = apply(params, SEQS)
  for t in range(3, SEQS.shape[1] - 1):
    changed = SEQS.copy()
    changed[:, t + 1:] = (changed[:, t + 1:] + 11) % 40 + 1
    h2 = apply(params, changed)
    np.testing.assert_allclose(h2[:, : t + 1], h[:, : t + 1], atol=1e-5)
    # The changed positions do change (the test can fail).
    assert np.abs(np.asarray(h2[0, t + 1:] - h[0, t + 1:])).max() > 1e-3


def test_outputs_independent_of_left_padding():
  model, params = _model_and_params(max_len=12)
  apply = jax.jit(model.apply)
  h = np.asarray(apply(params, SEQS))  # [B, 8, d]
  for extra in (1, 4):
    padded = np.pad(SEQS, ((0, 0), (extra, 0)))
    hp = np.asarray(apply(params, padded))[:, extra:]
    real = SEQS != 0
    np.testing.assert_allclose(hp[real], h[real], atol=1e-5)


def test_padding_row_starts_at_zero_and_dropout_uses_key():
  model, params = _model_and_params()
  fresh = model.init(jax.random.key(1), jnp.zeros((1, 12), jnp.int32))
  assert np.all(np.asarray(fresh["params"]["item_emb"]["embedding"][0]) == 0)
  a = model.apply(params, SEQS, deterministic=False, rngs={"dropout": jax.random.key(1)})
  b = model.apply(params, SEQS, deterministic=False, rngs={"dropout": jax.random.key(1)})
  c = model.apply(params, SEQS, deterministic=False, rngs={"dropout": jax.random.key(2)})
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a - c)).max() > 1e-3


def test_sequence_longer_than_max_len_is_an_error():
  model, params = _model_and_params(max_len=12)
  with pytest.raises(ValueError, match="max_len"):
    model.apply(params, np.ones((1, 13), np.int32))


@pytest.mark.parametrize("num_heads", [1, 2])
def test_matches_pytorch_reference(repo_root, num_heads):
  spec = importlib.util.spec_from_file_location(
      "sasrec_torch", repo_root / "benchmarks" / "sasrec_torch.py")
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  import torch

  model, params = _model_and_params(num_heads=num_heads)
  torch_model = ref.TorchSASRec(40, 16, 2, num_heads, 0.2, 12).eval()
  ref.load_flax_params(torch_model, params)
  with torch.no_grad():
    expected = torch_model(torch.tensor(SEQS, dtype=torch.long)).numpy()
  got = np.asarray(model.apply(params, SEQS))
  real = SEQS != 0
  np.testing.assert_allclose(got[real], expected[real], atol=2e-5, rtol=1e-5)
