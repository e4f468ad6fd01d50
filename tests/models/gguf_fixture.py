"""Tiny GGUF files written with the `gguf` package: a random Llama/Qwen2 in mixed types.

Each linear weight uses a different storage type (Q4_K, Q6_K, Q8_0, Q4_0, Q4_1, F16,
BF16), so one file exercises every type the loader supports. Q8_0/Q4_0/Q4_1 are real
quantisations of random weights (gguf.quants.quantize); Q4_K/Q6_K, which gguf cannot
quantise, are random blocks with sane float16 scales. The vocabulary is the 256 byte
symbols plus two control tokens and a few merges, so a tokenizer can be built from it.
"""

from __future__ import annotations

import pathlib

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

HIDDEN, FFN, HEADS, KV, LAYERS = 256, 512, 4, 2, 2
HEAD_DIM = HIDDEN // HEADS
LINEAR_TYPES = {"attn_q": Q.Q4_K, "attn_k": Q.Q6_K, "attn_v": Q.Q8_0, "attn_output": Q.Q4_0,
                "ffn_gate": Q.Q4_1, "ffn_up": Q.F16, "ffn_down": Q.BF16}


def byte_tokens() -> list[str]:
  """GPT-2's byte -> printable-unicode alphabet, in byte order."""
  keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
  chars, n = [], 0
  for b in range(256):
    if b in keep:
      chars.append(chr(b))
    else:
      chars.append(chr(256 + n))
      n += 1
  return chars


def _k_blocks(rng, rows: int, cols: int, kind) -> np.ndarray:
  """Random K-quant blocks [rows, cols/256 * bytes] with small finite f16 scale fields."""
  block, size = gguf.GGML_QUANT_SIZES[kind]
  n = rows * cols // block
  raw = rng.integers(0, 256, (n, size), dtype=np.uint8)
  d = rng.uniform(0.001, 0.01, (n, 2)).astype(np.float16).view(np.uint8)  # [n, 4]
  if kind == Q.Q6_K:  # d is the last 2 bytes
    raw[:, -2:] = d[:, :2]
  else:  # Q4_K, Q5_K: d, dmin lead the block
    raw[:, 0:4] = d
  return raw.reshape(rows, cols // block * size)


def _store(rng, w: np.ndarray, kind):
  if kind in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
    return _k_blocks(rng, *w.shape, kind)
  if kind == Q.F16:
    return w.astype(np.float16)
  return gguf.quants.quantize(w, kind)


def write_tiny_gguf(path: pathlib.Path, *, arch: str = "llama", seed: int = 0,
                    linear_types=None, tied: bool = False) -> pathlib.Path:
  rng = np.random.default_rng(seed)
  types = dict(LINEAR_TYPES, **(linear_types or {}))
  tokens = byte_tokens() + ["<|bos|>", "<|eos|>"]
  merges = ["Ġ t", "h e", "Ġt he"]
  tokens += ["Ġt", "he", "Ġthe"]
  vocab = len(tokens)
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(LAYERS)
  w.add_context_length(128)
  w.add_embedding_length(HIDDEN)
  w.add_feed_forward_length(FFN)
  w.add_head_count(HEADS)
  w.add_head_count_kv(KV)
  w.add_rope_freq_base(10000.0)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_rope_dimension_count(HEAD_DIM)
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre("gpt2")
  w.add_token_list(tokens)
  w.add_token_types([1] * 256 + [3, 3] + [1] * 3)
  w.add_token_merges(merges)
  w.add_bos_token_id(256)
  w.add_eos_token_id(257)
  w.add_add_bos_token(False)
  emb = rng.normal(0, 0.5, (vocab, HIDDEN)).astype(np.float32)
  w.add_tensor("token_embd.weight", gguf.quants.quantize(emb, Q.Q8_0),
               raw_dtype=Q.Q8_0)
  w.add_tensor("output_norm.weight", (1 + 0.1 * rng.normal(size=HIDDEN)).astype(np.float32))
  if not tied:
    out = rng.normal(0, 0.1, (vocab, HIDDEN)).astype(np.float32)
    w.add_tensor("output.weight", out)
  shapes = {"attn_q": (HIDDEN, HIDDEN), "attn_k": (KV * HEAD_DIM, HIDDEN),
            "attn_v": (KV * HEAD_DIM, HIDDEN), "attn_output": (HIDDEN, HIDDEN),
            "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN), "ffn_down": (HIDDEN, FFN)}
  for i in range(LAYERS):
    for name in ("attn_norm", "ffn_norm"):
      w.add_tensor(f"blk.{i}.{name}.weight",
                   (1 + 0.1 * rng.normal(size=HIDDEN)).astype(np.float32))
    for name, shape in shapes.items():
      value = rng.normal(0, 0.08, shape).astype(np.float32)
      kind = types[name]
      stored = _store(rng, value, kind)
      if kind in (Q.F32,):
        w.add_tensor(f"blk.{i}.{name}.weight", value)
      elif kind == Q.F16:
        w.add_tensor(f"blk.{i}.{name}.weight", stored)
      else:
        w.add_tensor(f"blk.{i}.{name}.weight", stored, raw_dtype=kind)
    if arch == "qwen2":
      for name, n in (("attn_q", HIDDEN), ("attn_k", KV * HEAD_DIM), ("attn_v", KV * HEAD_DIM)):
        w.add_tensor(f"blk.{i}.{name}.bias", rng.normal(0, 0.1, n).astype(np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path
