"""Stage 2 sample sizes and length buckets: which rows form each batch, at which length.

Pure index arithmetic over per-example token lengths; the stages pack the rows.

- `sample(n, limit, seed, salt)`: the seeded subset of `limit` rows (all when 0) that a
  config's `llm.train_prompts` / `llm.eval_users` selects, in ascending order.
- `plan_buckets(lengths, batch, max_buckets)`: rows sorted by length are cut into at most
  `max_buckets` runs of whole batches; a bucket's length is its longest row rounded up to
  8. The cuts are the ones with the fewest padded token slots (an exact dynamic
  programme over batch boundaries; fewer buckets on ties), so a long tail gets a bucket
  of its own instead of stretching a quarter of the rows. Batches are padded to their
  bucket, not to the longest sequence of the run: one jitted step per bucket (a few
  compilations), little padding (`padding_share`), and buckets of whole batches, so
  small samples get no extra filler rows.
- `train_batches(lengths, batch, seed, epoch, max_buckets)`: one epoch's batches. Rows
  are shuffled within their bucket, cut into whole batches (a bucket's last batch is
  filled with repeats of its rows that carry weight 0), and the batch order is shuffled; a
  pure function of (lengths, seed, epoch), so a resumed run sees the same batches.
- `eval_chunks(lengths, batch, max_buckets)`: evaluation chunks in bucket order, each at
  its bucket's length.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sfubm_jax.llm.prompts import round_up

MAX_BUCKETS = 4  # bucket lengths (compilations) per run at most
MULTIPLE = 8  # bucket lengths are multiples of this


def sample(n: int, limit: int, seed: int, salt: int) -> np.ndarray:
  """Ascending indices of `limit` rows of `n` drawn with (seed, salt); all rows if 0."""
  if limit <= 0 or limit >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng([seed, salt]).choice(n, size=limit, replace=False))


def bucket_cuts(sorted_lengths: np.ndarray, batch: int, max_buckets: int = MAX_BUCKETS
                ) -> list[int]:
  """Batch-index cuts 0 = c_0 < c_1 < ... < c_K = ceil(N / batch), K <= max_buckets, with the
  fewest padded slots: Σ_g (c_{g+1} − c_g) · batch · L_g, where L_g is the longest row of
  bucket g rounded up to 8 (`sorted_lengths` ascending). Fewer buckets win ties."""
  n = len(sorted_lengths)
  nb = -(-n // batch)
  k_max = max(1, min(max_buckets, nb))
  ends = np.minimum(np.arange(1, nb + 1) * batch, n) - 1
  top = round_up(np.asarray(sorted_lengths, np.int64)[ends], MULTIPLE) * batch
  inf = np.iinfo(np.int64).max // 4
  starts = np.arange(nb + 1, dtype=np.int64)
  prev = np.full(nb + 1, inf, np.int64)
  prev[0] = 0
  back = np.zeros((k_max + 1, nb + 1), np.int64)
  best_k, best = 0, inf
  for k in range(1, k_max + 1):
    cur = np.full(nb + 1, inf, np.int64)
    for b in range(1, nb + 1):
      # cost of [0, b) with k buckets, the last one [a, b): prev[a] + (b − a) · top[b − 1]
      cand = prev[:b] + (b - starts[:b]) * top[b - 1]  # unreachable a stay above inf
      a = int(np.argmin(cand))
      cur[b], back[k, b] = cand[a], a
    if cur[nb] < best:
      best_k, best = k, int(cur[nb])
    prev = cur
  cuts = [nb]
  for k in range(best_k, 0, -1):
    cuts.append(int(back[k, cuts[-1]]))
  return cuts[::-1]


def plan_buckets(lengths: np.ndarray, batch: int, max_buckets: int = MAX_BUCKETS
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(bucket [N] of each row, length [K] of each bucket) for `lengths` [N].

  Rows in ascending length (ties by index) are cut into K <= min(max_buckets, batches)
  runs of whole batches (the last run takes the remainder) at `bucket_cuts`; a bucket's
  length is its longest row rounded up to a multiple of 8.
  """
  lengths = np.asarray(lengths)
  n = len(lengths)
  order = np.argsort(lengths, kind="stable")
  edges = [min(c * batch, n) for c in bucket_cuts(lengths[order], batch, max_buckets)]
  bucket = np.empty(n, np.int64)
  sizes = []
  for g in range(len(edges) - 1):
    rows = order[edges[g]:edges[g + 1]]
    bucket[rows] = g
    sizes.append(round_up(int(lengths[rows].max()), MULTIPLE))
  return bucket, np.asarray(sizes, np.int64)


@dataclasses.dataclass(frozen=True)
class Batch:
  """Rows of one batch, their loss weight (0 = filler repeat) and the padded length."""

  rows: np.ndarray  # [B] int
  weight: np.ndarray  # [B] float32
  length: int


def train_batches(lengths: np.ndarray, batch: int, seed: int, epoch: int,
                  max_buckets: int = MAX_BUCKETS) -> list[Batch]:
  """Epoch `epoch`'s batches: shuffled within buckets, whole batches, shuffled order."""
  bucket, sizes = plan_buckets(lengths, batch, max_buckets)
  rng = np.random.default_rng([seed, 11, epoch])
  out = []
  for g, length in enumerate(sizes):
    rows = rng.permutation(np.flatnonzero(bucket == g))
    pad = (-len(rows)) % batch
    weight = np.concatenate([np.ones(len(rows), np.float32), np.zeros(pad, np.float32)])
    rows = np.concatenate([rows, rows[np.arange(pad) % len(rows)]])
    for k in range(0, len(rows), batch):
      out.append(Batch(rows[k:k + batch], weight[k:k + batch], int(length)))
  return [out[i] for i in rng.permutation(len(out))]


def eval_chunks(lengths: np.ndarray, batch: int, max_buckets: int = MAX_BUCKETS) -> list[Batch]:
  """Chunks of `batch` rows in bucket order (ascending row index within a bucket), each at
  its bucket's length; a bucket's last chunk is filled with weight-0 repeats."""
  bucket, sizes = plan_buckets(lengths, batch, max_buckets)
  out = []
  for g, length in enumerate(sizes):
    rows_g = np.flatnonzero(bucket == g)
    for k in range(0, len(rows_g), batch):
      rows = rows_g[k:k + batch]
      pad = batch - len(rows)
      weight = np.concatenate([np.ones(len(rows), np.float32), np.zeros(pad, np.float32)])
      out.append(Batch(np.concatenate([rows, np.full(pad, rows[0])]), weight, int(length)))
  return out


def padding_share(lengths: np.ndarray, batches: list[Batch]) -> float:
  """Fraction of the tokens of `batches` that are padding (filler rows count as padding)."""
  lengths = np.asarray(lengths)
  total = sum(len(b.rows) * b.length for b in batches)
  real = sum(int(lengths[b.rows][b.weight > 0].sum()) for b in batches)
  return 1.0 - real / total if total else 0.0
