"""Sharded Llama (8 forced CPU devices) equals the 1-device model; logical-axis rules.

Head counts 8 query / 4 or 2 KV heads: on tensor=2 every head axis splits; on tensor=8
the query heads split and the 4 or 2 KV heads cannot, so K/V stay replicated (whole
heads only), and the numbers are the same either way.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from sfubm_jax.errors import UserError
from sfubm_jax.llm.decoding import make_greedy_generate
from sfubm_jax.models.causal_lm import backbone, logical
from sfubm_jax.models.causal_lm.llama.model import LlamaConfig
from sfubm_jax.sharding import batch_sharding, make_mesh
from tests.models import llama_hf_reference as ref

MESHES = [(1, 8, 1), (2, 2, 2), (1, 1, 8)]
LENGTHS = [8, 3, 6, 1, 8, 5, 2, 7]


def _config(kv: int) -> LlamaConfig:
  return LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=8, num_key_value_heads=kv, head_dim=8,
                     max_position_embeddings=64, tie_word_embeddings=kv == 4,
                     initializer_range=0.2, pad_token_id=1, eos_token_id=3, lora_rank=2)


@pytest.fixture(scope="module")
def batch():
  return ref.left_padded_batch(np.random.default_rng(0), 96, LENGTHS, 8)


@pytest.fixture(scope="module", params=[4, 2])
def single(request, batch):
  cfg = _config(request.param)
  params = backbone.init_random(cfg, jax.random.key(7))
  ids, mask = batch
  logits, _ = jax.jit(backbone.build(cfg).apply)(params, jnp.asarray(ids),
                                                 attention_mask=jnp.asarray(mask))
  return cfg, params, np.asarray(logits)


@pytest.mark.parametrize("shape", MESHES)
def test_sharded_logits_equal_single_device(single, batch, shape):
  cfg, plain, want = single
  mesh = make_mesh(shape)
  params = backbone.init_random(cfg, jax.random.key(7), mesh=mesh)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), jax.device_get(plain))
  layer = params["params"]["model"]["layers_0"]
  tensor = mesh.shape["tensor"]
  # (size-1 mesh axes may appear in a spec: they split nothing)
  assert layer["self_attn"]["q_proj"]["kernel"].sharding.spec == P("fsdp", "tensor")
  kv_split = cfg.num_key_value_heads % tensor == 0  # whole KV heads only
  assert layer["self_attn"]["k_proj"]["kernel"].sharding.spec == P(
      "fsdp", "tensor" if kv_split else None)
  assert layer["self_attn"]["v_proj"]["lora_b"].sharding.spec == P(
      None, "tensor" if kv_split else None)
  if tensor == 8:
    assert not kv_split  # the case of GQA heads that do not divide the tensor axis
  ids, mask = (jax.device_put(jnp.asarray(x), batch_sharding(mesh, 2)) for x in batch)
  logits, _ = jax.jit(backbone.build(cfg).apply)(params, ids, attention_mask=mask)
  np.testing.assert_allclose(np.asarray(logits), want, atol=2e-5, rtol=0)


def test_sharded_greedy_equals_single_device(single, batch):
  cfg, plain, _ = single
  ids, mask = batch
  outs = []
  for mesh in (None, make_mesh((2, 2, 2))):
    params = backbone.init_random(cfg, jax.random.key(7), mesh=mesh)
    model = backbone.build(cfg)
    embeds = model.apply(params, jnp.asarray(ids), method="embed_tokens")
    generate = make_greedy_generate(model, max_new_tokens=5, eos_token_ids=[3])
    outs.append(np.asarray(generate(params, embeds, jnp.asarray(mask))))
  np.testing.assert_array_equal(outs[0], outs[1])


def test_logical_rules_come_from_config_and_bad_rules_are_errors():
  cfg = _config(2)
  mesh = make_mesh((1, 2, 4))
  shapes = backbone.abstract_params(cfg)
  no_tp = logical.rules_from_config([("vocab", ""), ("embed", "fsdp"), ("heads", ""),
                                     ("kv_heads", ""), ("mlp", "")])
  spec = backbone.param_shardings(shapes, cfg, mesh, no_tp)["params"]["model"]["layers_1"][
      "mlp"]["down_proj"]["kernel"].spec
  assert spec == P(None, "fsdp")  # mlp -> replicated, embed -> fsdp: as the config says
  with pytest.raises(UserError, match="'model'"):
    backbone.param_shardings(shapes, cfg, mesh, [("vocab", "model")])
  with pytest.raises(UserError, match="'mlp'"):
    backbone.param_shardings(shapes, cfg, mesh, [("vocab", "tensor"), ("embed", "fsdp"),
                                                 ("heads", "tensor"), ("kv_heads", "tensor")])


def test_common_config_holds_the_default_mapping():
  from conftest import load_config

  config = load_config("tiny")
  assert logical.rules_from_config(config.mesh.logical_axes) == logical.DEFAULT_RULES
