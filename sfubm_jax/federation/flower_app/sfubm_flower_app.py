"""The Flower App's components; the code is sfubm_jax.federation.flower_round."""

from sfubm_jax.federation.flower_round import client_app, server_app

__all__ = ["client_app", "server_app"]
