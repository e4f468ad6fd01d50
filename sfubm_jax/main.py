"""Runs the SF-UBM pipeline.

  python -m sfubm_jax.main --config=configs/books_movielens.py --workdir=runs/bm
  python -m sfubm_jax.main --config=configs/food_kitchen.py:cpu --workdir=runs/fk \
      --stages=data,federate --config.server.num_clusters=50
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from sfubm_jax import config_check, config_io, distributed, pipeline
from sfubm_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every output of the run.")
_STAGES = flags.DEFINE_string(
    "stages", None, f"Comma-separated stages to run (default: all). Order: {list(pipeline.STAGES)}"
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distributed.maybe_initialize()  # multi-host runs; a no-op for one process
  try:
    config = _CONFIG.value
    if config is None:
      raise UserError("--config is required, e.g. --config=configs/books_movielens.py:cpu")
    if not _WORKDIR.value:
      raise UserError("--workdir is required: the directory where the run writes")
    workdir = pathlib.Path(_WORKDIR.value).absolute()
    stages = pipeline.parse_stages(_STAGES.value)
    config_check.check(config)
    config_io.bind_workdir(config, workdir)
    logging.info("workdir %s, stages %s", workdir, stages)
    pipeline.run(config, workdir, stages)
  except UserError as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  logging.info("results: %s", workdir / "results.json")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, but a `--config.<field>` that does not exist is one error line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    field = str(e).strip("\"'").split("'")[0]
    given = [a for a in argv[1:] if a.startswith("--config.") and field in a]
    if not given:
      raise  # Not an override naming a missing field: a bug in the config file itself.
    print(f"error: unknown config field {field!r} in {given[0]}; the fields are in "
          f"configs/common.py", file=sys.stderr)
    sys.exit(2)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def entry() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  entry()
