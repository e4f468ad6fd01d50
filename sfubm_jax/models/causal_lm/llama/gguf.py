"""GGUF files (llama.cpp) of the Llama family: dequantised once into a Hugging Face folder.

`gguf_to_folder(path, out)` reads the file with the `gguf` package, dequantises every
tensor to float32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K; anything else is an
error naming the type), undoes llama.cpp's q/k row permutation for `llama` (its
interleaved RoPE layout; Qwen2 files are stored unpermuted), maps the names onto HF's,
derives the config from the metadata, builds the tokenizer from the file's own
vocabulary (byte-level BPE: tokens, merges, control tokens, the pre-tokenizer split the
file names), and writes config.json + model.safetensors + tokenizer files: a folder that
`transformers` reads as well. The folder
then loads like any HF folder (`checkpoint.load_llama`, `AutoTokenizer`).

`cached_folder(path)` does that once per machine: the folder lives under the cache
directory keyed by the file's sha256, so a second load skips the dequantisation.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.models.causal_lm import hf_files

ARCHITECTURES = ("llama", "qwen2")
TENSOR_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")
CACHE_ENV = "SFUBM_JAX_CACHE"
CACHE_VERSION = "v1"  # bump when the folder layout written by gguf_to_folder changes

# llama.cpp's pre-tokenizer splits (by `tokenizer.ggml.pre`); byte-level BPE then runs
# on each piece.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_SPLITS = {"default": _GPT2_SPLIT, "gpt2": _GPT2_SPLIT, "smollm": _GPT2_SPLIT,
              "llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}
_CONTROL, _USER_DEFINED = 3, 4

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
              "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}


def hf_tensor_name(name: str) -> str:
  """HF name of a GGUF tensor name ("blk.3.attn_q.weight" -> model.layers.3.self_attn...)."""
  if name in _TOP_NAMES:
    return _TOP_NAMES[name]
  m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
  if m and m.group(2) in _LAYER_NAMES:
    return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"
  raise UserError(f"GGUF tensor {name!r} has no Llama-family counterpart in this project "
                  "(rope_freqs and other extras are not supported)")


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
  """Undoes llama.cpp's q/k permutation of a [out, in] (or [out]) tensor."""
  d = w.shape[0]
  rest = w.shape[1:]
  return w.reshape(n_head, d // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def _field(reader, key, default=None):
  field = reader.fields.get(key)
  return default if field is None else field.contents()


def read_reader(path: pathlib.Path):
  import gguf

  if not path.is_file():
    raise UserError(f"GGUF file {path} does not exist")
  return gguf.GGUFReader(str(path))


def hf_config(reader) -> dict:
  """The HF config.json dict of a GGUF file's metadata."""
  arch = _field(reader, "general.architecture")
  if arch not in ARCHITECTURES:
    raise UserError(f"GGUF architecture {arch!r} is not supported; supported: "
                    f"{', '.join(ARCHITECTURES)}")
  get = lambda key, default=None: _field(reader, f"{arch}.{key}", default)
  tokens = _field(reader, "tokenizer.ggml.tokens") or []
  heads = int(get("attention.head_count"))
  hidden = int(get("embedding_length"))
  names = {t.name for t in reader.tensors}
  eos = _field(reader, "tokenizer.ggml.eos_token_id")
  d = {
      "model_type": arch, "vocab_size": int(get("vocab_size", len(tokens))),
      "hidden_size": hidden, "intermediate_size": int(get("feed_forward_length")),
      "num_hidden_layers": int(get("block_count")), "num_attention_heads": heads,
      "num_key_value_heads": int(get("attention.head_count_kv", heads)),
      "head_dim": int(get("attention.key_length", get("rope.dimension_count", hidden // heads))),
      "max_position_embeddings": int(get("context_length", 2048)),
      "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-6)),
      "rope_theta": float(get("rope.freq_base", 10000.0)),
      "tie_word_embeddings": "output.weight" not in names,
      "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
      "eos_token_id": eos,
      "pad_token_id": _field(reader, "tokenizer.ggml.padding_token_id", eos),
  }
  scaling = get("rope.scaling.type", "none")
  if scaling == "linear":
    d["rope_scaling"] = {"rope_type": "linear", "factor": float(get("rope.scaling.factor"))}
  elif scaling not in ("none", None):
    raise UserError(f"GGUF rope scaling {scaling!r} is not supported (linear only)")
  return {k: v for k, v in d.items() if v is not None}


def dequantised_tensors(reader, config: dict):
  """(HF name, float32 array [out, in] / [n]) per tensor, q/k unpermuted for llama."""
  from gguf.quants import dequantize

  for t in reader.tensors:
    kind = t.tensor_type.name
    if kind not in TENSOR_TYPES:
      raise UserError(f"GGUF tensor {t.name} has quantisation type {kind}, which is not "
                      f"supported; supported: {', '.join(TENSOR_TYPES)}")
    w = np.asarray(dequantize(t.data, t.tensor_type), np.float32)
    w = w.reshape(tuple(int(x) for x in reversed(t.shape)))  # ggml dims are reversed
    name = hf_tensor_name(t.name)
    if config["model_type"] == "llama" and ".q_proj." in name:
      w = unpermute(w, config["num_attention_heads"])
    elif config["model_type"] == "llama" and ".k_proj." in name:
      w = unpermute(w, config["num_key_value_heads"])
    yield name, w


def build_tokenizer(reader):
  """A PreTrainedTokenizerFast from the file's vocabulary (byte-level BPE only)."""
  from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  kind = _field(reader, "tokenizer.ggml.model")
  if kind != "gpt2":
    raise UserError(f"GGUF tokenizer model {kind!r} is not supported (byte-level BPE 'gpt2' "
                    "only)")
  pre = _field(reader, "tokenizer.ggml.pre", "default")
  if pre not in PRE_SPLITS:
    raise UserError(f"GGUF pre-tokenizer {pre!r} is not supported; supported: "
                    f"{', '.join(sorted(PRE_SPLITS))}")
  tokens = list(_field(reader, "tokenizer.ggml.tokens"))
  types = list(_field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens))
  merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
  tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                             fuse_unk=False, byte_fallback=False))
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(PRE_SPLITS[pre]), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
  ])
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                          for t, k in zip(tokens, types) if k == _CONTROL])
  tok.add_tokens([AddedToken(t, special=False, normalized=False)
                  for t, k in zip(tokens, types) if k == _USER_DEFINED])
  name = lambda key: (tokens[_field(reader, key)]
                      if _field(reader, key) is not None else None)
  special = {"bos_token": name("tokenizer.ggml.bos_token_id"),
             "eos_token": name("tokenizer.ggml.eos_token_id"),
             "unk_token": name("tokenizer.ggml.unknown_token_id"),
             "pad_token": name("tokenizer.ggml.padding_token_id")}
  fast = PreTrainedTokenizerFast(tokenizer_object=tok,
                                 **{k: v for k, v in special.items() if v is not None})
  if _field(reader, "tokenizer.ggml.add_bos_token", False):
    from tokenizers import processors

    bos = special["bos_token"]
    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, _field(reader, "tokenizer.ggml.bos_token_id"))])
  template = _field(reader, "tokenizer.chat_template")
  if template:
    fast.chat_template = template
  return fast


