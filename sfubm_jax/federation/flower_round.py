"""The federation round over Flower's Message API (SPEC §0: the Flower transport).

The same protocol as the file transport, carried by Flower messages:
1. the ServerApp sends each SuperNode a query `{"step": "upload"}`;
2. each ClientApp (one per organisation; `node_config` names its `workdir` and `domain`)
   runs `client.prepare` (encode, perturb) and answers with the upload message's bytes,
   exactly what the file transport writes, as one uint8 array;
3. the ServerApp decodes the uploads (the only thing it has), runs `server.serve`
   (k-means++) on them in client-name order, as `serve_directory` does, and sends each
   client its reply's bytes;
4. each ClientApp checks and keeps its reply (`client.receive`).
The server writes what it received and sent, as files, under the run config's `outbox`
(`uploads/`, `replies/`, `cluster_report.json`, `received.json`, then `DONE`; `FAILED`
with the error if the round failed).
"""

from __future__ import annotations

import json
import pathlib
import time
import traceback

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from sfubm_jax import io_utils
from sfubm_jax.federation import client, messages, server

STEP, PAYLOAD, ARRAY = "step", "message", "bytes"
DONE, FAILED, RECEIVED = "DONE", "FAILED", "received.json"

client_app = ClientApp()
server_app = ServerApp()


def pack(data: bytes, key: str) -> RecordDict:
  """A RecordDict carrying one wire message's bytes as one uint8 array."""
  return RecordDict({key: ArrayRecord({ARRAY: Array(np.frombuffer(data, np.uint8))})})


def unpack(content: RecordDict, key: str) -> bytes:
  """The bytes `pack` put in; anything else in the message is refused."""
  if list(content.keys()) != [key] or list(content[key].keys()) != [ARRAY]:
    raise ValueError(f"expected exactly {{{key!r}: {{{ARRAY!r}: uint8}}}}, got "
                     f"{ {k: list(v.keys()) for k, v in content.items()} }")
  array = content[key][ARRAY].numpy()
  if array.dtype != np.uint8 or array.ndim != 1:
    raise ValueError(f"{key} must be a 1-D uint8 array, got {array.dtype} {array.shape}")
  return array.tobytes()


def describe(content: RecordDict) -> dict:
  """What a message held: record -> array -> (dtype, shape) (for the server's log)."""
  out = {}
  for name, record in content.items():
    if isinstance(record, ArrayRecord):
      out[name] = {k: [str(a.numpy().dtype), list(a.numpy().shape)] for k, a in record.items()}
    else:
      out[name] = {k: repr(v) for k, v in record.items()}
  return out


@client_app.query()
def _client_query(msg: Message, context: Context) -> Message:
  workdir = pathlib.Path(str(context.node_config["workdir"]))
  domain = str(context.node_config["domain"])
  if "reply" not in msg.content.keys():  # the server's first query: {"step": "upload"}
    config = io_utils.read_json(workdir / "config.json")
    upload, _ = client.prepare(workdir, domain, config["text_encoder"], config["privacy"])
    return Message(pack(messages.encode(upload), "upload"), reply_to=msg)
  reply = messages.decode(unpack(msg.content, "reply"), "reply", f"Flower message to {domain}")
  federated = client.receive(workdir, domain, reply)
  return Message(RecordDict({STEP: ConfigRecord({"accepted": int(federated.shape[0] - 1)})}),
                 reply_to=msg)


def _wait_for_nodes(grid: Grid, count: int, timeout_s: float) -> list[int]:
  deadline = time.monotonic() + timeout_s
  while True:
    nodes = sorted(grid.get_node_ids())
    if len(nodes) >= count:
      return nodes
    if time.monotonic() > deadline:
      raise TimeoutError(f"{len(nodes)} of {count} SuperNodes connected in {timeout_s:.0f} s")
    time.sleep(0.2)


def _replies(grid: Grid, messages_out: list[Message], timeout_s: float) -> list[Message]:
  replies = list(grid.send_and_receive(messages_out, timeout=timeout_s))
  if len(replies) != len(messages_out):
    raise TimeoutError(f"{len(replies)} of {len(messages_out)} clients answered in time")
  for r in replies:
    if r.has_error():
      raise RuntimeError(f"node {r.metadata.src_node_id} failed: {r.error.reason}")
  return replies


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
  cfg = context.run_config
  outbox = pathlib.Path(str(cfg["outbox"]))
  try:
    round_trip(grid, cfg, outbox)
  except Exception:  # noqa: BLE001 - the launcher reads the reason from FAILED
    io_utils.atomic_write_text(outbox / FAILED, traceback.format_exc())
    raise


def round_trip(grid: Grid, cfg, outbox: pathlib.Path) -> None:
  timeout_s = float(cfg["timeout-s"])
  config = server.ServerConfig(
      num_clusters=int(cfg["num-clusters"]), tol=float(cfg["tol"]),
      max_iter=int(cfg["max-iter"]), greedy_trials=int(cfg["greedy-trials"]),
      seed=int(cfg["seed"]), chunk=int(cfg["chunk"]))
  nodes = _wait_for_nodes(grid, int(cfg["num-clients"]), timeout_s)
  ask = [Message(RecordDict({STEP: ConfigRecord({STEP: "upload"})}), dst_node_id=n,
                 message_type=MessageType.QUERY) for n in nodes]
  uploads, node_of, received = [], {}, {}
  for r in _replies(grid, ask, timeout_s):
    data = unpack(r.content, "upload")
    upload = messages.decode(data, "upload", f"Flower message from node {r.metadata.src_node_id}")
    if upload.client in node_of:
      raise ValueError(f"two nodes uploaded for client {upload.client!r}")
    node_of[upload.client] = r.metadata.src_node_id
    received[upload.client] = describe(r.content)
    io_utils.atomic_write_bytes(outbox / "uploads" / f"{upload.client}{messages.SUFFIX}", data)
    uploads.append(upload)
  uploads.sort(key=lambda u: u.client)  # the order serve_directory reads them in
  start = time.perf_counter()
  replies, report = server.serve(uploads, config)
  report["seconds"] = round(time.perf_counter() - start, 3)
  send = []
  for reply in replies:
    data = messages.encode(reply)
    io_utils.atomic_write_bytes(outbox / "replies" / f"{reply.client}{messages.SUFFIX}", data)
    send.append(Message(pack(data, "reply"), dst_node_id=node_of[reply.client],
                        message_type=MessageType.QUERY))
  for r in _replies(grid, send, timeout_s):
    received.setdefault("acks", {})[str(r.metadata.src_node_id)] = describe(r.content)
  io_utils.write_json(outbox / server.REPORT, report)
  io_utils.write_json(outbox / RECEIVED, received)
  io_utils.atomic_write_text(outbox / DONE, json.dumps({"clients": sorted(node_of)}) + "\n")
