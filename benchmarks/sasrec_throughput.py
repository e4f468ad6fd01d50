"""SASRec pre-training throughput: this project's JAX step vs a PyTorch SASRec.

Same shapes on both sides (d = 50, max length 10, 2 blocks, 1 head, batch 128, full
softmax over all items at every position, Adam); the reference is the straightforward
PyTorch model in `benchmarks/sasrec_torch.py` (tests check it computes the same outputs
as the Flax model). Each implementation runs in its own subprocess so its peak memory
is its own: host peak RSS on CPU, peak device bytes on GPU.

  python benchmarks/sasrec_throughput.py                  # CPU
  python benchmarks/sasrec_throughput.py --device=gpu     # GPU (JAX with CUDA, torch.cuda)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def random_batches(num_batches, batch, length, num_items, seed=0):
  """Left-padded random sequences of random length 2..length: [num_batches, B, L]."""
  rng = np.random.default_rng(seed)
  out = rng.integers(1, num_items + 1, size=(num_batches, batch, length)).astype(np.int32)
  lengths = rng.integers(2, length + 1, size=(num_batches, batch))
  out[np.arange(length)[None, None, :] < (length - lengths)[..., None]] = 0
  return out


def bench_jax(args) -> dict:
  import jax
  import optax

  if args.device == "cpu":
    jax.config.update("jax_platforms", "cpu")
  sys.path.insert(0, str(REPO))
  from sfubm_jax import sharding
  from sfubm_jax.models.sasrec import SASRec
  from sfubm_jax.training import seqrec_train as st

  device = jax.devices()[0]
  mesh = sharding.make_mesh((1, 1, 1), [device])
  model = SASRec(args.num_items, args.dim, args.blocks, 1, 0.2, args.max_len)
  tx = optax.adam(1e-3)
  state = st.make_state(model, tx, jax.random.key(0), args.max_len, mesh)
  step = st.jit_train_step(st.make_train_step(model, tx, jax.random.key(1)), state, mesh)
  # The training step sees max_len + 1 items (inputs [:-1] predict targets [1:]).
  data = random_batches(args.warmup + args.steps, args.batch, args.max_len + 1, args.num_items)
  data = jax.device_put(data, sharding.replicated(mesh))
  for i in range(args.warmup):
    state, loss = step(state, data[i])
  loss.block_until_ready()
  start = time.perf_counter()
  for i in range(args.warmup, args.warmup + args.steps):
    state, loss = step(state, data[i])
  loss.block_until_ready()
  seconds = time.perf_counter() - start
  peak = (device.memory_stats() or {}).get("peak_bytes_in_use") if args.device == "gpu" else None
  return {"impl": f"jax {jax.__version__} ({device.platform})", "seconds": seconds,
          "loss": float(loss), "peak_device_bytes": peak}


def bench_torch(args) -> dict:
  import torch

  sys.path.insert(0, str(REPO / "benchmarks"))
  from sasrec_torch import TorchSASRec

  dev = torch.device("cuda" if args.device == "gpu" and torch.cuda.is_available() else "cpu")
  torch.manual_seed(0)
  model = TorchSASRec(args.num_items, args.dim, args.blocks, 1, 0.2, args.max_len).to(dev)
  for p in model.parameters():  # Xavier-normal, as the reference implementation.
    if p.dim() > 1:
      torch.nn.init.xavier_normal_(p)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  data = random_batches(args.warmup + args.steps, args.batch, args.max_len + 1, args.num_items)
  data = torch.tensor(data, dtype=torch.long, device=dev)

  def step(seqs):
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    hidden = model(inputs)  # [B, L, d]
    logits = hidden @ model.item_emb.weight[1:].T  # [B, L, N]
    mask = (inputs != 0).float()
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), (targets - 1).clamp(min=0).reshape(-1),
        reduction="none")
    loss = (ce * mask.reshape(-1)).sum() / mask.sum().clamp(min=1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  model.train()
  for i in range(args.warmup):
    loss = step(data[i])
  if dev.type == "cuda":
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
  start = time.perf_counter()
  for i in range(args.warmup, args.warmup + args.steps):
    loss = step(data[i])
  final = float(loss)  # Waits for the device.
  seconds = time.perf_counter() - start
  peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
  return {"impl": f"torch {torch.__version__} ({dev.type}, {torch.get_num_threads()} threads)",
          "seconds": seconds, "loss": final, "peak_device_bytes": peak}


def run_child(args, impl: str) -> dict:
  cmd = [sys.executable, __file__, f"--impl={impl}", f"--device={args.device}",
         f"--num_items={args.num_items}", f"--steps={args.steps}", f"--warmup={args.warmup}",
         f"--batch={args.batch}", f"--dim={args.dim}", f"--max_len={args.max_len}",
         f"--blocks={args.blocks}"]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--num_items", type=int, default=10000)
  p.add_argument("--dim", type=int, default=50)
  p.add_argument("--max_len", type=int, default=10)
  p.add_argument("--blocks", type=int, default=2)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--impl", choices=("both", "jax", "torch"), default="both")
  args = p.parse_args()
  if args.impl != "both":
    result = bench_jax(args) if args.impl == "jax" else bench_torch(args)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["seqs_per_s"] = args.batch * args.steps / result["seconds"]
    print(json.dumps(result))
    return
  rows = [run_child(args, "jax"), run_child(args, "torch")]
  print(f"SASRec train step, d={args.dim} L={args.max_len} blocks={args.blocks} "
        f"batch={args.batch} items={args.num_items}, {args.steps} timed steps, "
        f"device={args.device}")
  for r in rows:
    dev_mem = (f", peak device {r['peak_device_bytes'] / 2**20:.1f} MiB"
               if r["peak_device_bytes"] else "")
    print(f"  {r['impl']:<45} {r['seqs_per_s']:>10.0f} seq/s  "
          f"peak RSS {r['peak_rss_mib']:.0f} MiB{dev_mem}  (loss {r['loss']:.3f})")
  print(f"  ratio jax / torch: {rows[0]['seqs_per_s'] / rows[1]['seqs_per_s']:.2f}x")


if __name__ == "__main__":
  main()
