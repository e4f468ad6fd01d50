"""Flax Llama family (Llama, Llama 3 rope, Qwen2) against `transformers` on random weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sfubm_jax.errors import UserError
from sfubm_jax.llm.decoding import generate_from_ids
from sfubm_jax.models.causal_lm import backbone
from sfubm_jax.models.causal_lm.llama.checkpoint import abstract_params, load_llama, save_llama
from sfubm_jax.models.causal_lm.llama.model import LlamaConfig, LlamaForCausalLM, init_cache
from tests.models import llama_hf_reference as ref

LENGTHS = [7, 3, 10, 5]
NEW = 10


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return tmp_path_factory.mktemp("llama")


@pytest.fixture(scope="module", params=sorted(ref.STYLES))
def setup(request, folder):
  hf = ref.hf_model(request.param, seed=3)
  cfg, params = load_llama(ref.save_hf(hf, folder / request.param))
  ids, mask = ref.left_padded_batch(np.random.default_rng(1), cfg.vocab_size, LENGTHS, 10)
  return request.param, hf, cfg, params, ids, mask


def test_logits_match_transformers_left_padded(setup):
  style, hf, cfg, params, ids, mask = setup
  assert cfg.tie_word_embeddings == ("lm_head" not in params["params"])
  assert cfg.attention_bias == style.startswith("qwen2")
  logits, _ = jax.jit(LlamaForCausalLM(cfg).apply)(params, jnp.asarray(ids),
                                                   attention_mask=jnp.asarray(mask))
  want = ref.hf_logits(hf, ids, mask)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(logits)[real], want[real], atol=1e-4, rtol=0)


def test_greedy_equals_transformers_generate(setup):
  _, hf, cfg, params, ids, mask = setup
  ours = generate_from_ids(LlamaForCausalLM(cfg), params, ids, mask, max_new_tokens=NEW,
                           eos_token_ids=[cfg.eos_token_id])
  want = ref.hf_generate(hf, ids, mask, NEW, cfg.eos_token_id, pad=cfg.pad_token_id)
  assert len(np.unique(want)) > 3  # rows take varied tokens: the comparison means something
  np.testing.assert_array_equal(np.asarray(ours), want)


def test_kv_cache_decode_equals_full_recompute(setup):
  _, _, cfg, params, ids, mask = setup
  model = LlamaForCausalLM(cfg)
  b, t = ids.shape
  extra = np.random.default_rng(2).integers(4, cfg.vocab_size, (b, 3))
  full_ids = np.concatenate([ids, extra], axis=1)
  full_mask = np.concatenate([mask, np.ones_like(extra)], axis=1)
  full, _ = model.apply(params, jnp.asarray(full_ids), attention_mask=jnp.asarray(full_mask))
  cache = init_cache(cfg, b, t + 3)
  slots = jnp.asarray(full_mask)
  pre, cache = model.apply(params, jnp.asarray(ids), attention_mask=slots, cache=cache)
  steps = [pre]
  for j in range(3):
    step, cache = model.apply(params, jnp.asarray(extra[:, j:j + 1]), attention_mask=slots,
                              cache=cache)
    steps.append(step)
  got = np.concatenate([np.asarray(s) for s in steps], axis=1)
  real = full_mask.astype(bool)
  np.testing.assert_allclose(got[real], np.asarray(full)[real], atol=2e-5, rtol=0)


def test_save_roundtrip_and_backbone_dispatch(setup, tmp_path):
  style, hf, cfg, params, ids, mask = setup
  save_llama(tmp_path / "saved", cfg, params)
  cfg2, params2 = backbone.load(str(tmp_path / "saved"))
  assert cfg2 == cfg
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  assert backbone.family_of(cfg) == "llama"
  assert backbone.build(cfg).config is cfg


# Published parameter counts (model cards / HF `num_parameters()`).
PUBLISHED = {
    "llama-2-7b": (dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
                   6_738_415_616),
    "llama-3-8b": (dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                        rope_theta=500000.0), 8_030_261_248),
    "qwen2.5-7b": (dict(model_type="qwen2", vocab_size=152064, hidden_size=3584,
                        intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                        num_key_value_heads=4, rope_theta=1e6), 7_615_616_512),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_eval_shape_gives_published_parameter_counts(name):
  fields, count = PUBLISHED[name]
  fields = dict(fields)
  model_type = fields.pop("model_type", "llama")
  cfg = LlamaConfig(**fields, model_type=model_type, attention_bias=model_type == "qwen2",
                    dtype="bfloat16", param_dtype="bfloat16")
  shapes = abstract_params(cfg)  # ShapeDtypeStructs: nothing is allocated
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(shapes))
  assert backbone.count_params(shapes) == count


def test_unsupported_architecture_and_rope_are_named():
  with pytest.raises(UserError, match="mistral"):
    backbone.config_from_hf({"model_type": "mistral"})
  with pytest.raises(UserError, match="yarn"):
    LlamaConfig.from_hf_dict({"model_type": "llama", "rope_scaling": {"rope_type": "yarn",
                                                                      "factor": 2.0}})
