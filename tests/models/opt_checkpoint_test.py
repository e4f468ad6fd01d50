"""Loading and saving Hugging Face OPT folders: every format, strict names, round trips."""

import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.torch
import torch

from sfubm_jax.errors import UserError
from sfubm_jax.models.causal_lm.opt.checkpoint import init_opt, load_opt, read_config, save_opt
from sfubm_jax.models.causal_lm.opt.model import OPTForCausalLM
from tests.models import opt_hf_reference as ref

LENGTHS = [6, 2, 9, 4]


def _batch(vocab, seed=0):
  return ref.left_padded_batch(np.random.default_rng(seed), vocab, LENGTHS, 9)


def _assert_matches_hf(hf, cfg, params, seed=0):
  ids, mask = _batch(cfg.vocab_size, seed)
  want = ref.hf_logits(hf, ids, mask)
  got, _ = OPTForCausalLM(cfg).apply(params, jnp.asarray(ids), attention_mask=mask)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(got)[real], want[real], atol=1e-4, rtol=0)


def test_sharded_safetensors_with_index(tmp_path):
  hf = ref.hf_model("post_ln", seed=1)
  hf.save_pretrained(tmp_path, max_shard_size="20KB")
  assert (tmp_path / "model.safetensors.index.json").exists()
  assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
  cfg, params = load_opt(tmp_path)
  _assert_matches_hf(hf, cfg, params)


def test_pytorch_bin_with_facebook_names(tmp_path):
  """pytorch_model.bin saved from the base model (keys `decoder.*`) plus a tied lm_head."""
  hf = ref.hf_model("pre_ln", seed=2)
  hf.config.to_json_file(tmp_path / "config.json")
  state = {k.removeprefix("model."): v for k, v in hf.state_dict().items()}
  torch.save(state, tmp_path / "pytorch_model.bin")
  assert "lm_head.weight" in state and "decoder.embed_tokens.weight" in state
  cfg, params = load_opt(tmp_path)
  _assert_matches_hf(hf, cfg, params)


def test_sharded_pytorch_bin_with_index(tmp_path):
  hf = ref.hf_model("post_ln", seed=8)
  hf.config.to_json_file(tmp_path / "config.json")
  names = list(hf.state_dict())
  weight_map = {}
  for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
    fname = f"pytorch_model-0000{i + 1}-of-00002.bin"
    torch.save({n: hf.state_dict()[n] for n in part}, tmp_path / fname)
    weight_map.update({n: fname for n in part})
  (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
  cfg, params = load_opt(tmp_path)
  _assert_matches_hf(hf, cfg, params)


def test_bf16_checkpoint_loads_bit_exact(tmp_path):
  hf = ref.hf_model("pre_ln", seed=3).to(torch.bfloat16)
  hf.save_pretrained(tmp_path)
  _, params = load_opt(tmp_path, dtype="bfloat16", param_dtype="bfloat16")
  got = np.asarray(params["params"]["decoder"]["layers_1"]["fc1"]["kernel"])
  want = hf.model.decoder.layers[1].fc1.weight.detach().T.contiguous()
  assert got.dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(got.view(np.int16), want.view(torch.int16).numpy())


@pytest.mark.parametrize("max_shard_bytes", [None, 30_000])
def test_save_round_trip_through_transformers(tmp_path, max_shard_bytes):
  cfg = read_config_from_hf(tmp_path / "src", "post_ln")
  params = init_opt(cfg, jax.random.key(7))
  kwargs = {} if max_shard_bytes is None else {"max_shard_bytes": max_shard_bytes}
  save_opt(tmp_path / "out", cfg, params, **kwargs)
  assert (tmp_path / "out" / "model.safetensors.index.json").exists() == bool(max_shard_bytes)
  hf = ref.HFOPTForCausalLM.from_pretrained(tmp_path / "out").eval()
  _assert_matches_hf(hf, cfg, params, seed=4)
  cfg2, params2 = load_opt(tmp_path / "out")
  assert cfg2 == cfg
  jax.tree.map(np.testing.assert_array_equal, params2, jax.device_get(params))


def read_config_from_hf(folder, style):
  """Our OPTConfig read from the config.json transformers writes for `style`."""
  folder.mkdir(parents=True)
  ref.hf_model(style).config.to_json_file(folder / "config.json")
  return read_config(folder)


def test_save_merges_lora_into_kernels(tmp_path):
  hf = ref.hf_model("pre_ln", seed=5)
  hf.save_pretrained(tmp_path / "base")
  cfg, params = load_opt(tmp_path / "base", lora_rank=2, lora_alpha=4.0)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.3 if "lora_b" in str(p) else x, params)
  save_opt(tmp_path / "merged", cfg, params)
  merged = ref.HFOPTForCausalLM.from_pretrained(tmp_path / "merged").eval()
  _assert_matches_hf(merged, cfg, params, seed=6)


def test_strict_loading_lists_every_mismatch(tmp_path):
  hf = ref.hf_model("pre_ln")
  hf.config.to_json_file(tmp_path / "config.json")
  state = {k: v.clone() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
  del state["model.decoder.layers.1.fc2.bias"]
  state["model.decoder.layers.0.fc1.weight"] = torch.zeros(63, 32)
  state["model.decoder.layers.2.fc1.weight"] = torch.zeros(64, 32)
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(UserError) as err:
    load_opt(tmp_path)
  msg = str(err.value)
  assert str(tmp_path) in msg
  assert "missing tensor model.decoder.layers.1.fc2.bias" in msg
  assert "misshapen tensor model.decoder.layers.0.fc1.weight: file (63, 32)" in msg
  assert "unexpected tensor model.decoder.layers.2.fc1.weight" in msg


def test_missing_files_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="config.json"):
    load_opt(tmp_path)
  ref.hf_model("pre_ln").config.to_json_file(tmp_path / "config.json")
  with pytest.raises(UserError, match="no OPT weights"):
    load_opt(tmp_path)
  (tmp_path / "model.safetensors.index.json").write_text(
      json.dumps({"weight_map": {"model.decoder.embed_tokens.weight": "gone.safetensors"}}))
  with pytest.raises(UserError, match="gone.safetensors"):
    load_opt(tmp_path)


def test_save_replaces_folder_atomically(tmp_path):
  cfg = read_config_from_hf(tmp_path / "src", "pre_ln")
  params = init_opt(cfg, jax.random.key(0))
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "stale.bin").write_bytes(b"x")
  save_opt(tmp_path / "out", cfg, params)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json",
                                                                  "model.safetensors"]
  assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
