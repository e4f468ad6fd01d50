"""health–beauty (target first): the paper's hyper-parameters (SPEC.md, Table 3).

  python -m sfubm_jax.main --config=configs/health_beauty.py --workdir=runs/paper
  python -m sfubm_jax.main --config=configs/health_beauty.py:cpu --workdir=runs/cpu
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
  return _common().get_config(pair="health_beauty", variant=arg)
