"""A client of the federation: encode → perturb → upload; receive → check → keep (SPEC §0).

The client holds its domain's data; the only thing it sends is an `Upload` of ẽ
(one vector per catalogue item) and the only thing it accepts is a `Reply` that fits
its catalogue and answers its own last upload.

As separate processes (the workdir holds `config.json` and the data stage's output):

  python -m sfubm_jax.federation.client upload --workdir DIR --domain food --outbox WIRE/up
  python -m sfubm_jax.federation.client receive --workdir DIR --domain food \
      --reply WIRE/down/food.msg
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import zlib
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.data.split import load_split
from sfubm_jax.errors import UserError
from sfubm_jax.federation import artifacts, messages, perturb, privacy, text_encoder
from sfubm_jax.federation.messages import Reply, Upload


@dataclasses.dataclass(frozen=True)
class PrivacyConfig:
  """The client's perturbation settings (config section `privacy`)."""

  noise_scale: float  # λ (Eq. 2)
  replace_with: str = "perturbed"  # upload ê_j* or e_j* (SPEC §3)
  tile: int = 2048  # block size of the neighbour search: memory O(tile²)
  seed: int = 1  # client noise seed (folded with the client name)

  @classmethod
  def from_config(cls, section: Mapping) -> PrivacyConfig:
    replace_with = str(section["replace_with"])
    if replace_with not in perturb.REPLACE_WITH:
      raise UserError(
          f"privacy.replace_with={replace_with!r}; use one of {list(perturb.REPLACE_WITH)}"
      )
    return cls(float(section["noise_scale"]), replace_with, int(section["tile"]),
               int(section["seed"]))


def client_key(seed: int, client: str) -> jax.Array:
  """The client's noise key: independent of other clients and of domain order."""
  return jax.random.fold_in(jax.random.key(seed), zlib.crc32(client.encode("utf-8")) & 0x7FFFFFFF)


def make_upload(
    client: str, e: np.ndarray, config: PrivacyConfig, *, noise_scale: float | None = None
) -> tuple[Upload, dict[str, float]]:
  """(Upload of ẽ for items 1..N, privacy figures) from e [N+1, d_t] (row 0 = padding)."""
  items = np.asarray(e[1:], np.float32)  # [N, d_t]
  lam = config.noise_scale if noise_scale is None else noise_scale
  upload, _ = perturb.perturb(
      client_key(config.seed, client), items, lam, replace_with=config.replace_with,
      tile=config.tile,
  )
  figures = privacy.privacy_figures(upload, items, tile=config.tile)
  figures.update(noise_scale=float(lam), replace_with=config.replace_with)
  return Upload(client=client, vectors=np.asarray(upload, np.float32)), figures


def accept_reply(reply: Reply, sent: Mapping) -> np.ndarray:
  """Checks `reply` against the record of the upload sent; returns c [N+1, d_t]."""
  messages.check_reply(
      reply, client=sent["client"], count=sent["count"], dim=sent["dim"], answers=sent["digest"]
  )
  return artifacts.with_padding_row(reply.vectors)


def encode_domain(
    workdir: pathlib.Path, domain: str, text_cfg: Mapping,
    encoder: text_encoder.EncodeFn | None = None,
) -> np.ndarray:
  """e [N+1, d_t] of the domain's item texts (cached under DIR/federate/text_cache)."""
  split = load_split(workdir, domain)
  vectors = text_encoder.encode_texts(
      split.texts[1:], model=str(text_cfg["model"]),
      cache_dir=pathlib.Path(workdir) / artifacts.STAGE / "text_cache",
      batch_size=int(text_cfg["batch_size"]), device=str(text_cfg["device"]), encoder=encoder,
  )
  return artifacts.with_padding_row(vectors)


def prepare(
    workdir: pathlib.Path, domain: str, text_cfg: Mapping, privacy_cfg: Mapping,
    encoder: text_encoder.EncodeFn | None = None,
) -> tuple[Upload, dict[str, float]]:
  """Encodes, perturbs and records locally; returns the Upload to send and its figures."""
  e = encode_domain(workdir, domain, text_cfg, encoder)
  upload, figures = make_upload(domain, e, PrivacyConfig.from_config(privacy_cfg))
  directory = artifacts.domain_dir(workdir, domain)
  artifacts.save_array(directory / "local.npy", e)
  io_utils.write_json(directory / "privacy.json", figures)
  io_utils.write_json(
      directory / "sent.json",
      {"client": upload.client, "count": upload.count, "dim": upload.dim,
       "digest": upload.digest()},
  )
  return upload, figures


def receive(workdir: pathlib.Path, domain: str, reply: Reply) -> np.ndarray:
  """Accepts the server's reply for `domain` and saves c [N+1, d_t] as federated.npy."""
  directory = artifacts.domain_dir(workdir, domain)
  if not (directory / "sent.json").exists():
    raise UserError(f"client {domain!r} has sent no upload (no {directory / 'sent.json'}); "
                    f"run the client's upload step first")
  federated = accept_reply(reply, io_utils.read_json(directory / "sent.json"))
  artifacts.save_array(directory / "federated.npy", federated)
  return federated


def _saved_config(workdir: pathlib.Path) -> dict:
  path = workdir / "config.json"
  if not path.exists():
    raise UserError(f"no {path}: run `python -m sfubm_jax.main --stages=data` with this "
                    f"--workdir first (it saves the config and the client's data)")
  return io_utils.read_json(path)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  up = sub.add_parser("upload", help="encode, perturb and write this client's upload")
  up.add_argument("--outbox", required=True, type=pathlib.Path, help="folder for the upload")
  down = sub.add_parser("receive", help="check and keep the server's reply")
  down.add_argument("--reply", required=True, type=pathlib.Path, help="the reply message file")
  for p in (up, down):
    p.add_argument("--workdir", required=True, type=pathlib.Path, help="the client's run dir")
    p.add_argument("--domain", required=True, help="the client's domain (its name)")
  args = parser.parse_args(argv)
  workdir = args.workdir.absolute()
  try:
    if args.command == "upload":
      config = _saved_config(workdir)
      upload, figures = prepare(workdir, args.domain, config["text_encoder"], config["privacy"])
      path = args.outbox / f"{upload.client}{messages.SUFFIX}"
      messages.write_message(path, upload)
      print(f"wrote {path}: {upload.count} × {upload.dim}; sim {figures['sim']:.4f}, "
            f"reid@1 {figures['reid@1']:.4f}")
    else:
      federated = receive(workdir, args.domain, messages.read_reply(args.reply))
      print(f"accepted {args.reply}: {federated.shape[0] - 1} centroids kept")
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
