"""books–movielens (target first): the paper's hyper-parameters (SPEC.md, Table 3).

  python -m sfubm_jax.main --config=configs/books_movielens.py --workdir=runs/paper
  python -m sfubm_jax.main --config=configs/books_movielens.py:cpu --workdir=runs/cpu
"""

from configs import common


def get_config(arg=None):
  return common.from_arg(arg, pair="books_movielens")
