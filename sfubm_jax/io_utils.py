"""Atomic file writes and small JSON helpers.

Every file the pipeline writes goes through here: the bytes land in a temporary file
in the same directory, are flushed and fsync'ed, then renamed over the target. A crash
therefore leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

PathLike = str | os.PathLike


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically (temp file + fsync + rename)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode.
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def atomic_write_text(path: PathLike, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any) -> None:
  """Writes `obj` as indented, key-sorted JSON (byte-stable for equal inputs)."""
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: PathLike) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def save_npz(path: PathLike, **arrays: np.ndarray) -> None:
  """Saves arrays as an uncompressed .npz, atomically and byte-reproducibly."""
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def sha256_bytes(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary directory that replaces `path` only if the block succeeds."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
  os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual folder mode.
  try:
    yield tmp
    if path.exists():
      shutil.rmtree(path)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
