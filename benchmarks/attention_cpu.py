"""The backbones' attention core on this CPU: `attention.attend` vs the former einsum layout.

Both compute softmax(q kᵀ / √Dh over the causal keys) v with grouped K/V heads, float32:

  attend   heads before time: two plain batched matmuls over (B, K), the G·T query rows
           of a K/V head stacked (sfubm_jax/models/causal_lm/attention.py)
  former   einsums over [B, T, K, G, Dh] ("btkgd,bskd->bkgts", then back), as both
           backbones wrote it before 2026-12-02

Default shape: SmolLM2-135M's heads (9 query, 3 K/V, Dh 64) at the `:cpu` food training
batch (8 × 424). Prints one JSON line: median ms of the jitted forward and of forward +
backward (gradients of q, k, v) for each, their max difference, and former / attend.

  python benchmarks/attention_cpu.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _median_s(fn, *args, repeats: int) -> float:
  import jax

  jax.block_until_ready(fn(*args))  # compile and warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return sorted(times)[len(times) // 2]


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=424)
  ap.add_argument("--heads", type=int, default=9)
  ap.add_argument("--kv_heads", type=int, default=3)
  ap.add_argument("--head_dim", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=7)
  args = ap.parse_args(argv)
  sys.path.insert(0, str(REPO))
  import jax
  import jax.numpy as jnp

  from sfubm_jax.models.causal_lm.attention import attend

  b, t, n, kv, dh = args.batch, args.seq, args.heads, args.kv_heads, args.head_dim
  g = n // kv
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (b, t, n, dh))
  k = jax.random.normal(keys[1], (b, t, kv, dh))
  v = jax.random.normal(keys[2], (b, t, kv, dh))
  allowed = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (b, 1, t, t))

  def former(q, k, v):
    qg = q.reshape(b, t, kv, g, dh)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k) * dh**-0.5
    scores = jnp.where(allowed[:, :, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, n * dh)

  def ours(q, k, v):
    return attend(q, k, v, allowed, scale=dh**-0.5, dtype=jnp.float32)

  out = {"shape": {"batch": b, "seq": t, "heads": n, "kv_heads": kv, "head_dim": dh},
         "load": open("/proc/loadavg").read().split()[:3]}
  for name, fn in (("former", former), ("attend", ours)):
    fwd = jax.jit(fn)
    grad = jax.jit(jax.grad(lambda q, k, v, f=fn: jnp.sum(f(q, k, v) ** 2), argnums=(0, 1, 2)))
    out[name] = {"fwd_ms": round(1e3 * _median_s(fwd, q, k, v, repeats=args.repeats), 1),
                 "fwd_bwd_ms": round(1e3 * _median_s(grad, q, k, v, repeats=args.repeats), 1)}
  out["max_abs_diff"] = float(jnp.max(jnp.abs(jax.jit(former)(q, k, v) - jax.jit(ours)(q, k, v))))
  out["former_over_attend"] = {
      key: round(out["former"][key] / out["attend"][key], 2) for key in ("fwd_ms", "fwd_bwd_ms")}
  out["load_after"] = open("/proc/loadavg").read().split()[:3]
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
