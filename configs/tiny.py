"""Seconds-long run for tests and smoke checks; food,kitchen unless domains are given.

  python -m sfubm_jax.main --config=configs/tiny.py --workdir=/tmp/tiny
  python -m sfubm_jax.main --config=configs/tiny.py:health,beauty --workdir=/tmp/tiny_hb
"""

from configs import common


def get_config(arg=None):
  return common.from_arg(arg, size="tiny", default_domains=("food", "kitchen"))
