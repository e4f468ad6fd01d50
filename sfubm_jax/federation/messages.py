"""The wire format between clients and the server (SPEC §0).

Only two kinds of message ever cross the wire:
- `Upload` (client → server): one perturbed text vector per catalogue item, in
  catalogue order, and the client's name. Nothing else has a field to travel in.
- `Reply` (server → client): the centroid of each of that client's items, and the
  digest of the upload it answers.

A message file is `MAGIC`, one line of JSON header, then the raw little-endian float32
payload [count, dim]. The header holds format, version, kind, client, count, dim, dtype
(and `answers` for a reply) plus `sha256` over the header's other fields and the
payload, so any flipped bit, truncation, wrong count/dim or version is refused with a
`UserError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError

MAGIC = b"SFUBM-FEDERATION\n"
FORMAT = "sfubm-federation"
VERSION = 1
SUFFIX = ".msg"
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DTYPE = np.dtype("<f4")
_FIELDS = {
    "upload": {"format", "version", "kind", "client", "count", "dim", "dtype", "sha256"},
    "reply": {"format", "version", "kind", "client", "count", "dim", "dtype", "answers", "sha256"},
}


def _check_vectors(client: str, vectors: np.ndarray, what: str) -> None:
  if not _CLIENT_NAME.match(client):
    raise ValueError(f"client name {client!r} must match {_CLIENT_NAME.pattern}")
  if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
    raise TypeError(f"{what} vectors must be a float32 numpy array [count, dim]")
  if vectors.shape[0] < 1 or vectors.shape[1] < 1:
    raise ValueError(f"{what} vectors must be non-empty, got shape {vectors.shape}")
  if not np.isfinite(vectors).all():
    raise ValueError(f"{what} vectors hold non-finite values")


class _Vectors:
  """Shape accessors shared by both message kinds (`vectors` is [count, dim])."""

  vectors: np.ndarray

  @property
  def count(self) -> int:
    return int(self.vectors.shape[0])

  @property
  def dim(self) -> int:
    return int(self.vectors.shape[1])


@dataclasses.dataclass(frozen=True, eq=False)
class Upload(_Vectors):
  """Client → server: ẽ for items 1..N of one client's catalogue, nothing more."""

  client: str
  vectors: np.ndarray  # [N, d_t] float32

  def __post_init__(self):
    _check_vectors(self.client, self.vectors, "upload")

  def digest(self) -> str:
    """The checksum this upload carries on the wire; a reply names it in `answers`."""
    return _header(self).get("sha256")


@dataclasses.dataclass(frozen=True, eq=False)
class Reply(_Vectors):
  """Server → client: the centroid c_i of each of the client's items 1..N."""

  client: str
  vectors: np.ndarray  # [N, d_t] float32
  answers: str  # digest of the Upload this reply answers

  def __post_init__(self):
    _check_vectors(self.client, self.vectors, "reply")
    if not re.fullmatch(r"[0-9a-f]{64}", self.answers):
      raise ValueError("reply.answers must be the 64-hex digest of an upload")


Message = Upload | Reply


def _payload(vectors: np.ndarray) -> bytes:
  return np.ascontiguousarray(vectors, dtype=_DTYPE).tobytes()


def _checksum(fields: dict, payload: bytes) -> str:
  canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
  return io_utils.sha256_bytes(canonical + b"\n" + payload)


def _header(message: Message) -> dict:
  kind = "upload" if isinstance(message, Upload) else "reply"
  fields = {
      "format": FORMAT,
      "version": VERSION,
      "kind": kind,
      "client": message.client,
      "count": message.count,
      "dim": message.dim,
      "dtype": "float32",
  }
  if kind == "reply":
    fields["answers"] = message.answers
  fields["sha256"] = _checksum(fields, _payload(message.vectors))
  return fields


