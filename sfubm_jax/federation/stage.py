"""The `federate` pipeline stage (SPEC §2–4): every party in one process, same wire.

Each client encodes, perturbs and writes its upload to `DIR/federate/wire/uploads/`;
the server reads only that folder and writes replies and its report to
`DIR/federate/wire/replies/`; each client checks and keeps its reply. This is exactly
what the `client` and `server` command lines do across processes.

Outputs under DIR/federate/: <domain>/{local,federated}.npy (see `artifacts`),
<domain>/client_secret.bin (the client's secret, `secret`), cluster_report.json,
privacy.json ({domain: figures at the configured λ, with "by_lambda": {λ: figures}
for every λ of `config.privacy.sweep`}; figures = sim, reid@1 and the attacks of
`attacks`), and privacy_sweep.{md,png,json} when the sweep is non-empty. A rerun
re-encodes nothing (text cache) and reuses each client's secret.
"""

from __future__ import annotations

import pathlib

import ml_collections
from absl import logging

from sfubm_jax import io_utils, results
from sfubm_jax.data.split import load_split
from sfubm_jax.federation import artifacts, client, messages, server, sweep, text_encoder


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  stage_dir = pathlib.Path(workdir) / artifacts.STAGE
  uploads_dir, replies_dir = stage_dir / "wire" / "uploads", stage_dir / "wire" / "replies"

  if config.federation.transport == "flower":  # the same round over Flower's Message API
    from sfubm_jax.federation import flower_deploy

    report = flower_deploy.run_round(
        workdir, list(config.domains), server.ServerConfig.from_config(config.server),
        outbox=stage_dir / "wire", timeout_s=float(config.federation.timeout_s))
    privacy_figures = {d: io_utils.read_json(artifacts.domain_dir(workdir, d) / "privacy.json")
                       for d in config.domains}
  else:
    privacy_figures, report = _file_round(config, workdir, uploads_dir, replies_dir)
  io_utils.write_json(stage_dir / server.REPORT, report)
  logging.info("server: K=%d, inertia %.4f, %d iterations, bridge share %.3f",
               report["num_clusters"], report["inertia"], report["iterations"],
               report["bridge_share"])

  for domain, figures in privacy_figures.items():
    results.update_results(workdir, "federate", domain,
                           {k: v for k, v in figures.items() if isinstance(v, float)})

  if config.privacy.sweep:
    vectors = {d: artifacts.load_item_vectors(workdir, d)[0] for d in config.domains}
    table = sweep.privacy_sweep(
        vectors, config.privacy.sweep, client.PrivacyConfig.from_config(config.privacy),
        {d: client.client_secret(workdir, d) for d in config.domains},
        {d: load_split(workdir, d).titles for d in config.domains},
        client.attack_config(config.privacy),
        known={config.privacy.noise_scale: privacy_figures},
    )
    sweep.write_sweep(stage_dir, table)
    for domain, figures in privacy_figures.items():
      figures["by_lambda"] = {f"{lam:g}": row[domain] for lam, row in table.items()}
    logging.info("privacy sweep:\n%s", sweep.sweep_markdown(table))
  io_utils.write_json(stage_dir / "privacy.json", privacy_figures)


def _file_round(config, workdir, uploads_dir, replies_dir) -> tuple[dict, dict]:
  """Every party in this process, exchanging message files: (privacy figures, report)."""
  encoder = text_encoder.lazy_encoder(  # loaded once, only if the cache misses a text
      config.text_encoder.model, batch_size=config.text_encoder.batch_size,
      device=config.text_encoder.device,
  )
  privacy_figures = {}
  for domain in config.domains:
    upload, figures = client.prepare(
        workdir, domain, config.text_encoder, config.privacy, encoder
    )
    messages.write_message(uploads_dir / f"{domain}{messages.SUFFIX}", upload)
    privacy_figures[domain] = figures
    logging.info("client %s: uploaded %d × %d, sim %.4f, reid@1 %.4f, mech top-10 %.4f",
                 domain, upload.count, upload.dim, figures["sim"], figures["reid@1"],
                 figures["mech_top10"])

  report = server.serve_directory(
      uploads_dir, replies_dir, server.ServerConfig.from_config(config.server)
  )
  for domain in config.domains:
    client.receive(workdir, domain, messages.read_reply(replies_dir / f"{domain}{messages.SUFFIX}"))
  return privacy_figures, report
