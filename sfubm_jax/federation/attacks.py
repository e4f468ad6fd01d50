"""Attacks on the uploads by an honest-but-curious server (SPEC §3, beyond the paper).

The attacker knows the whole config, the public mechanism (Eq. 2–6) and the public item
texts, hence the raw vectors e [N, D] of every item; it sees the uploads ẽ but neither
the client's noise nor its row order. Each attack guesses, for an upload, which item it
stands for; the client, which knows the truth, scores the guesses. Figures:

- `reid@1` (in `privacy`): the nearest raw vector of ẽ_i is e_i.
- mechanism-aware re-identification (`mech_top1`, `mech_top10`, `mech_mrr`): the upload
  of i is (a noisy copy of) its neighbour j*'s vector, so the attacker takes the nearest
  raw vector j of ẽ_i and ranks the other items by cos(e_j, ·); the rank of i.
- learned denoiser (`ridge_top1/top10`, `mlp_top1/top10`): the attacker runs the
  mechanism itself with its own noise on the public vectors, fits a map from its
  simulated uploads to the clean vectors on half the catalogue (ridge regression; a
  small MLP), applies it to the real uploads of the other half and ranks all items by
  cosine to the output; the rank of i.
- bag-of-words inversion (`bow_precision/recall/f1`, GEIA's projection baseline): an
  MLP from the simulated upload to the multi-hot set of title words (the words of at
  least two training titles), trained on half the catalogue; micro token
  precision/recall/F1 of its words (sigmoid > 0.5) on the real uploads of the held-out
  half, against every word of each held-out title.

Evaluation uses at most `max_items` held-out items and trains on at most as many;
`mrr` counts a miss (the item not in the ranking) as 0.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sfubm_jax.data.titles import normalize
from sfubm_jax.federation import neighbours, perturb

MLP_HIDDEN = 128  # width of the attacker's MLPs
MLP_STEPS = 200  # full-batch Adam steps
MLP_LR = 1e-2
RIDGE_ALPHA = 1.0  # ridge penalty (inputs and outputs are near unit norm)
BOW_VOCAB = 500  # most frequent title words of the training half (in >= 2 titles)
_CHUNK = 512  # query rows per similarity block: memory O(chunk × N)


@dataclasses.dataclass(frozen=True)
class AttackConfig:
  """The attacker's settings (config section `privacy`: attack_items, attack_seed)."""

  max_items: int = 2000  # held-out items evaluated (and training items used), at most
  seed: int = 7  # the attacker's own randomness (noise, split, init)
  replace_with: str = "perturbed"  # the public mechanism the attacker simulates
  tile: int = 2048


@jax.jit
def _rank_block(q, c, truth, exclude):
  """Ranks of c[truth] by cos(q, c) among c (exclude[k] >= 0 is left out of row k)."""
  scores = neighbours.normalize(q) @ neighbours.normalize(c).T  # [Q, N]
  target = scores[jnp.arange(q.shape[0]), truth]
  left_out = jnp.arange(c.shape[0])[None, :] == exclude[:, None]  # [Q, N]
  rank = ((scores > target[:, None]) & ~left_out).sum(-1)
  return jnp.where(truth == exclude, c.shape[0], rank)  # the truth excluded: a miss


def ranks(queries: np.ndarray, cands: np.ndarray, truth: np.ndarray,
          exclude: np.ndarray | None = None) -> np.ndarray:
  """[Q] 0-based rank of cands[truth[k]] among cands by cosine to queries[k] (ties in
  the truth's favour), cands[exclude[k]] left out; a truth that is excluded gets N."""
  exclude = np.full(len(truth), -1) if exclude is None else np.asarray(exclude)
  out = []
  for s in range(0, len(truth), _CHUNK):
    sl = slice(s, s + _CHUNK)
    out.append(np.asarray(_rank_block(jnp.asarray(queries[sl]), jnp.asarray(cands),
                                      jnp.asarray(truth[sl]), jnp.asarray(exclude[sl]))))
  return np.concatenate(out) if out else np.zeros(0, np.int64)


def rank_figures(rank: np.ndarray, prefix: str, n: int) -> dict[str, float]:
  rank = np.asarray(rank)
  hit = rank < n
  return {f"{prefix}_top1": float(np.mean(rank == 0)),
          f"{prefix}_top10": float(np.mean(rank < 10)),
          f"{prefix}_mrr": float(np.mean(np.where(hit, 1.0 / (rank + 1.0), 0.0)))}


def ridge(x: np.ndarray, y: np.ndarray, alpha: float = RIDGE_ALPHA) -> np.ndarray:
  """[D+1, D'] weights of y ≈ [x, 1] W (bias unpenalised), by the normal equations."""
  xb = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
  reg = alpha * np.eye(xb.shape[1])
  reg[-1, -1] = 0.0
  return np.linalg.solve(xb.T @ xb + reg, xb.T @ y.astype(np.float64))


def apply_ridge(w: np.ndarray, x: np.ndarray) -> np.ndarray:
  return np.concatenate([x, np.ones((len(x), 1))], axis=1) @ w


