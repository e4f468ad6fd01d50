"""The Flower App folder `flwr run` submits (pyproject.toml + its component module)."""
