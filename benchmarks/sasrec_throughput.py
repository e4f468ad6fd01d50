"""Stage-1 training steps on the real food sequences: ours vs PyTorch at the same math.

  python benchmarks/sasrec_throughput.py [--threads=1] [--windows=7 --steps=20]

Data: the shipped Amazon Grocery (food) files preprocessed with the paper config
(`configs/food_kitchen.py`), training histories in the seeded batches the pretrain stage
uses (batch 128; SASRec d 50, 2 blocks, 1 head, dropout 0.2, Adam 1e-3).

Rows (all in this one process; timed windows interleave the rows round-robin, so load
changes hit every row alike; median and min–max seq/s over the windows):
  jax real      this project's step: cross-entropy at the real positions only
                (`position_ce.weighted_ce`, gather buffer = the run's `position_capacity`)
  jax all       the previous step: logits at every position, padding masked out
  torch all     `benchmarks/sasrec_torch.py`'s SASRec (same outputs as ours, tested),
                CE over all positions with padding masked out (pmixer/SASRec.pytorch's
                full-softmax variant), eager and `torch.compile`; the faster is kept
  torch real    the same with `hidden[mask]` before the projection (eager) or the same
                fixed-capacity gather as ours (compiled)
  gru4rec       ours (real / all positions) against `benchmarks/gru4rec_torch.py`
                (nn.GRU over packed sequences, tested equal), all / real positions
  fkd           ours (real / all positions) against `benchmarks/fkd_torch.py` (the same
                loss and gradients, tested), L_rec at the real positions; batches are
                [history | stored sequence] as the fkd stage feeds them
GFLOP/s: XLA's cost analysis of our step (the torch rows use the JAX count of the same
math). The machine's matmul limit is measured in the same run ([2048, 768] × [768, 2048]
float32, XLA and torch).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def parse() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--threads", type=int, default=2, help="XLA and torch intra-op threads")
  p.add_argument("--windows", type=int, default=7)
  p.add_argument("--steps", type=int, default=20, help="steps per timed window")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--compile", choices=("both", "all", "real", "none"), default="both",
                 help="which torch rows also run under torch.compile (minutes to compile)")
  p.add_argument("--compile_others", action="store_true",
                 help="also try torch.compile on the GRU4Rec and FKD reference rows")
  p.add_argument("--no_fkd", action="store_true")
  return p.parse_args()


ARGS = parse()
if ARGS.threads == 1:  # before jax is imported
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_platforms", "cpu")
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from sfubm_jax import sharding  # noqa: E402
from sfubm_jax.data import sources  # noqa: E402
from sfubm_jax.data.preprocess import PreprocessParams, preprocess  # noqa: E402
from sfubm_jax.models import fkd  # noqa: E402
from sfubm_jax.models.gru4rec import GRU4Rec  # noqa: E402
from sfubm_jax.models.sasrec import SASRec  # noqa: E402
from sfubm_jax.training import fkd_train  # noqa: E402
from sfubm_jax.training import seqrec_train as st  # noqa: E402
from sfubm_jax.training.position_ce import position_capacity  # noqa: E402


def food_sequences():
  """The paper config's food training histories [U, L], stored sequences [U, L], items."""
  spec = importlib.util.spec_from_file_location("food_kitchen", REPO / "configs/food_kitchen.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(None)
  split, _ = preprocess(sources.read_domain(config, "food"),
                        PreprocessParams.from_config(config, "food"))
  return split.history("train")[0], split.seqs.astype(np.int32), split.num_items, config


def all_position_loss(model, params, seqs, key):
  """The previous `next_item_loss`: logits at every position, padding masked out."""
  inputs, targets = seqs[:, :-1], seqs[:, 1:]
  hidden = model.apply(params, inputs, deterministic=False, rngs={"dropout": key})
  logits = jnp.einsum("bld,nd->bln", hidden, params["params"]["item_emb"]["embedding"][1:])
  mask = (inputs != 0).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets - 1, 0))
  return (ce * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def all_position_step(model, tx, base_key):
  def step(state, seqs):
    key = jax.random.fold_in(base_key, state["step"])
    loss, grads = jax.value_and_grad(lambda p: all_position_loss(model, p, seqs, key))(
        state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt": opt,
            "step": state["step"] + 1}, loss
  return step


class Row:
  """A jitted (or torch) step with its own state, fed the same batches."""

  def __init__(self, name, step, state, flops):
    self.name, self.step, self.state, self.flops = name, step, state, flops
    self.rates, self.loss = [], float("nan")

  def run(self, batches):
    for b in batches:
      self.state, loss = self.step(self.state, b)
    self.loss = float(loss)  # waits for the device


def jax_rows(model_name, model, seqs, num_items, batch, mesh, cap):
  tx = optax.adam(1e-3)
  rows = []
  for label, make in (
      ("real", lambda: st.make_train_step(model, tx, jax.random.key(1), capacity=cap)),
      ("all", lambda: all_position_step(model, tx, jax.random.key(1)))):
    state = st.make_state(model, tx, jax.random.key(0), seqs.shape[1], mesh)
    step = st.jit_train_step(make(), state, mesh)
    shape = jax.ShapeDtypeStruct((batch, seqs.shape[1]), jnp.int32)
    flops = step.lower(state, shape).compile().cost_analysis()["flops"]
    rows.append(Row(f"jax {model_name} {label}", step, state, flops))
  return rows


def fkd_rows(seqs, num_items, batch, cap, sasrec_params, sasrec):
  tx = optax.adam(1e-4)
  rng = np.random.default_rng(0)  # C as the server sends it: one of K = 100 centroids per item
  text = rng.normal(size=(100, 384)).astype(np.float32)[rng.integers(0, 100, num_items + 1)]
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  encode = jax.jit(lambda p, s: sasrec.apply(p, s, deterministic=True))
  hp = fkd.FKDHParams(encode=encode, dim=50, text_dim=384)
  sasrec_params = jax.tree.map(jnp.copy, sasrec_params)  # the SASRec rows donate theirs
  frozen = fkd.frozen_tables(sasrec_params, sasrec_params["params"]["item_emb"]["embedding"],
                             text, text)
  rows = []
  for label, c in (("real", cap), ("all", None)):
    params = fkd.init_params(jax.random.PRNGKey(0), hp)
    state = {"params": params, "opt": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    fn = jax.jit(fkd_train.make_train_step(hp, tx, jax.random.key(1), c), donate_argnums=0)
    shape = jax.ShapeDtypeStruct((batch, 2 * seqs.shape[1]), jnp.int32)
    flops = fn.lower(state, frozen, shape).compile().cost_analysis()["flops"]
    rows.append(Row(f"jax fkd {label}" + (" (cap=None)" if c is None else ""),
                    lambda s, b, fn=fn: fn(s, frozen, b), state, flops))
  return rows, text


def torch_step(params, loss_fn, lr, compiled):
  """An Adam step on `loss_fn(batch)` (optionally `torch.compile`d) in the Row interface."""
  import torch

  opt = torch.optim.Adam(params, lr=lr)
  loss_c = torch.compile(loss_fn, dynamic=False) if compiled else loss_fn

  def step(_, b):
    loss = loss_c(b)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return None, loss.detach()

  return step


def next_item_ce(hidden, table, seqs_t, positions, cap):
  """CE of hidden [B, L-1, d] against the next items, at all or only the real positions."""
  import torch

  targets, mask = seqs_t[:, 1:], seqs_t[:, :-1] != 0
  labels = (targets - 1).clamp(min=0)
  if positions == "all":
    logits = hidden @ table.T  # [B, L, N]
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    m = mask.reshape(-1).float()
    return (ce * m).sum() / m.sum().clamp(min=1)
  if cap is None:  # a careful eager user: boolean indexing, dynamic size
    return torch.nn.functional.cross_entropy(hidden[mask] @ table.T, labels[mask])
  # fixed-size gather (as ours) so one compiled graph serves every batch
  flat = mask.reshape(-1)
  idx = torch.nonzero(flat, as_tuple=True)[0]
  idx = torch.nn.functional.pad(idx, (0, cap - idx.shape[0]))
  w = torch.arange(cap) < flat.sum()
  h = hidden.reshape(-1, hidden.shape[-1])[idx]
  ce = torch.nn.functional.cross_entropy(h @ table.T, labels.reshape(-1)[idx],
                                         reduction="none")
  return (ce * w).sum() / w.sum()


def torch_rows(seqs, fkd_data, num_items, batch, cap, flops, text, sasrec_params):
  """Reference rows: SASRec, GRU4Rec (all / real positions) and FKD in PyTorch.

  flops: JAX cost-analysis counts of the same math, keyed by model and positions.
  """
  import torch
  from fkd_torch import TorchFKD, fkd_loss
  from gru4rec_torch import TorchGRU4Rec
  from sasrec_torch import TorchSASRec
  from sasrec_torch import load_flax_params as load_sasrec

  torch.set_num_threads(ARGS.threads)
  length = seqs.shape[1] - 1

  def seqrec(model_name, positions, compiled):
    torch.manual_seed(0)
    if model_name == "sasrec":
      model = TorchSASRec(num_items, 50, 2, 1, 0.2, length)
    else:
      model = TorchGRU4Rec(num_items, 50, 1, 0.2)
    for p in model.parameters():
      if p.dim() > 1:
        torch.nn.init.xavier_normal_(p)
    model.train()
    gather = cap if compiled and positions == "real" else None
    return torch_step(model.parameters(), lambda b: next_item_ce(
        model(b[:, :-1]), model.item_emb.weight[1:], b, positions, gather), 1e-3, compiled)

  def fkd_step(compiled):
    torch.manual_seed(0)
    sasrec = TorchSASRec(num_items, 50, 2, 1, 0.2, length + 1).eval()
    load_sasrec(sasrec, sasrec_params)
    for p in sasrec.parameters():
      p.requires_grad_(False)
    nets = TorchFKD(50, text.shape[1])
    from fkd_torch import text_tables

    t = torch.from_numpy(text)
    rows, index = text_tables(t)
    frozen = {"item_emb": sasrec.item_emb.weight, "text_rows": rows, "text_index": index,
              "text_local": t}
    half = seqs.shape[1]
    return torch_step(nets.parameters(), lambda b: fkd_loss(
        nets, sasrec, frozen, b[:, :half], b[:, half:]), 1e-4, compiled)

  plan = []
  for model_name in ("sasrec", "gru4rec"):
    for positions in ("all", "real"):
      for compiled in (False, True):
        if compiled and not (ARGS.compile in ("both", positions) and (
            model_name == "sasrec" or ARGS.compile_others)):
          continue
        plan.append((f"torch {model_name} {positions} ({'compile' if compiled else 'eager'})",
                     flops[model_name, positions],
                     lambda m=model_name, p=positions, c=compiled: seqrec(m, p, c)))
  if text is not None:
    for compiled in (False, True) if ARGS.compile_others else (False,):
      plan.append((f"torch fkd real ({'compile' if compiled else 'eager'})",
                   flops["fkd", "real"], lambda c=compiled: fkd_step(c)))

  rows = []
  for name, row_flops, build in plan:
    data = torch.as_tensor(fkd_data if "fkd" in name else seqs).long()
    try:
      step = build()
      start = time.perf_counter()
      for b in data[:3 * batch].split(batch):
        step(None, b)
      print(f"  {name}: warm-up {time.perf_counter() - start:.1f}s", flush=True)
    except Exception as err:  # noqa: BLE001  torch.compile needs a C++ toolchain
      print(f"  {name}: failed ({type(err).__name__}: {err}); row dropped", flush=True)
      continue
    rows.append(Row(name, step, None, row_flops))
  return rows


def matmul_gflops(threads):
  """Best-of-5 GFLOP/s of [2048, 768] × [768, 2048] float32 in XLA and in torch."""
  import torch

  a = np.random.default_rng(0).normal(size=(2048, 768)).astype(np.float32)
  flops = 2 * 2048 * 2048 * 768
  f = jax.jit(lambda x, y: x @ y.T)
  x, y = jnp.asarray(a), jnp.asarray(a[::-1].copy())
  f(x, y).block_until_ready()
  out = {}
  ts = []
  for _ in range(5):
    t = time.perf_counter()
    f(x, y).block_until_ready()
    ts.append(time.perf_counter() - t)
  out["xla"] = flops / min(ts) / 1e9
  ta, tb = torch.from_numpy(a), torch.from_numpy(a[::-1].copy())
  ts = []
  for _ in range(5):
    t = time.perf_counter()
    ta @ tb.T
    ts.append(time.perf_counter() - t)
  out["torch"] = flops / min(ts) / 1e9
  return out


def main() -> None:
  seqs, stored, num_items, config = food_sequences()
  fkd_data = np.concatenate([seqs, stored], axis=1)  # [history | stored], as the fkd stage
  batch, seed = ARGS.batch, config.sasrec.seed
  cap = position_capacity(seqs, batch, seed, config.sasrec.epochs)
  fkd_cap = position_capacity(seqs, batch, seed, config.fkd.epochs)
  mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
  per_batch = (seqs[:, :-1] != 0).sum() / len(seqs) * batch
  print(f"food (paper config): {len(seqs)} training histories, {num_items} items, L={seqs.shape[1]}"
        f"; batch {batch}: {batch * (seqs.shape[1] - 1)} positions, {per_batch:.0f} real on "
        f"average, gather buffer {cap}; {ARGS.threads} thread(s); load "
        f"{open('/proc/loadavg').read().split()[:3]}", flush=True)
  sasrec = SASRec(num_items, 50, 2, 1, 0.2, seqs.shape[1])
  rows = jax_rows("sasrec", sasrec, seqs, num_items, batch, mesh, cap)
  flops = {("sasrec", "real"): rows[0].flops, ("sasrec", "all"): rows[1].flops}
  sasrec_params = jax.tree.map(np.asarray, rows[0].state["params"])  # before donation
  rows += jax_rows("gru4rec", GRU4Rec(num_items, 50, 1, 0.2, seqs.shape[1]), seqs,
                   num_items, batch, mesh, cap)
  flops["gru4rec", "real"], flops["gru4rec", "all"] = rows[2].flops, rows[3].flops
  text = None
  if not ARGS.no_fkd:
    more, text = fkd_rows(seqs, num_items, batch, fkd_cap, rows[0].state["params"], sasrec)
    rows += more
    flops["fkd", "real"] = more[0].flops
  rows += torch_rows(seqs, fkd_data, num_items, batch, cap, flops, text, sasrec_params)

  import torch
  epoch = 0
  batches, fkd_batches = [], []
  while len(batches) < ARGS.steps * (ARGS.windows + 1):
    batches += st.epoch_batches(seqs, batch, seed, epoch)
    fkd_batches += st.epoch_batches(fkd_data, batch, seed, epoch)
    epoch += 1
  data = {("jax", False): [jnp.asarray(b) for b in batches],
          ("torch", False): [torch.as_tensor(b).long() for b in batches],
          ("jax", True): [jnp.asarray(b) for b in fkd_batches],
          ("torch", True): [torch.as_tensor(b).long() for b in fkd_batches]}

  def feed(r):
    return data[r.name.split()[0], " fkd " in f" {r.name} "]

  for r in rows:  # warm-up window (compiles)
    r.run(feed(r)[: ARGS.steps])
  loads = []
  for w in range(1, ARGS.windows + 1):
    part = slice(w * ARGS.steps, (w + 1) * ARGS.steps)
    for r in rows:
      start = time.perf_counter()
      r.run(feed(r)[part])
      r.rates.append(batch * ARGS.steps / (time.perf_counter() - start))
    loads.append(float(open("/proc/loadavg").read().split()[0]))
  limit = matmul_gflops(ARGS.threads)
  print(f"matmul limit (same run): XLA {limit['xla']:.0f} GFLOP/s, torch {limit['torch']:.0f} "
        f"GFLOP/s; load during windows {min(loads):.1f}–{max(loads):.1f}")
  print(f"{'row':<34}{'seq/s median':>13}{'min–max':>16}{'GFLOP/s':>9}{'of limit':>9}  loss")
  best = {}
  for r in rows:
    med = float(np.median(r.rates))
    gf = r.flops * med / batch / 1e9
    print(f"{r.name:<34}{med:>13.0f}{min(r.rates):>8.0f}–{max(r.rates):<7.0f}{gf:>9.1f}"
          f"{gf / limit['xla']:>9.1%}  {r.loss:.3f}")
    best[r.name] = med

  def best_of(prefix):
    return max((v for k, v in best.items() if k.startswith(prefix)), default=None)

  for m in ("sasrec", "gru4rec", "fkd"):
    ours = best.get(f"jax {m} real")
    if ours is None:
      continue
    for positions in ("all", "real"):
      ref = best_of(f"torch {m} {positions}")
      if ref:
        same = " (same math: target >= 2x)" if positions == "real" else ""
        print(f"ratio: jax {m} real / best torch {m} {positions} {ours / ref:.2f}x{same}")
    names = [k for k in best if k.startswith(f"jax {m} ")]
    if len(names) == 2:
      print(f"ratio: jax {m} real / jax {m} all {best[names[0]] / best[names[1]]:.2f}x")


if __name__ == "__main__":
  main()
