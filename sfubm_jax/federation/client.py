"""A client of the federation: encode → perturb → upload; receive → check → keep (SPEC §0).

The client holds its domain's data; the only thing it sends is an `Upload` of ẽ
(one vector per catalogue item, rows in a client-secret random order) and the only
thing it accepts is a `Reply` that fits its catalogue and answers its own last upload.
Its noise key and row order come from its secret (`federation.secret`), never from
the shared config.

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
from collections.abc import Mapping, Sequence

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.data.split import load_split
from sfubm_jax.errors import UserError
from sfubm_jax.federation import (
    artifacts,
    attacks,
    messages,
    perturb,
    privacy,
    secret,
    text_encoder,
)
from sfubm_jax.federation.messages import Reply, Upload


@dataclasses.dataclass(frozen=True)
class PrivacyConfig:
  """The client's perturbation settings (config section `privacy`)."""

  noise_scale: float  # λ (Eq. 2), > 0
  replace_with: str = "perturbed"  # upload ê_j* or e_j* (SPEC §3)
  tile: int = 2048  # block size of the neighbour search: memory O(tile²)
  allow_raw_upload: bool = False  # replace_with="original" puts raw vectors on the wire

  def __post_init__(self):
    if self.replace_with not in perturb.REPLACE_WITH:
      raise UserError(f"privacy.replace_with={self.replace_with!r}; use one of "
                      f"{list(perturb.REPLACE_WITH)}")
    check_noise_scale(self.noise_scale, "privacy.noise_scale")
    if self.replace_with == "original" and not self.allow_raw_upload:
      raise UserError("privacy.replace_with='original' uploads raw text vectors (the server "
                      "can read every item's exact embedding); set "
                      "--config.privacy.allow_raw_upload=True to run it anyway, unprotected")

  @property
  def raw_upload(self) -> bool:
    return self.replace_with == "original"

  @classmethod
  def from_config(cls, section: Mapping) -> PrivacyConfig:
    return cls(float(section["noise_scale"]), str(section["replace_with"]),
               int(section["tile"]), bool(section["allow_raw_upload"]))


def attack_config(section: Mapping) -> attacks.AttackConfig:
  """The simulated attacker of config section `privacy` (it knows the public mechanism)."""
  return attacks.AttackConfig(max_items=int(section["attack_items"]),
                              seed=int(section["attack_seed"]),
                              replace_with=str(section["replace_with"]), tile=int(section["tile"]))


def check_noise_scale(lam: float, field: str) -> None:
  if not lam > 0:  # also catches NaN
    raise UserError(f"{field}={lam}: the noise scale λ must be > 0 (λ = 0 uploads the raw "
                    f"neighbour vectors with no noise)")


def make_upload(
    client: str, e: np.ndarray, config: PrivacyConfig, client_secret: bytes, *,
    noise_scale: float | None = None, titles: Sequence[str] | None = None,
    attack: attacks.AttackConfig | None = None,
) -> tuple[Upload, dict[str, float]]:
  """(Upload of ẽ for items 1..N in secret row order, privacy figures) from e [N+1, d_t].

  With `attack` (and the item `titles` [N+1]) the figures include every attack of
  `federation.attacks`, scored by the client, which knows which row is which item.
  """
  items = np.asarray(e[1:], np.float32)  # [N, d_t]
  lam = config.noise_scale if noise_scale is None else noise_scale
  check_noise_scale(lam, "privacy.sweep λ")
  upload, _ = perturb.perturb(
      secret.noise_key(client_secret), items, lam, replace_with=config.replace_with,
      tile=config.tile,
  )
  upload = np.asarray(upload, np.float32)  # [N, d_t] catalogue order
  figures = privacy.privacy_figures(upload, items, tile=config.tile)
  figures.update(noise_scale=float(lam), replace_with=config.replace_with,
                 unprotected=config.raw_upload)
  if attack is not None:
    figures.update(attacks.attack_figures(items, upload, list(titles[1:]), lam, attack))
  order = secret.upload_order(client_secret, len(items))
  return Upload(client=client, vectors=upload[order]), figures


def accept_reply(reply: Reply, sent: Mapping, client_secret: bytes) -> np.ndarray:
  """Checks `reply` against the record of the upload sent; returns c [N+1, d_t].

  The reply's rows follow the upload's secret order; they are put back in catalogue order.
  """
  messages.check_reply(
      reply, client=sent["client"], count=sent["count"], dim=sent["dim"], answers=sent["digest"]
  )
  order = secret.upload_order(client_secret, sent["count"])
  return artifacts.with_padding_row(secret.unpermute(np.asarray(reply.vectors), order))


def client_secret(workdir: pathlib.Path, domain: str) -> bytes:
  """The domain client's secret, kept in its private part of the workdir."""
  return secret.load_or_create(artifacts.domain_dir(workdir, domain))


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
  """Encodes, perturbs and records locally; returns the Upload to send and its figures
  (with the attacks of `federation.attacks` at the configured λ)."""
  config = PrivacyConfig.from_config(privacy_cfg)
  e = encode_domain(workdir, domain, text_cfg, encoder)
  upload, figures = make_upload(domain, e, config, client_secret(workdir, domain),
                                titles=load_split(workdir, domain).titles,
                                attack=attack_config(privacy_cfg))
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
  federated = accept_reply(reply, io_utils.read_json(directory / "sent.json"),
                           client_secret(workdir, domain))
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
