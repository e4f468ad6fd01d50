"""sfubm_jax.federation."""
