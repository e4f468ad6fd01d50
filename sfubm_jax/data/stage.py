"""The `data` stage: read every domain, preprocess (SPEC §1), save splits and Table 1.

Outputs under `DIR/data/`: `<domain>/{arrays.npz, items.json, users.json}` (the
`split.py` format), `stats.json` and `stats.md`. All domains are read and preprocessed
before anything is written, so bad input leaves no output behind; each domain folder
then appears atomically (temp directory + rename). The same config gives the same bytes.
"""

from __future__ import annotations

import pathlib
import time

import ml_collections
from absl import logging

from sfubm_jax import config_check, io_utils
from sfubm_jax.data import sources, stats
from sfubm_jax.data.preprocess import PreprocessParams, assert_disjoint, preprocess
from sfubm_jax.data.raw import UNKNOWN_ITEM_POLICIES
from sfubm_jax.data.split import save_split
from sfubm_jax.errors import UserError


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  out = workdir / "data"
  domains = list(config.domains)
  if not domains:
    raise UserError("config.domains is empty; list the target domain first, then the sources")
  # Check the whole config before the (possibly long) reading starts.
  params = {d: PreprocessParams.from_config(config, d) for d in domains}
  for d in domains:
    sources.source_of(config, d)
  if config.data.unknown_items not in UNKNOWN_ITEM_POLICIES:
    raise UserError(
        f"config data.unknown_items={config.data.unknown_items!r} is not one of "
        f"{UNKNOWN_ITEM_POLICIES}"
    )

  splits, details = [], {}
  for d in domains:
    start = time.time()
    raw = sources.read_domain(config, d)
    logging.info(
        "domain %s: read %d users, %d items, %d interactions in %.1fs",
        d, len(raw.user_ids), len(raw.item_ids), raw.num_interactions, time.time() - start,
    )
    split, detail = preprocess(raw, params[d])
    del raw
    row = stats.table_row(split)
    logging.info(
        "domain %s: %d users, %d items, %d interactions, avg len %.2f (%.1fs)",
        d, row["users"], row["items"], row["interactions"], row["avg_len"], time.time() - start,
    )
    splits.append(split)
    details[d] = detail
  assert_disjoint(splits)
  # The federate stage would reject K > items: say so before anything is written.
  config_check.check_num_clusters(config, {s.name: stats.table_row(s)["items"] for s in splits})

  for split in splits:
    with io_utils.atomic_directory(out / split.name) as tmp:
      save_split(split, tmp)
  table = stats.build_stats(splits, details)
  io_utils.write_json(out / "stats.json", table)
  io_utils.atomic_write_text(out / "stats.md", stats.markdown(table, domains))
  logging.info("data stats:\n%s", stats.markdown(table, domains))
