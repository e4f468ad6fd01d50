"""OPT weights: random init, and Hugging Face folders in and out.

A Hugging Face OPT folder holds `config.json` and the weights as `model.safetensors`,
sharded `model-*.safetensors` with `model.safetensors.index.json`, or
`pytorch_model*.bin` (read with torch, when installed). Loading is strict (every tensor
present with the right shape; all problems reported together) and streamed: each tensor
is read (memory-mapped for safetensors), cast, and placed into its target sharding
before the next is touched, so the model never sits twice in host memory. Saving writes
config.json + safetensors that `transformers.OPTForCausalLM.from_pretrained` reads
(LoRA adapters, if any, are merged into their kernels).

HF names map onto the Flax tree one to one: `model.decoder.layers.3.fc1.weight` is
params/decoder/layers_3/fc1/kernel, transposed (torch Linear is [out, in]); LayerNorm
`weight` is `scale`, Embedding `weight` is `embedding`; `lm_head.weight` is tied.
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.models.lora import merge_lora
from sfubm_jax.models.opt import OPTConfig, OPTForCausalLM
from sfubm_jax.models.opt_sharding import param_shardings

_ST_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30


# ---------------------------------------------------------------- names

def hf_name(path: tuple[str, ...]) -> tuple[str, bool] | None:
  """(HF tensor name, transpose?) of a Flax param path; None for LoRA params (not in HF)."""
  if path and path[0] == "params":
    path = path[1:]
  *mods, leaf = path
  if "lora" in leaf:
    return None
  parts = []
  for m in mods:
    parts.extend(m.split("_", 1) if m.startswith("layers_") else [m])
  hf_leaf = "bias" if leaf == "bias" else "weight"
  return "model." + ".".join(parts + [hf_leaf]), leaf == "kernel"


def _canonical(name: str) -> str | None:
  """HF names as saved by OPTForCausalLM or by OPTModel (facebook/opt-*); None = tied head."""
  if name == "lm_head.weight":
    return None
  return name if name.startswith("model.") else "model." + name


# ---------------------------------------------------------------- safetensors I/O

def _read_safetensors_header(path: pathlib.Path) -> tuple[dict, int]:
  with open(path, "rb") as f:
    n = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(n))
  header.pop("__metadata__", None)
  return header, 8 + n


def _safetensors_tensors(path: pathlib.Path) -> Iterator[tuple[str, tuple, np.ndarray]]:
  """(name, shape, memory-mapped array) per tensor; bf16 via ml_dtypes, no torch needed."""
  header, base = _read_safetensors_header(path)
  for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    shape = tuple(info["shape"])
    dtype = _ST_DTYPES[info["dtype"]]
    start, end = info["data_offsets"]
    if start == end:
      yield name, shape, np.zeros(shape, dtype)
    else:
      yield name, shape, np.memmap(path, dtype=dtype, mode="r", offset=base + start, shape=shape)


def _write_safetensors(path: pathlib.Path, tensors: list[tuple[str, Any]], fetch) -> None:
  """Writes tensors (name, ShapeDtypeStruct-like) streaming: `fetch(name)` -> np.ndarray."""
  header, offset = {}, 0
  for name, spec in tensors:
    nbytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    header[name] = {"dtype": _ST_NAMES[np.dtype(spec.dtype)], "shape": list(spec.shape),
                    "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  header["__metadata__"] = {"format": "pt"}
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)
  with open(path, "wb") as f:
    f.write(len(blob).to_bytes(8, "little"))
    f.write(blob)
    for name, spec in tensors:
      array = np.ascontiguousarray(fetch(name), dtype=np.dtype(spec.dtype))
      if array.shape != tuple(spec.shape):
        raise ValueError(f"{name}: shape {array.shape} != {tuple(spec.shape)}")
      f.write(array.tobytes())


# ---------------------------------------------------------------- checkpoint files

def _weight_files(folder: pathlib.Path) -> tuple[str, list[pathlib.Path]]:
  """("safetensors" | "bin", weight files) of a HF folder; an index wins over a single file."""
  for fmt, single, index in (("safetensors", "model.safetensors", "model.safetensors.index.json"),
                              ("bin", "pytorch_model.bin", "pytorch_model.bin.index.json")):
    if (folder / index).exists():
      weight_map = io_utils.read_json(folder / index)["weight_map"]
      files = [folder / f for f in sorted(set(weight_map.values()))]
      absent = [str(f) for f in files if not f.exists()]
      if absent:
        raise UserError(f"{folder / index} lists shard files that do not exist: {absent}")
      return fmt, files
    if (folder / single).exists():
      return fmt, [folder / single]
  raise UserError(
      f"no OPT weights in {folder}: expected model.safetensors, model.safetensors.index.json, "
      "pytorch_model.bin or pytorch_model.bin.index.json (a Hugging Face model folder, e.g. "
      "`huggingface-cli download facebook/opt-6.7b --local-dir DIR`)"
  )


def _bin_tensors(path: pathlib.Path) -> Iterator[tuple[str, tuple, np.ndarray]]:
  try:
    import torch
  except ImportError as e:
    raise UserError(f"{path} is a PyTorch .bin checkpoint and torch is not installed; "
                    "install torch or convert the folder to safetensors") from e
  state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  for name in list(state):
    t = state.pop(name)
    if t.dtype == torch.bfloat16:
      array = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    else:
      array = t.numpy()
    yield name, tuple(t.shape), array


def _iter_tensors(fmt: str, files: list[pathlib.Path]):
  for path in files:
    yield from (_safetensors_tensors(path) if fmt == "safetensors" else _bin_tensors(path))


def _file_shapes(fmt: str, files: list[pathlib.Path]) -> dict[str, tuple[int, ...]]:
  """Names and shapes of every tensor (safetensors: headers only; .bin: memory-mapped)."""
  if fmt == "safetensors":
    shapes = {}
    for path in files:
      header, _ = _read_safetensors_header(path)
      shapes.update({k: tuple(v["shape"]) for k, v in header.items()})
    return shapes
  return {name: shape for name, shape, _ in _iter_tensors(fmt, files)}


def read_config(folder: str | pathlib.Path, **overrides) -> OPTConfig:
  path = pathlib.Path(folder) / "config.json"
  if not path.exists():
    raise UserError(f"{path} does not exist: give llm.checkpoint a Hugging Face OPT folder")
  return OPTConfig.from_hf_dict(io_utils.read_json(path), **overrides)


# ---------------------------------------------------------------- public API

def abstract_params(config: OPTConfig) -> Any:
  """ShapeDtypeStructs of the model's variables {"params": ...}; allocates nothing."""
  model = OPTForCausalLM(config)
  ids = jnp.zeros((1, 1), jnp.int32)
  return jax.eval_shape(lambda k: model.init(k, ids, attention_mask=ids + 1), jax.random.key(0))


