"""SF-UBM in JAX."""
