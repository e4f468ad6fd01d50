"""food–kitchen (target first): the paper's hyper-parameters (SPEC.md, Table 3).

  python -m sfubm_jax.main --config=configs/food_kitchen.py --workdir=runs/paper
  python -m sfubm_jax.main --config=configs/food_kitchen.py:cpu --workdir=runs/cpu
"""

from configs import common


def get_config(arg=None):
  return common.from_arg(arg, pair="food_kitchen")