def _mlp_init(key, d_in: int, d_out: int):
  k1, k2 = jax.random.split(key)
  return {"w1": jax.random.normal(k1, (d_in, MLP_HIDDEN)) / np.sqrt(d_in),
          "b1": jnp.zeros(MLP_HIDDEN),
          "w2": jax.random.normal(k2, (MLP_HIDDEN, d_out)) / np.sqrt(MLP_HIDDEN),
          "b2": jnp.zeros(d_out)}


def _mlp(p, x):
  return jax.nn.gelu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


@functools.partial(jax.jit, static_argnames=("loss",))
def _fit(params, x, y, *, loss: str):
  tx = optax.adam(MLP_LR)

  def objective(p):
    out = _mlp(p, x)
    if loss == "mse":
      return jnp.mean(jnp.sum((out - y) ** 2, -1))
    return jnp.mean(optax.sigmoid_binary_cross_entropy(out, y))

  def step(carry, _):
    p, opt = carry
    grads = jax.grad(objective)(p)
    updates, opt = tx.update(grads, opt, p)
    return (optax.apply_updates(p, updates), opt), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=MLP_STEPS)
  return params


def fit_mlp(key, x: np.ndarray, y: np.ndarray, loss: str):
  """A small MLP (MLP_HIDDEN, GELU) fitted full-batch with Adam; returns its predictor."""
  params = _fit(_mlp_init(key, x.shape[1], y.shape[1]), jnp.asarray(x, jnp.float32),
                jnp.asarray(y, jnp.float32), loss=loss)
  return lambda q: np.asarray(_mlp(params, jnp.asarray(q, jnp.float32)))


def title_words(title: str) -> set[str]:
  return set(normalize(title).split())


def bow_figures(pred: np.ndarray, vocab: Sequence[str], titles: Sequence[str]) -> dict:
  """Micro token precision/recall/F1 of predicted word sets against the title words."""
  tp = n_pred = n_true = 0
  for row, title in zip(pred, titles):
    guess = {vocab[k] for k in np.flatnonzero(row)}
    truth = title_words(title)
    tp += len(guess & truth)
    n_pred += len(guess)
    n_true += len(truth)
  p = tp / n_pred if n_pred else 0.0
  r = tp / n_true if n_true else 0.0
  return {"bow_precision": p, "bow_recall": r,
          "bow_f1": 2 * p * r / (p + r) if p + r else 0.0}


def attack_figures(e: np.ndarray, upload: np.ndarray, titles: Sequence[str], noise_scale: float,
                   config: AttackConfig) -> dict[str, float]:
  """Every attack on `upload` [N, D] (row i = item i's upload) given raw e [N, D] and the
  item titles [N]; returns the figures named in the module docstring."""
  e = np.asarray(e, np.float32)
  upload = np.asarray(upload, np.float32)
  n = len(e)
  rng = np.random.default_rng([config.seed, 1])
  order = rng.permutation(n)
  half = n // 2
  train = order[:half][: config.max_items]
  test = order[half:][: config.max_items]
  key = jax.random.key(config.seed)
  k_noise, k_ridge, k_bow = jax.random.split(key, 3)
  out: dict[str, float] = {"attack_items": float(len(test))}

  # Mechanism-aware re-identification.
  nearest = np.asarray(neighbours.nearest_neighbour(jnp.asarray(upload[test]), jnp.asarray(e),
                                                    tile=config.tile))
  out.update(rank_figures(ranks(e[nearest], e, test, exclude=nearest), "mech", n))

  # The attacker's own run of the public mechanism on the public vectors.
  simulated, _ = perturb.perturb(k_noise, jnp.asarray(e), noise_scale,
                                 replace_with=config.replace_with, tile=config.tile)
  simulated = np.asarray(simulated)

  w = ridge(simulated[train], e[train])
  denoised = apply_ridge(w, upload[test]).astype(np.float32)
  out.update({k: v for k, v in rank_figures(ranks(denoised, e, test), "ridge", n).items()
              if not k.endswith("mrr")})
  mlp = fit_mlp(k_ridge, simulated[train], e[train], "mse")
  out.update({k: v for k, v in rank_figures(ranks(mlp(upload[test]), e, test), "mlp", n).items()
              if not k.endswith("mrr")})

  # Bag-of-words inversion.
  counts: dict[str, int] = {}
  for i in train:
    for w_ in title_words(titles[i]):
      counts[w_] = counts.get(w_, 0) + 1
  vocab = sorted((w_ for w_ in counts if counts[w_] >= 2),
                 key=lambda w_: (-counts[w_], w_))[:BOW_VOCAB]
  index = {w_: k for k, w_ in enumerate(vocab)}
  target = np.zeros((len(train), max(1, len(vocab))), np.float32)
  for r, i in enumerate(train):
    for w_ in title_words(titles[i]):
      if w_ in index:
        target[r, index[w_]] = 1.0
  held_out = [titles[i] for i in test]
  if vocab:
    decoder = fit_mlp(k_bow, simulated[train], target, "bce")
    out.update(bow_figures(decoder(upload[test]) > 0.0, vocab, held_out))
  else:  # no word occurs twice in the training half: the attacker predicts nothing
    out.update(bow_figures(np.zeros((len(test), 0), bool), vocab, held_out))
  return out
