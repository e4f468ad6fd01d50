"""Shared pieces of the FKD tests: a small frozen SASRec, synthetic domains, numpy MLPs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sfubm_jax.data.split import DomainSplit
from sfubm_jax.models import fkd
from sfubm_jax.models.sasrec import SASRec
from sfubm_jax.training.fkd_train import FKDData


def frozen_sasrec(num_items: int, dim: int, max_len: int, seed: int = 0):
  """A randomly initialised SASRec (the frozen ID model) and its encode function."""
  model = SASRec(num_items=num_items, dim=dim, num_blocks=1, num_heads=1, dropout=0.0,
                 max_len=max_len)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, max_len), jnp.int32))

  @jax.jit
  def encode(p, seqs):
    return model.apply(p, seqs, deterministic=True)

  return encode, params


def gelu_tanh(x, xp=np):
  return 0.5 * x * (1.0 + xp.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def mlp(p, x, xp=np):
  """Forward of `fkd.MLP` written from its param arrays (numpy or jax.numpy)."""
  q = p["params"]
  h = gelu_tanh(x @ xp.asarray(q["hidden"]["kernel"]) + xp.asarray(q["hidden"]["bias"]), xp)
  return h @ xp.asarray(q["out"]["kernel"]) + xp.asarray(q["out"]["bias"])


def cluster_domain(num_users: int, clusters: int, per_cluster: int, length: int,
                   text_dim: int, seed: int) -> tuple[DomainSplit, np.ndarray, np.ndarray]:
  """Users who buy from one preferred cluster of items; text vectors follow the clusters.

  Returns (split, local X [N+1, d_t], federated C [N+1, d_t]); C = the cluster means of
  X, the way the federate stage synchronises items to their k-means centre.
  """
  rng = np.random.default_rng(seed)
  n = clusters * per_cluster
  cluster_of = np.repeat(np.arange(clusters), per_cluster)  # item i+1 -> cluster
  centres = rng.normal(size=(clusters, text_dim))
  local = centres[cluster_of] + 0.3 * rng.normal(size=(n, text_dim))
  local /= np.linalg.norm(local, axis=1, keepdims=True)
  local = np.concatenate([np.zeros((1, text_dim)), local]).astype(np.float32)
  federated = np.zeros_like(local)
  for k in range(clusters):
    members = 1 + np.flatnonzero(cluster_of == k)
    federated[members] = local[members].mean(0)

  seqs = np.zeros((num_users, length), np.int32)
  lengths = rng.integers(3, length + 1, size=num_users).astype(np.int32)
  cands = {}
  for which in ("valid", "test"):
    cands[which] = np.zeros((num_users, 20), np.int32)
  pos = {w: rng.integers(0, 20, size=num_users).astype(np.int32) for w in cands}
  for u in range(num_users):
    k = rng.integers(clusters)
    items = 1 + k * per_cluster + rng.choice(per_cluster, size=lengths[u], replace=False)
    seqs[u, length - lengths[u]:] = items
    untouched = np.setdiff1d(np.arange(1, n + 1), items)
    for which, target in (("valid", items[-2]), ("test", items[-1])):
      row = rng.choice(untouched, size=20, replace=False)
      row[pos[which][u]] = target
      cands[which][u] = row
  split = DomainSplit(
      name="synthetic", item_ids=[""] + [f"i{i}" for i in range(1, n + 1)],
      titles=[""] + [f"t{i}" for i in range(1, n + 1)],
      shown_titles=[""] + [f"t{i}" for i in range(1, n + 1)],
      texts=[""] + [f"t{i}" for i in range(1, n + 1)],
      user_ids=[f"u{u}" for u in range(num_users)], seqs=seqs, lengths=lengths,
      valid_candidates=cands["valid"], valid_target_pos=pos["valid"],
      test_candidates=cands["test"], test_target_pos=pos["test"],
  )
  return split, local, federated


def fkd_data(split: DomainSplit, sasrec_params, local, federated) -> FKDData:
  return FKDData(
      sasrec_params=sasrec_params,
      item_emb=np.asarray(sasrec_params["params"]["item_emb"]["embedding"], np.float32),
      local=local, federated=federated, train_seqs=split.history("train")[0], touched=split.seqs,
      valid=(split.history("valid")[0], *split.candidates("valid")),
      test=(split.history("test")[0], *split.candidates("test")),
  )


def hparams(encode, dim: int, text_dim: int, variant: str = "fkd", **kw) -> fkd.FKDHParams:
  return fkd.FKDHParams(encode=encode, dim=dim, text_dim=text_dim,
                        switches=fkd.VARIANTS[variant], **kw)