def _leaf_kind(path: tuple[str, ...], shape, config: OPTConfig) -> tuple[str, float]:
  """How HF initialises a parameter: (kind, std) with kind in normal|normal_pad|zeros|ones."""
  leaf = path[-1]
  if leaf == "lora_a":
    return "normal", shape[0] ** -0.5
  if leaf in ("bias", "lora_b"):
    return "zeros", 0.0
  if leaf == "scale":
    return "ones", 0.0
  if "embed_tokens" in path:
    return "normal_pad", config.init_std  # HF zeroes the padding row
  return "normal", config.init_std


@functools.lru_cache(maxsize=256)
def _leaf_initializer(kind: str, std: float, shape: tuple[int, ...], dtype: str, pad: int,
                      sharding):
  """A jitted key -> one parameter, built directly in `sharding` (compiled once per shape)."""

  def init(key):
    if kind == "zeros":
      return jnp.zeros(shape, dtype)
    if kind == "ones":
      return jnp.ones(shape, dtype)
    value = jax.random.normal(key, shape, jnp.float32) * std
    if kind == "normal_pad":
      value = value.at[pad].set(0.0)
    return value.astype(dtype)

  return jax.jit(init, out_shardings=sharding)


def init_opt(config: OPTConfig, key: jax.Array, mesh=None) -> Any:
  """Random variables {"params": ...} as HF initialises OPT, built in their shardings.

  Linear and embedding weights ~ N(0, init_std²) (the padding row of embed_tokens zero),
  biases 0, LayerNorm scales 1; LoRA A ~ N(0, 1/in), B = 0. Each parameter is generated by
  a small jitted function per distinct shape, directly on its devices: compile time does
  not grow with depth and the host never holds the model.
  """
  abstract = traverse_util.flatten_dict(abstract_params(config))
  shardings = (traverse_util.flatten_dict(param_shardings(abstract_params(config), mesh))
               if mesh is not None else {})
  flat = {}
  for i, fpath in enumerate(sorted(abstract)):
    spec = abstract[fpath]
    kind, std = _leaf_kind(fpath, spec.shape, config)
    make = _leaf_initializer(kind, std, tuple(spec.shape), jnp.dtype(spec.dtype).name,
                             config.pad_token_id, shardings.get(fpath))
    flat[fpath] = make(jax.random.fold_in(key, i))
  return traverse_util.unflatten_dict(flat)


def _check_names(folder, expected: dict[str, tuple], found: dict[str, tuple]) -> None:
  missing = sorted(set(expected) - set(found))
  unexpected = sorted(set(found) - set(expected))
  misshapen = sorted(f"{n}: file {found[n]} != model {expected[n]}"
                     for n in set(expected) & set(found) if found[n] != expected[n])
  if missing or unexpected or misshapen:
    lines = [f"checkpoint {folder} does not fit its config.json (OPT):"]
    lines += [f"  missing tensor {n}" for n in missing]
    lines += [f"  unexpected tensor {n}" for n in unexpected]
    lines += [f"  misshapen tensor {m}" for m in misshapen]
    lines.append("  fix: point llm.checkpoint at an unmodified Hugging Face OPT folder")
    raise UserError("\n".join(lines))


