"""sfubm_jax.llm."""
