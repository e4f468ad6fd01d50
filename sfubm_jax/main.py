"""Runs the SF-UBM pipeline.

  python -m sfubm_jax.main --config=configs/books_movielens.py --workdir=runs/bm
  python -m sfubm_jax.main --config=configs/food_kitchen.py:cpu --workdir=runs/fk \
      --stages=data,federate --config.server.num_clusters=50
  python -m sfubm_jax.main --config=configs/pair.py:arts,office,cpu --workdir=runs/ao \
      --config.data.sources.arts.path=/data/arts --config.data.sources.office.path=/data/office

The terminal shows stage banners, progress bars and results; every log line goes to
DIR/log.txt (`--verbose` shows them on the terminal instead). Bad input is one
`error:` line and exit status 2.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from sfubm_jax import cli, config_check, console, distributed, pipeline
from sfubm_jax import workdir as workdirs
from sfubm_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every output of the run.")
_STAGES = flags.DEFINE_string(
    "stages", None, f"Comma-separated stages to run (default: all). Order: {list(pipeline.STAGES)}"
)
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show every log line (absl, Orbax, JAX, transformers) on the terminal "
    "instead of writing them to DIR/log.txt only.")


def _prepare() -> tuple:
  """Checks everything that can be checked before the workdir is touched."""
  config = _CONFIG.value
  if config is None:
    raise UserError("--config is required, e.g. --config=configs/books_movielens.py:cpu")
  if not _WORKDIR.value:
    raise UserError("--workdir is required: the directory where the run writes")
  workdir = pathlib.Path(_WORKDIR.value).expanduser().absolute()
  stages = pipeline.parse_stages(_STAGES.value)
  config_check.check(config, stages)
  workdirs.check_usable(workdir)
  return config, workdir, stages


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    console.error(f"unexpected arguments: {argv[1:]}; flags look like --name=value")
    sys.exit(2)
  workdir = None
  try:
    multi = distributed.maybe_initialize()  # multi-host runs; a no-op for one process
    config, workdir, stages = _prepare()
    import jax  # after distributed initialisation

    primary = not multi or jax.process_index() == 0
    if primary:
      workdirs.lock(workdir)  # held until this process exits; the OS drops it on any death
    else:
      workdir.mkdir(parents=True, exist_ok=True)
    if not _VERBOSE.value:
      name = "log.txt" if primary else f"log.{jax.process_index()}.txt"
      console.to_log_file(workdir / name)
    if primary:
      stale = workdirs.remove_stale_temps(workdir)
      if stale:
        logging.info("removed %d stale temp entries: %s", len(stale), stale)
        console.say(f"removed {len(stale)} temp file(s)/folder(s) a killed run left behind")
    config_check.check_against_data(config, workdir)
    console.say(f"sfubm_jax: {config.pair}{f' :{config.variant}' if config.variant else ''}, "
                f"workdir {workdir}, stages {','.join(stages)}"
                + ("" if _VERBOSE.value else f"; log: {workdir / 'log.txt'}"))
    pipeline.run(config, workdir, stages)
  except UserError as e:
    console.error(str(e))
    sys.exit(2)
  except Exception as e:  # noqa: BLE001 - a bug: the traceback goes to the log
    if _VERBOSE.value or not console.is_redirected():
      raise
    logging.exception("internal error")
    console.error(f"internal error ({type(e).__name__}: {e}); the traceback is in "
                  f"{console.log_path()}")
    sys.exit(1)
  logging.info("results: %s", workdir / "results.json")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a bad config file, argument or override is one error line."""
  cli.add_repo_to_path()
  try:
    cli.check_argv(argv)
    return flags.FLAGS(argv)
  except UserError as e:
    message = str(e)
  except (AttributeError, KeyError) as e:
    message = cli.explain_flag_error(e, argv)
    if message is None:
      raise  # Not an override naming a missing field: a bug in the config file itself.
  except flags.Error as e:
    message = cli.explain_flag_error(e, argv) or str(e).splitlines()[0]
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def entry() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  entry()
