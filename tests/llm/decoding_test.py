"""Greedy decoding with a KV cache against `transformers` generate, left padding, stops."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sfubm_jax.llm.decoding import (
  _cached_ids_generate,
  generate_from_ids,
  make_greedy_generate,
  make_sample_generate,
)
from sfubm_jax.models.causal_lm.opt.checkpoint import load_opt
from sfubm_jax.models.causal_lm.opt.model import OPTForCausalLM
from tests.models import opt_hf_reference as ref

LENGTHS = [7, 3, 10, 5]
NEW = 12


@functools.lru_cache
def _build(style: str, folder: pathlib.Path):
  hf = ref.hf_model(style, seed=21)
  # Stronger positions than the reference default, so rows take varied tokens.
  with torch.no_grad():
    hf.model.decoder.embed_positions.weight.mul_(3.0)
  cfg, params = load_opt(ref.save_hf(hf, folder / style))
  ids, mask = ref.left_padded_batch(np.random.default_rng(5), cfg.vocab_size, LENGTHS, 10)
  return hf, OPTForCausalLM(cfg), params, ids, mask


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return tmp_path_factory.mktemp("dec")


@pytest.fixture(scope="module", params=["pre_ln", "post_ln"])
def setup(request, folder):
  return _build(request.param, folder)


def _hf_generate(hf, ids, mask, eos):
  out = hf.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    do_sample=False, max_new_tokens=NEW, eos_token_id=list(eos), pad_token_id=1)
  new = out[:, ids.shape[1]:].numpy()
  return np.pad(new, ((0, 0), (0, NEW - new.shape[1])), constant_values=1)  # early stop


def _mid_row_stops(free: np.ndarray) -> list[int]:
  """Up to 2 tokens that no row emits first but some row emits later: stops mid-row."""
  later = [t for t in np.unique(free[:, 1:]) if t not in free[:, 0]]
  assert later, free
  return [int(t) for t in later[:2]]


def _eos_and_after_to_pad(tokens, eos):
  out = tokens.copy()
  for row in out:
    hits = np.flatnonzero(np.isin(row, eos))
    if hits.size:
      row[hits[0]:] = 1
  return out


def test_greedy_matches_transformers_without_stops(setup):
  hf, model, params, ids, mask = setup
  want = _hf_generate(hf, ids, mask, eos=[0])
  assert not np.isin(want, [0]).any()  # no stop token: the full length is compared
  got = generate_from_ids(model, params, ids, mask, max_new_tokens=NEW, eos_token_ids=[0])
  np.testing.assert_array_equal(np.asarray(got), want)
  assert got.dtype == jnp.int32 and len(np.unique(want)) > 2


def test_greedy_matches_transformers_with_stop_tokens(setup):
  hf, model, params, ids, mask = setup
  eos = _mid_row_stops(_hf_generate(hf, ids, mask, eos=[0]))
  want = _eos_and_after_to_pad(_hf_generate(hf, ids, mask, eos=eos), eos)
  embeds = model.apply(params, jnp.asarray(ids), method=OPTForCausalLM.embed_tokens)
  generate = make_greedy_generate(model, max_new_tokens=NEW, eos_token_ids=eos)
  got = np.asarray(generate(params, embeds, jnp.asarray(mask)))
  np.testing.assert_array_equal(got, want)
  assert (got == 1).any() and (got[:, 0] != 1).all()


def test_jitted_once_and_stop_at_first_token(folder):
  _, model, params, ids, mask = _build("post_ln", folder)
  first = generate_from_ids(model, params, ids, mask, max_new_tokens=NEW, eos_token_ids=[0])
  generate_from_ids(model, params, ids[::-1], mask[::-1], max_new_tokens=NEW, eos_token_ids=[0])
  assert _cached_ids_generate(model, NEW, (0,))._cache_size() == 1  # new values: no retrace
  stops = np.asarray(first)[:, 0].tolist()
  none = generate_from_ids(model, params, ids, mask, max_new_tokens=NEW, eos_token_ids=stops)
  assert (np.asarray(none) == 1).all()


def test_sampling_top_k_one_is_greedy_and_keys_matter(folder):
  _, model, params, ids, mask = _build("post_ln", folder)
  embeds = model.apply(params, jnp.asarray(ids), method=OPTForCausalLM.embed_tokens)
  top1 = make_sample_generate(model, max_new_tokens=NEW, eos_token_ids=[0], top_k=1)
  want = np.asarray(generate_from_ids(model, params, ids, mask, max_new_tokens=NEW,
                                      eos_token_ids=[0]))
  got = np.asarray(top1(params, embeds, jnp.asarray(mask), jax.random.key(1)))
  np.testing.assert_array_equal(got, want)
  hot = make_sample_generate(model, max_new_tokens=NEW, eos_token_ids=[0], temperature=5.0,
                             top_k=20)
  a = np.asarray(hot(params, embeds, jnp.asarray(mask), jax.random.key(1)))
  b = np.asarray(hot(params, embeds, jnp.asarray(mask), jax.random.key(2)))
  assert (a != b).any() and (a != want).any()
