"""sfubm_jax.models."""