def gguf_to_folder(path: str | pathlib.Path, out: str | pathlib.Path) -> pathlib.Path:
  """Writes `out` as a HF folder (fp32 safetensors, config, tokenizer) of the GGUF file."""
  path = pathlib.Path(path)
  reader = read_reader(path)
  config = hf_config(reader)
  tokenizer = build_tokenizer(reader)
  arrays = dict(dequantised_tensors(reader, config))
  tensors = [(name, a) for name, a in arrays.items()]
  from sfubm_jax.models.causal_lm.llama.model import LlamaConfig

  hf_dict = LlamaConfig.from_hf_dict(config).to_hf_dict()  # what transformers (v5) reads too
  with io_utils.atomic_directory(out) as tmp:
    io_utils.write_json(tmp / "config.json", hf_dict)
    hf_files.write_safetensors(tmp / "model.safetensors", tensors, arrays.__getitem__)
    tokenizer.save_pretrained(str(tmp))
    io_utils.write_json(tmp / "gguf_source.json", {"file": str(path.resolve())})
  return pathlib.Path(out)


def cache_root() -> pathlib.Path:
  """$SFUBM_JAX_CACHE, else ~/.cache/sfubm_jax: where dequantised GGUF folders live."""
  env = os.environ.get(CACHE_ENV)
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "sfubm_jax"


def file_sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()


def cached_folder(path: str | pathlib.Path, cache_dir=None) -> pathlib.Path:
  """The dequantised HF folder of a GGUF file, made on first use (keyed by its sha256)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"GGUF file {path} does not exist")
  root = pathlib.Path(cache_dir) if cache_dir else cache_root()
  out = root / "gguf" / f"{path.stem}-{file_sha256(path)[:16]}-{CACHE_VERSION}"
  if not (out / "config.json").exists():
    gguf_to_folder(path, out)
  return out
