"""sfubm_jax.federation: Stage 1a, federated semantic learning (SPEC §0, §2–4).

Data flow, left to right, with the wire boundary in the middle:

  text_encoder (e, cached) ─perturb─► ẽ ─messages.Upload─► server (kmeans) ─messages.Reply─►
  client (checks, keeps c) ─artifacts.load_item_vectors─► FKD

`stage` runs every party in one process over the same message files that the `client`
and `server` command lines exchange across processes; `privacy` and `sweep` report
what an upload reveals (sim, reid@1, paper Table 5).
"""
