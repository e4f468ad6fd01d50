"""The client secret (SPEC §0): the noise key and the upload row order.

Nothing in the shared config determines them: on first use the client draws 32 bytes
of OS randomness (`os.urandom`) into `DIR/federate/<domain>/client_secret.bin` (the
client's private part of the workdir, mode 0600) and reads them back on every later
use, so a rerun or a resumed run reproduces its upload bit for bit, while a server
that knows the whole config and the public item texts cannot regenerate the noise.

From the secret, by SHA-256 with distinct labels:
- the JAX noise key of Eq. 2 (threefry key data, two uint32 words);
- the upload order: upload row k holds item `order[k]`, a uniform random permutation
  of 0..N-1, undone by the client on the reply (`unpermute`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import jax
import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError

SECRET_FILE = "client_secret.bin"
SECRET_BYTES = 32


def load_or_create(directory: pathlib.Path) -> bytes:
  """The client's secret bytes, created from OS randomness on first use."""
  path = pathlib.Path(directory) / SECRET_FILE
  if not path.exists():
    io_utils.atomic_write_bytes(path, os.urandom(SECRET_BYTES))
    os.chmod(path, 0o600)
  secret = path.read_bytes()
  if len(secret) != SECRET_BYTES:
    raise UserError(f"{path} holds {len(secret)} bytes, not {SECRET_BYTES}; it is damaged. "
                    f"Delete {path.parent} and rerun the federate stage")
  return secret


def _words(secret: bytes, label: bytes, count: int) -> np.ndarray:
  digest = hashlib.sha256(label + b"\0" + secret).digest()
  return np.frombuffer(digest, dtype="<u4")[:count].astype(np.uint32)


def noise_key(secret: bytes) -> jax.Array:
  """The client's JAX PRNG key for ε (Eq. 2)."""
  return jax.random.wrap_key_data(_words(secret, b"noise", 2), impl="threefry2x32")


def upload_order(secret: bytes, num_items: int) -> np.ndarray:
  """[N] int64: upload row k carries item order[k] (0-based, without padding)."""
  rng = np.random.default_rng(_words(secret, b"order", 8))
  return rng.permutation(num_items)


def unpermute(rows: np.ndarray, order: np.ndarray) -> np.ndarray:
  """Rows in upload order -> rows in catalogue order: out[order[k]] = rows[k]."""
  out = np.empty_like(rows)
  out[order] = rows
  return out
