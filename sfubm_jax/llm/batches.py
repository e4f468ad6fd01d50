"""Stage 2 sample sizes and length buckets: which rows form each batch, at which length.

Pure index arithmetic over per-example token lengths; the stages pack the rows.

- `sample(n, limit, seed, salt)`: the seeded subset of `limit` rows (all when 0) that a
  config's `llm.train_prompts` / `llm.eval_users` selects, in ascending order.
- `bucket_length(n, step)`: a length rounded up to its bucket. Batches are padded to
  their bucket, not to the longest sequence of the run: one jitted step per bucket
  length (a few), and little padding (`padding_share`).
- `train_batches(lengths, batch, seed, epoch, step)`: one epoch's batches. Rows are
  shuffled within their bucket, cut into whole batches (a bucket's last batch is filled
  with repeats of its rows that carry weight 0), and the batch order is shuffled; a pure
  function of (lengths, seed, epoch), so a resumed run sees the same batches.
- `eval_chunks(lengths, batch, step)`: evaluation chunks, rows ordered by bucket (stable),
  each chunk at the length of its longest row's bucket.
"""

from __future__ import annotations

import dataclasses

import numpy as np

BUCKET_STEP = 32  # tokens between two bucket lengths


def sample(n: int, limit: int, seed: int, salt: int) -> np.ndarray:
  """Ascending indices of `limit` rows of `n` drawn with (seed, salt); all rows if 0."""
  if limit <= 0 or limit >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng([seed, salt]).choice(n, size=limit, replace=False))


def bucket_length(n: int | np.ndarray, step: int = BUCKET_STEP):
  """`n` rounded up to a multiple of `step`."""
  return -(-np.asarray(n) // step) * step


@dataclasses.dataclass(frozen=True)
class Batch:
  """Rows of one batch, their loss weight (0 = filler repeat) and the padded length."""

  rows: np.ndarray  # [B] int
  weight: np.ndarray  # [B] float32
  length: int


def train_batches(lengths: np.ndarray, batch: int, seed: int, epoch: int,
                  step: int = BUCKET_STEP) -> list[Batch]:
  """Epoch `epoch`'s batches: shuffled within buckets, whole batches, shuffled order."""
  lengths = np.asarray(lengths)
  rng = np.random.default_rng([seed, 11, epoch])
  buckets = bucket_length(lengths, step)
  out = []
  for length in np.unique(buckets):
    rows = rng.permutation(np.flatnonzero(buckets == length))
    pad = (-len(rows)) % batch
    weight = np.concatenate([np.ones(len(rows), np.float32), np.zeros(pad, np.float32)])
    rows = np.concatenate([rows, rows[np.arange(pad) % len(rows)]])
    for k in range(0, len(rows), batch):
      out.append(Batch(rows[k:k + batch], weight[k:k + batch], int(length)))
  return [out[i] for i in rng.permutation(len(out))]


def eval_chunks(lengths: np.ndarray, batch: int, step: int = BUCKET_STEP) -> list[Batch]:
  """Chunks of `batch` rows in bucket order; the last is filled with weight-0 repeats."""
  lengths = np.asarray(lengths)
  order = np.argsort(bucket_length(lengths, step), kind="stable")
  out = []
  for k in range(0, len(order), batch):
    rows = order[k:k + batch]
    pad = batch - len(rows)
    weight = np.concatenate([np.ones(len(rows), np.float32), np.zeros(pad, np.float32)])
    rows = np.concatenate([rows, np.full(pad, rows[0])])
    out.append(Batch(rows, weight, int(bucket_length(lengths[rows].max(), step))))
  return out


def padding_share(lengths: np.ndarray, batches: list[Batch]) -> float:
  """Fraction of the tokens of `batches` that are padding (filler rows count as padding)."""
  lengths = np.asarray(lengths)
  total = sum(len(b.rows) * b.length for b in batches)
  real = sum(int(lengths[b.rows][b.weight > 0].sum()) for b in batches)
  return 1.0 - real / total if total else 0.0
