"""Any two or more domains (target first), e.g. your own data (README "Your own data").

  python -m sfubm_jax.main --config=configs/pair.py:arts,office,cpu --workdir=runs/ao \
      --config.data.sources.arts.path=/data/arts --config.data.sources.office.path=/data/office

The argument names the domains and optionally a size (cpu, tiny). A paper pair (e.g.
food,kitchen) gets the paper's settings; other domains get `common.DOMAIN_DEFAULTS`.
"""

from configs import common


def get_config(arg=None):
  return common.from_arg(arg)
