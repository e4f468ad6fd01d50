"""k-means: ours (jitted k-means++ + Lloyd) against scikit-learn, same data, same run.

  python benchmarks/kmeans_vs_sklearn.py [--n 80000 --dim 768 --k 100]

Both use greedy k-means++ (2 + ⌊ln K⌋ candidates), n_init=1, the same max_iter and tol
(note: ours stops when the largest centre shift < tol; scikit-learn when the summed
squared shift ≤ tol × mean feature variance, or when no label changes). Data: unit
vectors around 300 random directions (like perturbed text vectors). Ours is timed after
a warm-up call on the same shapes (compile time printed separately). Prints the speed
ratio (target ≥ 3×) and the inertia ratio (target ≤ 1.01).
"""

import argparse
import os
import time

import jax
import numpy as np
from sklearn.cluster import KMeans

from sfubm_jax.federation import kmeans


def make_data(n: int, d: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  directions = rng.standard_normal((300, d)).astype(np.float32)
  x = directions[rng.integers(0, 300, n)] + 1.5 * rng.standard_normal((n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--n", type=int, default=80_000)
  parser.add_argument("--dim", type=int, default=768)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--tol", type=float, default=1e-4)
  parser.add_argument("--max_iter", type=int, default=300)
  parser.add_argument("--seeds", type=int, default=2)
  args = parser.parse_args()
  x = make_data(args.n, args.dim)
  print(f"data {x.shape} float32, K={args.k}, tol={args.tol}, max_iter={args.max_iter}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; jax {jax.devices()[0].platform}")
  xj = jax.device_put(x)

  def ours(seed):
    res = kmeans.kmeans(jax.random.key(seed), xj, k=args.k, tol=args.tol, max_iter=args.max_iter)
    return float(res.inertia), int(res.iterations)  # float() waits for the result

  start = time.perf_counter()
  ours(123)
  print(f"ours: first call incl. compile {time.perf_counter() - start:.2f}s")
  rows = []
  for seed in range(args.seeds):
    start = time.perf_counter()
    inertia, iters = ours(seed)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    sk = KMeans(args.k, init="k-means++", n_init=1, tol=args.tol, max_iter=args.max_iter,
                random_state=seed).fit(x)
    t_sk = time.perf_counter() - start
    rows.append((t_ours, t_sk, inertia, sk.inertia_))
    print(f"seed {seed}: ours {t_ours:.2f}s ({iters} it, inertia {inertia:.2f}) | sklearn "
          f"{t_sk:.2f}s ({sk.n_iter_} it, inertia {sk.inertia_:.2f}) | speed ×{t_sk / t_ours:.2f}"
          f", inertia ratio {inertia / sk.inertia_:.4f}")
  t_ours, t_sk, i_ours, i_sk = np.mean(rows, axis=0)
  print(f"MEAN: ours {t_ours:.2f}s, sklearn {t_sk:.2f}s, speed ratio ×{t_sk / t_ours:.2f} "
        f"(target ≥ 3), inertia ratio {i_ours / i_sk:.4f} (target ≤ 1.01); "
        f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