def load_opt(path, *, mesh=None, dtype="float32", param_dtype="float32", lora_key=None,
             **overrides) -> tuple[OPTConfig, Any]:
  """(config, variables) from a Hugging Face OPT folder, streamed into their shardings.

  `overrides` set OPTConfig fields (remat, lora_rank, ...). LoRA adapters, absent from HF
  checkpoints, are initialised from `lora_key` (default key 0): A ~ N(0, 1/in), B = 0.
  """
  folder = pathlib.Path(path)
  config = read_config(folder, dtype=dtype, param_dtype=param_dtype, **overrides)
  fmt, files = _weight_files(folder)
  abstract = traverse_util.flatten_dict(abstract_params(config))
  shardings = (traverse_util.flatten_dict(param_shardings(abstract_params(config), mesh))
               if mesh is not None else {})
  by_hf = {}  # HF name -> (flax path, transpose)
  for fpath in abstract:
    mapped = hf_name(fpath)
    if mapped is not None:
      by_hf[mapped[0]] = (fpath, mapped[1])
  expected = {n: tuple(reversed(abstract[p].shape)) if t else tuple(abstract[p].shape)
              for n, (p, t) in by_hf.items()}
  found = {}
  for name, shape in _file_shapes(fmt, files).items():
    canon = _canonical(name)
    if canon is not None:
      found[canon] = shape
  _check_names(folder, expected, found)

  def place(fpath, array):
    sharding = shardings.get(fpath)
    return jax.device_put(array, sharding) if sharding is not None else jnp.asarray(array)

  flat = {}
  for name, _, array in _iter_tensors(fmt, files):
    canon = _canonical(name)
    if canon is None:
      continue
    fpath, transpose = by_hf[canon]
    host = np.asarray(array.T if transpose else array).astype(config.param_dtype)
    flat[fpath] = place(fpath, host)
    del host, array
  key = jax.random.key(0) if lora_key is None else lora_key
  for i, fpath in enumerate(sorted(p for p in abstract if hf_name(p) is None)):  # LoRA
    spec = abstract[fpath]
    kind, std = _leaf_kind(fpath, spec.shape, config)
    make = _leaf_initializer(kind, std, tuple(spec.shape), jnp.dtype(spec.dtype).name,
                             config.pad_token_id, shardings.get(fpath))
    flat[fpath] = make(jax.random.fold_in(key, i))
  return config, traverse_util.unflatten_dict(flat)


def save_opt(path, config: OPTConfig, params: Any, *,
             max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
  """Writes `path` as a Hugging Face OPT folder (config.json + safetensors), replacing it.

  Above `max_shard_bytes` the weights are split into model-0000i-of-0000n.safetensors with
  model.safetensors.index.json. Each tensor is gathered to host only while it is written.
  """
  flat = traverse_util.flatten_dict(params)
  scale = config.lora_alpha / max(config.lora_rank, 1)
  tensors, sources = [], {}
  for fpath, value in flat.items():
    mapped = hf_name(fpath)
    if mapped is None:
      continue
    name, transpose = mapped
    shape = tuple(reversed(value.shape)) if transpose else tuple(value.shape)
    tensors.append((name, jax.ShapeDtypeStruct(shape, value.dtype)))
    sources[name] = (fpath, transpose)

  def fetch(name):
    fpath, transpose = sources[name]
    value = flat[fpath]
    lora_a = flat.get(fpath[:-1] + ("lora_a",))
    if fpath[-1] == "kernel" and lora_a is not None:
      value = merge_lora(value, lora_a, flat[fpath[:-1] + ("lora_b",)], scale)
    host = np.asarray(jax.device_get(value))
    return host.T if transpose else host

  shards, current, size = [], [], 0
  for name, spec in tensors:
    nbytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    if current and size + nbytes > max_shard_bytes:
      shards.append(current)
      current, size = [], 0
    current.append((name, spec))
    size += nbytes
  shards.append(current)
  with io_utils.atomic_directory(path) as tmp:
    io_utils.write_json(tmp / "config.json", config.to_hf_dict())
    if len(shards) == 1:
      _write_safetensors(tmp / "model.safetensors", shards[0], fetch)
      return
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
      fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
      _write_safetensors(tmp / fname, shard, fetch)
      for name, spec in shard:
        weight_map[name] = fname
        total += int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    io_utils.write_json(tmp / "model.safetensors.index.json",
                        {"metadata": {"total_size": total}, "weight_map": weight_map})
