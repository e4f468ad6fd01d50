"""Shared helpers of the OPT tests: tiny random Hugging Face OPT models as the reference.

Importing `transformers`' OPTForCausalLM costs seconds; test modules import this module
once and build tiny configs of both OPT layouts (pre-LN; post-LN 350m-style with
project_in/out).
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from transformers import OPTConfig as HFOPTConfig
from transformers import OPTForCausalLM as HFOPTForCausalLM

# Dims divisible by 8 so every mesh shape of 8 devices splits them.
PRE_LN = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
              num_attention_heads=4, max_position_embeddings=64, do_layer_norm_before=True,
              word_embed_proj_dim=32)
POST_LN = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
               num_attention_heads=4, max_position_embeddings=64, do_layer_norm_before=False,
               word_embed_proj_dim=16)
STYLES = {"pre_ln": PRE_LN, "post_ln": POST_LN}


def hf_model(style: str, seed: int = 0, **changes) -> HFOPTForCausalLM:
  """A random HF OPT in eval mode; LayerNorms and biases randomised too (not 1/0)."""
  torch.manual_seed(seed)
  model = HFOPTForCausalLM(HFOPTConfig(**{**STYLES[style], **changes})).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "layer_norm" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
      else:
        p.normal_(0.0, 0.1)
  return model


def save_hf(model: HFOPTForCausalLM, folder: pathlib.Path, **kwargs) -> pathlib.Path:
  model.save_pretrained(folder, **kwargs)
  return folder


def left_padded_batch(rng: np.random.Generator, vocab: int, lengths, total: int):
  """(ids [B, total], mask [B, total]): random tokens (>= 4, no specials), left padded."""
  ids = np.full((len(lengths), total), 1, np.int64)
  mask = np.zeros((len(lengths), total), np.int64)
  for row, n in enumerate(lengths):
    ids[row, total - n:] = rng.integers(4, vocab, n)
    mask[row, total - n:] = 1
  return ids, mask


def hf_logits(model: HFOPTForCausalLM, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  return out.logits.float().numpy()
