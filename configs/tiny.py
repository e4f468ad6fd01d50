"""Seconds-long Food–Kitchen run for tests and smoke checks.

  python -m sfubm_jax.main --config=configs/tiny.py --workdir=/tmp/tiny
"""

import importlib.util
import pathlib


def _common():
  path = pathlib.Path(__file__).with_name("common.py")
  spec = importlib.util.spec_from_file_location("sfubm_configs_common", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  return _common().get_config(pair=arg or "food_kitchen", variant="tiny")
