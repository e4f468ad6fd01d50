"""A small synthetic DomainSplit whose next item is learnable (tests of the seqrec helper).

Each user walks through the catalogue: item k is followed by item k+1 (mod N), starting
at a random item, so a sequence model can reach Hit@1 near 1.
"""

import numpy as np

from sfubm_jax.data.split import DomainSplit


def synthetic_split(num_users=96, num_items=30, max_len=10, seed=0, name="toy"):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, max_len + 1, size=num_users).astype(np.int32)
  seqs = np.zeros((num_users, max_len), np.int32)
  for u, n in enumerate(lengths):
    start = rng.integers(num_items)
    seqs[u, max_len - n:] = (start + np.arange(n)) % num_items + 1
  cands = {}
  for which, col in (("valid", -2), ("test", -1)):
    c = np.zeros((num_users, 20), np.int32)
    pos = rng.integers(20, size=num_users).astype(np.int32)
    for u in range(num_users):
      seen = set(seqs[u][seqs[u] != 0].tolist())
      pool = np.array([i for i in range(1, num_items + 1) if i not in seen])
      negs = rng.choice(pool, size=19, replace=False)
      c[u] = np.insert(negs, pos[u], seqs[u, col])
    cands[which] = (c, pos)
  ids = [""] + [f"i{i}" for i in range(1, num_items + 1)]
  return DomainSplit(
      name=name, item_ids=ids, titles=ids, shown_titles=ids, texts=ids,
      user_ids=[f"u{u}" for u in range(num_users)], seqs=seqs, lengths=lengths,
      valid_candidates=cands["valid"][0], valid_target_pos=cands["valid"][1],
      test_candidates=cands["test"][0], test_target_pos=cands["test"][1],
  )
