"""What the federate stage leaves for later stages, under `DIR/federate/<domain>/`.

  local.npy      [N+1, d_t] float32  e_i, the raw unit text vectors (never uploaded)
  federated.npy  [N+1, d_t] float32  c_i, the synchronised centroid of item i
  sent.json      the client's record of its upload (count, dim, digest)
  privacy.json   sim / reid@1 of the upload (SPEC §3)
Row 0 is padding and all zeros in both arrays.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError

STAGE = "federate"


def domain_dir(workdir: pathlib.Path | str, domain: str) -> pathlib.Path:
  return pathlib.Path(workdir) / STAGE / domain


def save_array(path: pathlib.Path, array: np.ndarray) -> None:
  buf = io.BytesIO()
  np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
  io_utils.atomic_write_bytes(path, buf.getvalue())


def with_padding_row(items: np.ndarray) -> np.ndarray:
  """[N, d] -> [N+1, d] float32 with a zero row 0 (the padding item)."""
  return np.concatenate([np.zeros((1, items.shape[1]), np.float32), items.astype(np.float32)])


def _load(path: pathlib.Path, domain: str) -> np.ndarray:
  if not path.exists():
    raise UserError(
        f"no federated item vectors for domain {domain!r} at {path}; run the federate stage "
        f"first (--stages=federate) with this --workdir"
    )
  return np.load(path, allow_pickle=False)


def load_item_vectors(workdir: pathlib.Path | str, domain: str) -> tuple[np.ndarray, np.ndarray]:
  """(local e [N+1, d_t], federated c [N+1, d_t]) float32 of `domain`; row 0 = zeros."""
  directory = domain_dir(workdir, domain)
  local = _load(directory / "local.npy", domain)
  federated = _load(directory / "federated.npy", domain)
  if local.shape != federated.shape or local.ndim != 2:
    raise UserError(
        f"{directory}: local {local.shape} and federated {federated.shape} vectors disagree; "
        f"delete {directory.parent} and rerun the federate stage"
    )
  return local.astype(np.float32), federated.astype(np.float32)
