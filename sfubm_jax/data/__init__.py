"""sfubm_jax.data."""