def encode(message: Message) -> bytes:
  """The message's bytes on the wire."""
  if not isinstance(message, (Upload, Reply)):
    raise TypeError(f"only Upload and Reply cross the wire, not {type(message).__name__}")
  header = json.dumps(_header(message), sort_keys=True).encode("utf-8")
  return MAGIC + header + b"\n" + _payload(message.vectors)


def decode(data: bytes, kind: str, source: str = "<bytes>") -> Message:
  """Parses and validates a message of `kind` ("upload" | "reply"); UserError if corrupt."""

  def refuse(why: str) -> UserError:
    return UserError(
        f"refused federation message {source}: {why}; the file is corrupt, truncated or from "
        f"another version: ask its sender to write it again"
    )

  if not data.startswith(MAGIC):
    raise refuse("it does not start with the SF-UBM federation marker")
  end = data.find(b"\n", len(MAGIC))
  if end < 0:
    raise refuse("no header line")
  try:
    header = json.loads(data[len(MAGIC) : end].decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise refuse(f"unreadable header ({e})") from None
  if not isinstance(header, dict):
    raise refuse("the header is not a JSON object")
  if header.get("format") != FORMAT or header.get("version") != VERSION:
    raise refuse(
        f"format/version {header.get('format')!r}/{header.get('version')!r}, this code reads "
        f"{FORMAT!r}/{VERSION}"
    )
  if header.get("kind") != kind:
    raise refuse(f"it is a {header.get('kind')!r} message, expected {kind!r}")
  if set(header) != _FIELDS[kind]:
    raise refuse(f"header fields {sorted(header)}, expected exactly {sorted(_FIELDS[kind])}")
  count, dim = header["count"], header["dim"]
  if not (isinstance(count, int) and isinstance(dim, int) and count > 0 and dim > 0):
    raise refuse(f"bad count/dim {count!r}/{dim!r}")
  if header["dtype"] != "float32":
    raise refuse(f"dtype {header['dtype']!r}, expected 'float32'")
  payload = data[end + 1 :]
  if len(payload) != count * dim * _DTYPE.itemsize:
    raise refuse(f"payload has {len(payload)} bytes, header says {count} × {dim} float32")
  fields = {k: v for k, v in header.items() if k != "sha256"}
  if _checksum(fields, payload) != header["sha256"]:
    raise refuse("checksum mismatch")
  vectors = np.frombuffer(payload, dtype=_DTYPE).reshape(count, dim).astype(np.float32)
  try:
    if kind == "upload":
      return Upload(client=header["client"], vectors=vectors)
    return Reply(client=header["client"], vectors=vectors, answers=header["answers"])
  except (TypeError, ValueError) as e:
    raise refuse(str(e)) from None


def write_message(path: pathlib.Path | str, message: Message) -> None:
  io_utils.atomic_write_bytes(path, encode(message))


def _read(path: pathlib.Path | str, kind: str) -> Message:
  path = pathlib.Path(path)
  if not path.exists():
    raise UserError(f"no {kind} message at {path}; run the party that writes it first")
  return decode(path.read_bytes(), kind, str(path))


def read_upload(path: pathlib.Path | str) -> Upload:
  return _read(path, "upload")


def read_reply(path: pathlib.Path | str) -> Reply:
  return _read(path, "reply")


def check_reply(reply: Reply, *, client: str, count: int, dim: int, answers: str) -> None:
  """A client's acceptance test: the reply must fit its catalogue and its own upload."""
  problems = []
  if reply.client != client:
    problems.append(f"it is addressed to {reply.client!r}, not {client!r}")
  if reply.count != count:
    problems.append(f"it holds {reply.count} vectors, the catalogue has {count} items")
  if reply.dim != dim:
    problems.append(f"its vectors have dim {reply.dim}, the upload had {dim}")
  if reply.answers != answers:
    problems.append("it answers a different upload than the one this client sent")
  if problems:
    raise UserError(
        f"client {client!r} refuses the server reply: {'; '.join(problems)}; rerun the server "
        f"on this client's current upload"
    )
