"""Perturbation (SPEC §3): ours (jitted, symmetric tiles) against numpy brute force.

  python benchmarks/perturb_vs_numpy.py [--n 40000 --dim 768]

Both compute ê = e + λε (the same ε, drawn once with jax) and j*(i) = argmax_{j≠i}
cos(ê_i, ê_j). References, each the whole N × N similarity matrix in row blocks:
  numpy-f64: float64, as the tests' exact reference;
  numpy-f32: float32 BLAS, the strongest plain-numpy version.
Ours is timed after a warm-up call (compile time printed separately). Prints the speed
ratios (target ≥ 5× against the brute force) and the agreement of j*.
"""

import argparse
import os
import time

import jax
import numpy as np

from sfubm_jax.federation import perturb


def numpy_nearest_other(e_hat: np.ndarray, dtype, block: int = 2048) -> np.ndarray:
  x = e_hat.astype(dtype)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  out = np.empty(len(x), np.int64)
  for start in range(0, len(x), block):
    s = x[start : start + block] @ x.T  # [block, N]
    rows = np.arange(s.shape[0])
    s[rows, start + rows] = -np.inf
    out[start : start + block] = s.argmax(1)
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--n", type=int, default=40_000)
  parser.add_argument("--dim", type=int, default=768)
  parser.add_argument("--tile", type=int, default=2048)
  parser.add_argument("--noise_scale", type=float, default=0.1)
  parser.add_argument("--skip_f64", action="store_true")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  e = rng.standard_normal((args.n, args.dim)).astype(np.float32)
  e /= np.linalg.norm(e, axis=1, keepdims=True)
  print(f"e {e.shape} float32, λ={args.noise_scale}, tile={args.tile}; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; jax {jax.devices()[0].platform}")
  key = jax.random.key(0)
  ej = jax.device_put(e)

  def ours():
    upload, j_star = perturb.perturb(key, ej, args.noise_scale, tile=args.tile)
    return np.asarray(j_star)

  start = time.perf_counter()
  ours()
  print(f"ours: first call incl. compile {time.perf_counter() - start:.2f}s")
  start = time.perf_counter()
  j_ours = ours()
  t_ours = time.perf_counter() - start
  print(f"ours: {t_ours:.2f}s")
  e_hat = np.asarray(perturb.add_noise(key, ej, args.noise_scale))
  for name, dtype in [("numpy-f32", np.float32), ("numpy-f64", np.float64)]:
    if dtype == np.float64 and args.skip_f64:
      continue
    start = time.perf_counter()
    j_ref = numpy_nearest_other(e_hat, dtype)
    t_ref = time.perf_counter() - start
    print(f"{name}: {t_ref:.2f}s, speed ratio ×{t_ref / t_ours:.2f} (target ≥ 5), "
          f"j* agreement {np.mean(j_ref == j_ours):.5f}; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
