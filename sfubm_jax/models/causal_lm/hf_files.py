"""Hugging Face model folders, shared by every causal-LM family: read strictly, write back.

A folder holds `config.json` and the weights as `model.safetensors`, sharded
`model-*.safetensors` with `model.safetensors.index.json`, or `pytorch_model*.bin` (read
with torch, when installed). Loading is strict (every tensor present with the right
shape; all problems reported together) and streamed: each tensor is read (memory-mapped
for safetensors), cast, and placed into its target sharding before the next is touched,
so the model never sits twice in host memory. A family supplies the name mapping:
`hf_name(flax path) -> (HF name, transpose?) | None` (None: not in HF files, e.g. LoRA)
and `canonical(HF name in the file) -> HF name | None` (None: a tensor to skip, e.g. a
tied lm_head or a rotary buffer).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError

ST_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_ST_NAMES = {v: k for k, v in ST_DTYPES.items()}
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30
HfName = Callable[[tuple[str, ...]], "tuple[str, bool] | None"]


# ---------------------------------------------------------------- safetensors I/O

def read_safetensors_header(path: pathlib.Path) -> tuple[dict, int]:
  with open(path, "rb") as f:
    n = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(n))
  header.pop("__metadata__", None)
  return header, 8 + n


def safetensors_tensors(path: pathlib.Path) -> Iterator[tuple[str, tuple, np.ndarray]]:
  """(name, shape, memory-mapped array) per tensor; bf16 via ml_dtypes, no torch needed."""
  header, base = read_safetensors_header(path)
  for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    shape = tuple(info["shape"])
    dtype = ST_DTYPES[info["dtype"]]
    start, end = info["data_offsets"]
    if start == end:
      yield name, shape, np.zeros(shape, dtype)
    else:
      yield name, shape, np.memmap(path, dtype=dtype, mode="r", offset=base + start, shape=shape)


def write_safetensors(path: pathlib.Path, tensors: list[tuple[str, Any]], fetch) -> None:
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

def weight_files(folder: pathlib.Path, family: str,
                 example: str) -> tuple[str, list[pathlib.Path]]:
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
      f"no {family} weights in {folder}: expected model.safetensors, "
      "model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json (a "
      f"Hugging Face model folder, e.g. `huggingface-cli download {example} --local-dir DIR`)"
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


def iter_tensors(fmt: str, files: list[pathlib.Path]):
  for path in files:
    yield from (safetensors_tensors(path) if fmt == "safetensors" else _bin_tensors(path))


def file_shapes(fmt: str, files: list[pathlib.Path]) -> dict[str, tuple[int, ...]]:
  """Names and shapes of every tensor (safetensors: headers only; .bin: memory-mapped)."""
  if fmt == "safetensors":
    shapes = {}
    for path in files:
      header, _ = read_safetensors_header(path)
      shapes.update({k: tuple(v["shape"]) for k, v in header.items()})
    return shapes
  return {name: shape for name, shape, _ in iter_tensors(fmt, files)}


def check_names(folder, family: str, expected: dict[str, tuple],
                found: dict[str, tuple]) -> None:
  """One error listing every missing, unexpected and misshapen tensor."""
  missing = sorted(set(expected) - set(found))
  unexpected = sorted(set(found) - set(expected))
  misshapen = sorted(f"{n}: file {found[n]} != model {expected[n]}"
                     for n in set(expected) & set(found) if found[n] != expected[n])
  if missing or unexpected or misshapen:
    lines = [f"checkpoint {folder} does not fit its config.json ({family}):"]
    lines += [f"  missing tensor {n}" for n in missing]
    lines += [f"  unexpected tensor {n}" for n in unexpected]
    lines += [f"  misshapen tensor {m}" for m in misshapen]
    lines.append(f"  fix: point llm.checkpoint at an unmodified Hugging Face {family} folder")
    raise UserError("\n".join(lines))


def load_weights(folder: pathlib.Path, *, family: str, example: str, abstract: dict,
                 shardings: dict, hf_name: HfName, canonical: Callable[[str], str | None],
                 param_dtype: str) -> dict:
  """Flat {flax path: array} of every parameter `hf_name` maps, streamed into `shardings`.

  `abstract` is the flat {path: ShapeDtypeStruct} of the model; parameters that
  `hf_name` maps to None (LoRA) are left for the caller to initialise.
  """
  fmt, files = weight_files(folder, family, example)
  by_hf = {}  # HF name -> (flax path, transpose)
  for fpath in abstract:
    mapped = hf_name(fpath)
    if mapped is not None:
      by_hf[mapped[0]] = (fpath, mapped[1])
  expected = {n: tuple(reversed(abstract[p].shape)) if t else tuple(abstract[p].shape)
              for n, (p, t) in by_hf.items()}
  found = {}
  for name, shape in file_shapes(fmt, files).items():
    canon = canonical(name)
    if canon is not None:
      found[canon] = shape
  check_names(folder, family, expected, found)

  def place(fpath, array):
    sharding = shardings.get(fpath)
    return jax.device_put(array, sharding) if sharding is not None else jnp.asarray(array)

  flat = {}
  for name, _, array in iter_tensors(fmt, files):
    canon = canonical(name)
    if canon is None:
      continue
    fpath, transpose = by_hf[canon]
    host = np.asarray(array.T if transpose else array).astype(param_dtype)
    flat[fpath] = place(fpath, host)
    del host, array
  return flat


def save_folder(path, hf_config: dict, flat: dict, hf_name: HfName, fetch_value: Callable,
                *, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                extra_files: dict[str, Callable[[pathlib.Path], None]] | None = None) -> None:
  """Writes `path` as a Hugging Face folder (config.json + safetensors), replacing it.

  `fetch_value(flax path) -> host array` gives each tensor (e.g. LoRA merged) only while it
  is written. Above `max_shard_bytes` the weights are split into
  model-0000i-of-0000n.safetensors with model.safetensors.index.json. `extra_files` maps a
  name to a writer `f(folder)` (e.g. the tokenizer), run inside the same atomic folder.
  """
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
    host = fetch_value(fpath)
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
    io_utils.write_json(tmp / "config.json", hf_config)
    for writer in (extra_files or {}).values():
      writer(tmp)
    if len(shards) == 1:
      write_safetensors(tmp / "model.safetensors", shards[0], fetch)
      return
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
      fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
      write_safetensors(tmp / fname, shard, fetch)
      for name, spec in shard:
        weight_map[name] = fname
        total += int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    io_utils.write_json(tmp / "model.safetensors.index.json",
                        {"metadata": {"total_size": total}, "weight_map": weight_map})
