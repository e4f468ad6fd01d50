"""sfubm_jax.training."""
