"""The server: domain-agnostic semantic mining over the uploads (SPEC §4, Eq. 7).

`serve` is a function of the upload messages and the server's own `ServerConfig` only:
it concatenates every client's ẽ, clusters them with k-means++ / Lloyd, and answers
each client with the centre of each of its own items, c_i = μ_{a(i)}. It rejects any
input that is not an `Upload`, so no user data can reach it.

As a separate process it reads `*.msg` uploads from an inbox folder and writes replies
and `cluster_report.json` to an outbox:

  python -m sfubm_jax.federation.server --inbox wire/uploads --outbox wire/replies \
      --num_clusters 100
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.federation import kmeans, messages
from sfubm_jax.federation.messages import Reply, Upload

REPORT = "cluster_report.json"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """The server's own settings (config section `server`)."""

  num_clusters: int  # K (Eq. 7)
  tol: float = 1e-4  # stop when the largest centre shift is below this
  max_iter: int = 300  # Lloyd iterations at most
  greedy_trials: int = 0  # k-means++ candidates per step; 0 = 2 + floor(ln K)
  seed: int = 2  # k-means++ seed
  chunk: int = 2048  # rows per assignment chunk: memory O(chunk × K)

  @classmethod
  def from_config(cls, section: Mapping) -> ServerConfig:
    return cls(
        num_clusters=int(section["num_clusters"]),
        tol=float(section["tol"]),
        max_iter=int(section["max_iter"]),
        greedy_trials=int(section["greedy_trials"]),
        seed=int(section["seed"]),
        chunk=int(section["chunk"]),
    )


def serve(uploads: Sequence[Upload], config: ServerConfig) -> tuple[list[Reply], dict]:
  """Clusters all uploads; returns (one Reply per upload, in order; the cluster report)."""
  if not isinstance(config, ServerConfig):
    raise TypeError(f"serve takes a ServerConfig, not {type(config).__name__}")
  for u in uploads:
    if not isinstance(u, Upload):
      raise TypeError(f"the server accepts Upload messages only, not {type(u).__name__}")
  if not uploads:
    raise UserError("the server received no uploads; run the clients' upload step first")
  names = [u.client for u in uploads]
  if len(set(names)) != len(names):
    raise UserError(f"duplicate client names among uploads: {sorted(names)}")
  dims = {u.dim for u in uploads}
  if len(dims) != 1:
    raise UserError(f"clients uploaded vectors of different dims {sorted(dims)}; all clients "
                    f"must use the same text encoder")
  order = sorted(range(len(uploads)), key=lambda i: names[i])  # input-order independent
  total = sum(u.count for u in uploads)
  k = config.num_clusters
  if not 1 <= k <= total:
    raise UserError(f"server.num_clusters={k} must be between 1 and the {total} uploaded items")

  x = np.concatenate([uploads[i].vectors for i in order])  # [sum N, d]
  result = kmeans.kmeans(
      jax.random.key(config.seed), x, k=k, tol=config.tol, max_iter=config.max_iter,
      trials=config.greedy_trials, chunk=config.chunk,
  )
  centres = np.asarray(result.centres)  # [K, d]
  labels = np.asarray(result.labels)  # [sum N]

  replies: list[Reply | None] = [None] * len(uploads)
  owner = np.zeros((k, len(uploads)), bool)  # owner[c, client] = client has items in c
  start = 0
  for i in order:
    lab = labels[start : start + uploads[i].count]
    start += uploads[i].count
    owner[lab, i] = True
    replies[i] = Reply(client=names[i], vectors=centres[lab], answers=uploads[i].digest())
  sizes = np.bincount(labels, minlength=k)
  nonempty = sizes > 0
  bridges = int(np.sum(owner.sum(axis=1) > 1))
  report = {
      "num_clusters": k,
      "num_items": total,
      "inertia": float(result.inertia),
      "iterations": int(result.iterations),
      "final_shift": float(result.shift),
      "converged": bool(float(result.shift) < config.tol),
      "sizes": sizes.tolist(),
      "empty_clusters": int(np.sum(~nonempty)),
      "bridges": bridges,
      "bridge_share": bridges / max(int(np.sum(nonempty)), 1),
      "clients": {
          names[i]: {"items": uploads[i].count, "clusters": int(owner[:, i].sum())}
          for i in order
      },
      "config": dataclasses.asdict(config),
  }
  return replies, report


def serve_directory(inbox: pathlib.Path, outbox: pathlib.Path, config: ServerConfig) -> dict:
  """Reads every upload in `inbox`, writes each reply and the report to `outbox`."""
  paths = sorted(pathlib.Path(inbox).glob(f"*{messages.SUFFIX}"))
  if not paths:
    raise UserError(f"no uploads (*{messages.SUFFIX}) in {inbox}; run the clients' upload first")
  uploads = [messages.read_upload(p) for p in paths]
  start = time.perf_counter()
  replies, report = serve(uploads, config)
  report["seconds"] = round(time.perf_counter() - start, 3)
  for reply in replies:
    messages.write_message(pathlib.Path(outbox) / f"{reply.client}{messages.SUFFIX}", reply)
  io_utils.write_json(pathlib.Path(outbox) / REPORT, report)
  return report


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--inbox", required=True, type=pathlib.Path, help="folder of uploads")
  parser.add_argument("--outbox", required=True, type=pathlib.Path, help="folder for replies")
  parser.add_argument("--num_clusters", required=True, type=int, help="K (Eq. 7)")
  parser.add_argument("--tol", type=float, default=1e-4, help="largest centre shift to stop")
  parser.add_argument("--max_iter", type=int, default=300, help="Lloyd iterations at most")
  parser.add_argument("--greedy_trials", type=int, default=0, help="0 = 2 + floor(ln K)")
  parser.add_argument("--seed", type=int, default=2, help="k-means++ seed")
  parser.add_argument("--chunk", type=int, default=2048, help="rows per assignment chunk")
  args = parser.parse_args(argv)
  config = ServerConfig(args.num_clusters, args.tol, args.max_iter, args.greedy_trials,
                        args.seed, args.chunk)
  try:
    report = serve_directory(args.inbox, args.outbox, config)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"served {len(report['clients'])} clients, {report['num_items']} items: inertia "
        f"{report['inertia']:.4f}, {report['iterations']} iterations, bridge share "
        f"{report['bridge_share']:.3f}; replies in {args.outbox}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
