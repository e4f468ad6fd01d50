"""Shared helpers of the Llama-family tests: tiny random Hugging Face models as the reference.

Configs cover what the Flax model must match: plain RoPE, linear and llama3 rope scaling,
tied and untied heads, grouped-query attention, and Qwen2 (biases on q/k/v). Head
counts are 8 query / 4 KV heads (or 8/2), so every 8-device mesh splits or replicates them.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

BASE = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=64,
            rms_norm_eps=1e-5, bos_token_id=2, eos_token_id=3, pad_token_id=1)
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8}
STYLES = {
    "llama_tied": dict(BASE, tie_word_embeddings=True, rope_theta=10000.0),
    "llama_untied_linear": dict(BASE, tie_word_embeddings=False, rope_theta=500.0,
                                rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "llama3_gqa2": dict(BASE, num_key_value_heads=2, tie_word_embeddings=False,
                        rope_theta=500000.0, rope_scaling=LLAMA3),
    "qwen2_bias": dict(BASE, tie_word_embeddings=True, rope_theta=1e6),
}


def hf_model(style: str, seed: int = 0):
  """A random HF model in eval mode; norms and biases randomised too (not 1/0)."""
  torch.manual_seed(seed)
  cls, cfg = (Qwen2ForCausalLM, Qwen2Config) if style.startswith("qwen2") else (
      LlamaForCausalLM, LlamaConfig)
  model = cls(cfg(**STYLES[style])).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
      else:
        p.normal_(0.0, 0.15)
  return model


def save_hf(model, folder: pathlib.Path) -> pathlib.Path:
  model.save_pretrained(folder)
  return folder


def left_padded_batch(rng: np.random.Generator, vocab: int, lengths, total: int):
  """(ids [B, total], mask [B, total]): random tokens (>= 4, no specials), left padded."""
  ids = np.full((len(lengths), total), 1, np.int64)
  mask = np.zeros((len(lengths), total), np.int64)
  for row, n in enumerate(lengths):
    ids[row, total - n:] = rng.integers(4, vocab, n)
    mask[row, total - n:] = 1
  return ids, mask


def hf_logits(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Logits with the positions `generate` uses for left padding (cumsum of the mask − 1)."""
  pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                position_ids=torch.from_numpy(pos))
  return out.logits.float().numpy()


def hf_generate(model, ids, mask, new: int, eos: int, pad: int = 1) -> np.ndarray:
  out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                       do_sample=False, max_new_tokens=new, eos_token_id=eos, pad_token_id=pad)
  tokens = out[:, ids.shape[1]:].numpy()
  return np.pad(tokens, ((0, 0), (0, new - tokens.shape[1])), constant_values=pad)
