"""Scale check: perturbation plus clustering of N = 10^6 synthetic items, peak RSS.

  python benchmarks/federation_scale.py [--n 1000000 --dim 384 --k 100 --tile 2048]

Runs one client's perturbation (SPEC §3, tiled: O(tile²) memory), its `sim` figure,
optionally `reid@1` (--reid, a second N² pass), then k-means++ and Lloyd (SPEC §4,
chunked: O(chunk × K)) on the upload. Prints each phase's wall time and the peak
resident memory of the process (target < 8 GiB). `--plan_only` compiles the
perturbation at this size and prints XLA's temp-buffer estimate without running it.
"""

import argparse
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from sfubm_jax.federation import kmeans, perturb, privacy


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB


def synthetic_vectors(n: int, d: int, seed: int = 0, block: int = 100_000) -> np.ndarray:
  """Unit vectors around 1000 random directions, generated in blocks (one [N, d] array)."""
  rng = np.random.default_rng(seed)
  directions = rng.standard_normal((1000, d)).astype(np.float32)
  out = np.empty((n, d), np.float32)
  for s in range(0, n, block):
    m = min(block, n - s)
    v = directions[rng.integers(0, 1000, m)] + rng.standard_normal((m, d), np.float32)
    out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--n", type=int, default=1_000_000)
  parser.add_argument("--dim", type=int, default=384)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--tile", type=int, default=2048)
  parser.add_argument("--max_iter", type=int, default=300)
  parser.add_argument("--tol", type=float, default=1e-4)
  parser.add_argument("--noise_scale", type=float, default=0.1)
  parser.add_argument("--reid", action="store_true", help="also compute reid@1 (N² pass)")
  parser.add_argument("--skip_perturb", action="store_true", help="cluster e directly")
  parser.add_argument("--plan_only", action="store_true")
  args = parser.parse_args()
  print(f"N={args.n} d={args.dim} K={args.k} tile={args.tile}; device "
        f"{jax.devices()[0].device_kind}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        flush=True)
  key = jax.random.key(0)
  if args.plan_only:
    shape = jax.ShapeDtypeStruct((args.n, args.dim), jnp.float32)
    compiled = jax.jit(lambda e: perturb.perturb(key, e, args.noise_scale, tile=args.tile)
                       ).lower(shape).compile()
    mem = compiled.memory_analysis()
    print(f"perturb plan: temp {mem.temp_size_in_bytes / 2**30:.2f} GiB, output "
          f"{mem.output_size_in_bytes / 2**30:.2f} GiB, argument "
          f"{mem.argument_size_in_bytes / 2**30:.2f} GiB (N² would be "
          f"{args.n**2 * 4 / 2**30:.0f} GiB)")
    return

  t0 = time.perf_counter()
  e = jax.device_put(synthetic_vectors(args.n, args.dim))
  e.block_until_ready()
  print(f"data: {time.perf_counter() - t0:.1f}s, peak RSS {peak_rss_gib():.2f} GiB", flush=True)

  if args.skip_perturb:
    upload = e
  else:
    t0 = time.perf_counter()
    upload, j_star = perturb.perturb(key, e, args.noise_scale, tile=args.tile)
    upload.block_until_ready()
    t_perturb = time.perf_counter() - t0
    sim = float(privacy.mean_cosine(e, upload))
    print(f"perturb: {t_perturb:.1f}s (incl. compile), sim {sim:.4f}, peak RSS "
          f"{peak_rss_gib():.2f} GiB", flush=True)
    del j_star
    if args.reid:
      t0 = time.perf_counter()
      reid = float(privacy.reidentification_at_1(upload, e, tile=args.tile))
      print(f"reid@1: {time.perf_counter() - t0:.1f}s, reid@1 {reid:.5f}, peak RSS "
            f"{peak_rss_gib():.2f} GiB", flush=True)

  t0 = time.perf_counter()
  res = kmeans.kmeans(jax.random.key(1), upload, k=args.k, tol=args.tol, max_iter=args.max_iter)
  inertia = float(res.inertia)
  t_km = time.perf_counter() - t0
  sizes = np.bincount(np.asarray(res.labels), minlength=args.k)
  print(f"k-means: {t_km:.1f}s (incl. compile), {int(res.iterations)} iterations, inertia "
        f"{inertia:.1f}, empty clusters {int(np.sum(sizes == 0))}, peak RSS "
        f"{peak_rss_gib():.2f} GiB", flush=True)
  print(f"PEAK RSS {peak_rss_gib():.2f} GiB (target < 8)")


if __name__ == "__main__":
  main()
