"""Experiment configs: `common` holds the defaults, every other module is one experiment.

Config files import `configs.common` as a package module; `python -m sfubm_jax.main`
puts the repository root on `sys.path` so that this works from any directory.
"""
