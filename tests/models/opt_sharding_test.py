"""Sharded OPT (8 forced CPU devices, several mesh shapes) equals the 1-device model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from sfubm_jax.llm.decoding import make_greedy_generate
from sfubm_jax.models.causal_lm.logical import param_shardings, partition_spec
from sfubm_jax.models.causal_lm.opt.checkpoint import init_opt, load_opt, save_opt
from sfubm_jax.models.causal_lm.opt.model import PARAM_AXES, OPTForCausalLM
from sfubm_jax.sharding import batch_sharding, make_mesh
from tests.models import opt_hf_reference as ref

MESHES = [(1, 8, 1), (1, 2, 4), (2, 2, 2), (1, 1, 8)]
LENGTHS = [8, 3, 6, 1, 8, 5, 2, 7]  # batch 8: divisible by data * fsdp of every mesh


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  path = tmp_path_factory.mktemp("opt") / "post_ln"
  return ref.save_hf(ref.hf_model("post_ln", seed=11), path)


@pytest.fixture(scope="module")
def batch():
  return ref.left_padded_batch(np.random.default_rng(0), 96, LENGTHS, 8)


@pytest.fixture(scope="module")
def single(folder, batch):
  cfg, params = load_opt(folder)
  ids, mask = batch
  logits, _ = jax.jit(OPTForCausalLM(cfg).apply)(params, jnp.asarray(ids), attention_mask=mask)
  return np.asarray(logits)


@pytest.mark.parametrize("shape", MESHES)
def test_sharded_logits_equal_single_device(folder, batch, single, shape):
  mesh = make_mesh(shape)
  cfg, params = load_opt(folder, mesh=mesh)
  fc1 = params["params"]["decoder"]["layers_0"]["fc1"]["kernel"]  # [32, 64]
  assert fc1.sharding.spec == P("fsdp", "tensor")
  assert fc1.addressable_shards[0].data.shape == (32 // mesh.shape["fsdp"],
                                                   64 // mesh.shape["tensor"])
  ids, mask = batch
  ids = jax.device_put(jnp.asarray(ids), batch_sharding(mesh, 2))
  mask = jax.device_put(jnp.asarray(mask), batch_sharding(mesh, 2))
  logits, _ = jax.jit(OPTForCausalLM(cfg).apply)(params, ids, attention_mask=mask)
  np.testing.assert_allclose(np.asarray(logits), single, atol=2e-5, rtol=0)


def test_sharded_greedy_decoding_equals_single_device(folder, batch):
  ids, mask = batch
  outs = []
  for mesh in (None, make_mesh((2, 2, 2))):
    cfg, params = load_opt(folder, mesh=mesh)
    model = OPTForCausalLM(cfg)
    embeds = model.apply(params, jnp.asarray(ids), method=OPTForCausalLM.embed_tokens)
    generate = make_greedy_generate(model, max_new_tokens=6, eos_token_ids=[2])
    outs.append(np.asarray(generate(params, embeds, jnp.asarray(mask))))
  np.testing.assert_array_equal(outs[0], outs[1])


def test_sharded_init_equals_unsharded_init_and_saves(folder, tmp_path):
  cfg, _ = load_opt(folder)
  mesh = make_mesh((1, 2, 4))
  sharded = init_opt(cfg, jax.random.key(3), mesh=mesh)
  plain = init_opt(cfg, jax.random.key(3))
  assert sharded["params"]["decoder"]["embed_tokens"]["embedding"].sharding.spec == P(
      "tensor", "fsdp")
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(sharded), jax.device_get(plain))
  save_opt(tmp_path / "saved", cfg, sharded)  # gathers each sharded tensor while writing
  _, loaded = load_opt(tmp_path / "saved")
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(plain))


def test_rules_skip_axes_that_do_not_divide():
  mesh = make_mesh((1, 2, 4))
  # OPT vocab 50265 (odd) cannot be split over tensor; 2050 position rows stay whole.
  spec = lambda name, shape: partition_spec(name, shape, mesh, PARAM_AXES,
                                            head_counts={"heads": 12})
  assert spec("params/decoder/embed_tokens/embedding", (50265, 768)) == P(None, "fsdp")
  assert spec("params/decoder/embed_positions/embedding", (2050, 768)) == P()
  assert spec("params/decoder/layers_3/fc2/kernel", (3072, 768)) == P("tensor", "fsdp")
  assert spec("params/decoder/layers_3/self_attn/q_proj/lora_b", (4, 768)) == P(None, "tensor")
  shapes = {"params": {"final_layer_norm": {"scale": jax.ShapeDtypeStruct((768,), jnp.float32)}}}
  assert param_shardings(shapes, mesh, PARAM_AXES)["params"]["final_layer_norm"][
      "scale"].spec == P()
