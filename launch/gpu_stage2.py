"""Stage 2 at 7B shapes on a GPU: the train loop, evaluation, and PyTorch on the same batch.

The device checks of issue 15 in one command. For each family (OPT-6.7B shapes; Llama-3-8B
shapes with `--families=opt,llama`), random bf16 weights built on the device, each part in
its own process (so each peak-memory figure is that part's alone):

  torch  PyTorch `transformers` (`*ForCausalLM`, sdpa attention, bf16) on the same batch:
         the Stage 2 step (token embeddings with the soft prompts P_u/P_i spliced in, a
         forward with logits on the answer span only, the answer loss, backward to the
         projectors, Adam on them; the LLM frozen) and HF `generate` (greedy, forced to
         `new_tokens`) on the eval prompts.
  train  launch/gpu_smoke.py: our jitted Stage 2 step, `--steps` timed steps; step time,
         tokens/s, MFU (FLOP model in gpu_smoke.py), XLA's compile-time bytes, the
         allocator's peak.
  eval   what the eval stage runs on one batch of `eval_batch` users: one prompt pass whose
         KV cache serves greedy decoding of `new_tokens` tokens and the likelihood ranking
         of 20 candidates packed on the cache, in chunks of `memory.rank_chunk_size` at
         `llm.eval_memory_gb` = 32 (`stage2.make_eval_fn`); then greedy decoding alone
         (`decoding.make_greedy_generate`) on the same prompts, for the ratio to HF.
  train_remat       `train` with `llm.remat` (decoder layers rematerialised): its peak.
  train_all_logits  `train` with vocabulary logits at every position, the step before the
                    answer-span logits (`stage2.answer_span`): that change's gain at 7B.
  train_cudnn       `train` with `attention_impl="cudnn"` (fused attention; GPU only).

The main parts (torch, train, eval) run for every family before the extra ones.

Shapes are those of benchmarks/stage2_memory.py (paper config): train batch 8 × 664
(prompt P = 632, answer A = 32, 29 soft-prompt slots), eval batch 16 × 632, 20 candidate
answers of up to 32 tokens, `new_tokens` 32 (= A, the eval stage's default budget); no stop
token, so every row decodes all 32 tokens. Every part prints one `RESULT {json}` line; the
parent appends each to OUT/gpu_stage2.jsonl as it arrives, and at the end writes
OUT/gpu_stage2.json (versions, parts, ratios) and prints a summary table. A part that fails
or outruns its time is recorded as such; the other parts still run.

  python launch/gpu_stage2.py --out=DIR                       # OPT then Llama, ~5 min (H200)
  python launch/gpu_stage2.py --families=opt --parts=train    # one part
  python launch/gpu_stage2.py --small --out=DIR               # CPU check of every code path
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

PARTS = ("torch", "train", "eval", "train_remat", "train_all_logits", "train_cudnn")
EXTRA = PARTS[3:]  # run after the main parts of every family
FULL = dict(prompt=632, answer=32, train_batch=8, eval_batch=16, candidates=20, new_tokens=32,
            steps=24, memory_gb=32.0, hidden=128, lr=1e-4)
SMALL = dict(prompt=48, answer=8, train_batch=8, eval_batch=8, candidates=20, new_tokens=8,
             steps=3, memory_gb=32.0, hidden=16, lr=1e-3)
RESULT = "RESULT "


def smoke():
  spec = importlib.util.spec_from_file_location("gpu_smoke", REPO / "launch" / "gpu_smoke.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sizes(small: bool) -> dict:
  return dict(SMALL if small else FULL)


def shape_of(family: str, small: bool) -> dict:
  return dict(smoke().SHAPES[(family, small)])


def train_batch(family: str, small: bool):
  """The host batch both frameworks train on (gpu_smoke.synthetic_batch, seed 0)."""
  import numpy as np

  g, z, shape = smoke(), sizes(small), shape_of(family, small)
  seq = min(z["prompt"] + z["answer"], shape["max_position_embeddings"])
  return g.synthetic_batch(np.random.default_rng(0), z["train_batch"], seq, g.SLOTS,
                           z["answer"], shape["vocab_size"], g.USER_DIM)


def eval_inputs(family: str, small: bool):
  """(prompt batch [E, P], answers [E, C, A], answer_mask [E, C, A]) of one eval batch."""
  import numpy as np

  g, z, shape = smoke(), sizes(small), shape_of(family, small)
  rng = np.random.default_rng(1)
  e, p, a, c = z["eval_batch"], z["prompt"], z["answer"], z["candidates"]
  batch = g.synthetic_batch(rng, e, p + 2, g.SLOTS, 1, shape["vocab_size"], g.USER_DIM)
  batch = {k: batch[k] for k in ("input_ids", "attention_mask", "item_pos", "item_ids",
                                 "user_pos", "user_vecs")}
  batch["input_ids"], batch["attention_mask"] = (batch["input_ids"][:, :p],
                                                 batch["attention_mask"][:, :p])
  answers = rng.integers(4, shape["vocab_size"], (e, c, a)).astype(np.int32)
  lengths = rng.integers(max(1, a // 4), a + 1, (e, c))
  mask = (np.arange(a)[None, None] < lengths[..., None]).astype(np.float32)
  return batch, answers * mask.astype(np.int32), mask


def items_table():
  import numpy as np

  g = smoke()
  return np.random.default_rng(0).normal(size=(g.NUM_ITEMS + 1, g.ITEM_DIM)).astype(np.float32)


# ------------------------------------------------------------------------------ PyTorch

def run_torch(family: str, small: bool) -> dict:
  import numpy as np
  import torch
  import transformers

  g, z, shape = smoke(), sizes(small), shape_of(family, small)
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
  dtype = torch.float32 if small else torch.bfloat16
  out = {"framework": "torch", "torch": torch.__version__,
         "transformers": transformers.__version__,
         "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
  if family == "opt":
    cfg, cls = transformers.OPTConfig(**shape, dropout=0.0), transformers.OPTForCausalLM
  else:
    cfg, cls = transformers.LlamaConfig(**shape), transformers.LlamaForCausalLM
  t0 = time.perf_counter()
  with torch.device(dev):
    model = cls._from_config(cfg, dtype=dtype, attn_implementation="sdpa").eval()
  model.requires_grad_(False)
  d_llm = model.get_input_embeddings().weight.shape[1]
  torch.manual_seed(0)
  user = torch.nn.Sequential(torch.nn.Linear(g.USER_DIM, z["hidden"]),
                             torch.nn.GELU(approximate="tanh"),
                             torch.nn.Linear(z["hidden"], d_llm)).to(dev)
  item = torch.nn.Sequential(torch.nn.Linear(g.ITEM_DIM, z["hidden"]), torch.nn.Tanh(),
                             torch.nn.Linear(z["hidden"], d_llm)).to(dev)
  opt = torch.optim.Adam([*user.parameters(), *item.parameters()], lr=z["lr"])
  sync()
  out["init_s"] = time.perf_counter() - t0

  host = train_batch(family, small)
  b = {k: torch.from_numpy(np.asarray(v)).to(dev) for k, v in host.items()}
  items = torch.from_numpy(items_table()).to(dev)
  lm = host["loss_mask"]
  keep = int(lm.shape[1] - np.flatnonzero(lm.any(axis=0))[0])  # = stage2.answer_span
  rows = torch.arange(b["input_ids"].shape[0], device=dev)
  mask = b["attention_mask"].long()

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
      embeds = model.get_input_embeddings()(b["input_ids"].long())
    p_u = user(b["user_vecs"])
    p_i = item(items[b["item_ids"].long()])
    embeds = embeds.clone()
    embeds[rows[:, None], b["item_pos"].long()] = p_i.to(embeds.dtype)
    embeds[rows, b["user_pos"].long()] = p_u.to(embeds.dtype)
    logits = model(inputs_embeds=embeds, attention_mask=mask,
                   logits_to_keep=keep).logits.float()  # [B, keep, V]
    labels = b["labels"][:, -keep:].long()
    weights = b["loss_mask"][:, -keep:]
    nll = torch.logsumexp(logits, -1) - logits.gather(-1, labels[..., None])[..., 0]
    loss = (nll * weights).sum() / weights.sum()
    loss.backward()
    opt.step()
    return loss

  steps = z["steps"]
  t0 = time.perf_counter()
  first = float(step())
  sync()
  out["first_step_s"] = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    loss = float(step())  # syncs
    times.append(time.perf_counter() - t0)
  seq = host["input_ids"].shape[1]
  step_s = float(np.median(times))
  flops = g.step_flops(shape, host["input_ids"].shape[0], seq, keep)
  peak = g.peak_tflops(out["device"])
  out.update(batch=host["input_ids"].shape[0], seq=seq, logits_kept=keep, steps=steps,
             step_s_median=step_s, step_s_min=float(np.min(times)),
             tokens_per_s=host["input_ids"].size / step_s, tflops=flops / step_s / 1e12,
             mfu=flops / step_s / 1e12 / peak if peak else None, loss_first=first,
             loss_last=loss)
  if dev == "cuda":
    out["step_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    torch.cuda.reset_peak_memory_stats()

  batch, _, _ = eval_inputs(family, small)
  ids = torch.from_numpy(batch["input_ids"]).long().to(dev)
  pmask = torch.from_numpy(batch["attention_mask"]).long().to(dev)
  n = z["new_tokens"]

  def decode():
    with torch.no_grad():
      return model.generate(input_ids=ids, attention_mask=pmask, do_sample=False,
                            max_new_tokens=n, min_new_tokens=n, pad_token_id=cfg.pad_token_id)

  t0 = time.perf_counter()
  tokens = decode()
  sync()
  out["decode_first_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(2):
    decode()
  sync()
  seconds = (time.perf_counter() - t0) / 2
  out.update(decode_batch=ids.shape[0], prompt_len=ids.shape[1], new_tokens=n,
             decoded=int(tokens.shape[1] - ids.shape[1]), decode_s=seconds,
             decode_tokens_per_s=ids.shape[0] * n / seconds)
  if dev == "cuda":
    out["decode_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
  return out


# ------------------------------------------------------------------------------ ours: eval

def run_eval(family: str, small: bool) -> dict:
  import flax
  import jax
  import jax.numpy as jnp
  import numpy as np

  from sfubm_jax import sharding
  from sfubm_jax.llm import memory, stage2
  from sfubm_jax.llm.context import decode_budget
  from sfubm_jax.llm.decoding import make_greedy_generate
  from sfubm_jax.models.causal_lm import backbone
  from sfubm_jax.models.projector import SoftPrompts

  g, z, shape = smoke(), sizes(small), shape_of(family, small)
  dtype = "float32" if small else "bfloat16"
  extra = {"dropout": 0.0} if family == "opt" else {}
  cfg = backbone.config_class(family)(**shape, dtype=dtype, param_dtype=dtype, **extra)
  mesh = sharding.make_mesh((1, -1, 1))
  kind = jax.devices()[0].device_kind
  out = {"framework": "jax", "jax": jax.__version__, "flax": flax.__version__,
         "device": kind, "devices": jax.device_count()}
  t0 = time.perf_counter()
  params = jax.block_until_ready(backbone.init_random(cfg, jax.random.key(0), mesh=mesh))
  out["init_s"] = time.perf_counter() - t0

  model = stage2.Stage2Model(backbone.build(cfg), SoftPrompts(out_dim=cfg.embed_dim,
                                                              hidden=z["hidden"]))
  rep = sharding.replicated(mesh)
  trainable = {"prompts": jax.device_put(model.init_prompts(jax.random.key(1), g.USER_DIM,
                                                            g.ITEM_DIM), rep), "llm": {}}
  _, frozen_llm = stage2.split_llm_params(params, "frozen")
  frozen = {"llm": frozen_llm, "items": jax.device_put(jnp.asarray(items_table()), rep)}
  batch, answers, answer_mask = eval_inputs(family, small)
  put = lambda v: jax.device_put(v, sharding.batch_sharding(mesh, np.ndim(v)))
  batch = {k: put(v) for k, v in batch.items()}
  answers, answer_mask = put(answers), put(answer_mask)
  e, p = batch["input_ids"].shape
  c, a = answers.shape[1:]
  per_device = e // sharding.batch_divisor(mesh)
  c_chunk = memory.rank_chunk_size(cfg, batch_size=per_device, prompt_len=p, answer_len=a,
                                   num_candidates=c, memory_gb=z["memory_gb"])
  n = decode_budget(z["new_tokens"], a)
  fn = jax.jit(stage2.make_eval_fn(model, "sum", c_chunk, max_new_tokens=n, stop_ids=(),
                                   pad_id=cfg.pad_token_id))
  args = (trainable, frozen, batch, answers, answer_mask)
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  out["eval_compile_s"] = time.perf_counter() - t0
  out.update({f"eval_{k}": v for k, v in g.xla_bytes(compiled).items()})
  t0 = time.perf_counter()
  tokens, scores = jax.block_until_ready(compiled(*args))
  out["eval_first_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(2):
    tokens, scores = jax.block_until_ready(compiled(*args))
  seconds = (time.perf_counter() - t0) / 2
  ranked = float(np.asarray(answer_mask).sum())
  out.update(eval_batch=e, prompt_len=p, candidates=c, answer_len=a, rank_chunk=c_chunk,
             pack_len=c_chunk * a, new_tokens=n, eval_s=seconds, users_per_s=e / seconds,
             eval_tokens_per_s=(e * p + e * n + ranked) / seconds,
             eval_finite=bool(np.isfinite(np.asarray(scores)).all()),
             decoded=int(tokens.shape[1]), eval_peak_gb=g.device_peak_gb())

  embeds = jax.jit(lambda t, f, b: model.embed(t, f, b))(trainable, frozen, batch)
  generate = make_greedy_generate(model.llm, max_new_tokens=n, eos_token_ids=())
  t0 = time.perf_counter()
  greedy = jax.block_until_ready(generate(params, embeds, batch["attention_mask"]))
  out["decode_first_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(2):
    jax.block_until_ready(generate(params, embeds, batch["attention_mask"]))
  seconds = (time.perf_counter() - t0) / 2
  out.update(decode_s=seconds, decode_tokens_per_s=e * n / seconds,
             decode_matches_eval=bool(np.array_equal(np.asarray(greedy), np.asarray(tokens))),
             # where they differ (bf16 on a GPU): how much, and from which token on
             decode_equal_token_share=float((np.asarray(greedy) == np.asarray(tokens)).mean()),
             decode_equal_first_token_share=float(
                 (np.asarray(greedy)[:, 0] == np.asarray(tokens)[:, 0]).mean()),
             peak_gb=g.device_peak_gb())
  return out


def run_train(family: str, small: bool, flags: tuple[str, ...] = ()) -> dict:
  z = sizes(small)
  argv = [f"--family={family}", f"--batch={z['train_batch']}", f"--steps={z['steps']}",
          f"--seq={z['prompt'] + z['answer']}", f"--answer={z['answer']}"]
  return smoke().main(argv + (["--small"] if small else []) + list(flags))


def child(spec: str, small: bool) -> None:
  family, part = spec.split(":")
  if part == "torch":
    out = run_torch(family, small)
  elif part == "eval":
    out = run_eval(family, small)
  else:
    flags = {"train": (), "train_remat": ("--remat",), "train_all_logits": ("--all-logits",),
             "train_cudnn": ("--attention=cudnn",)}
    out = run_train(family, small, flags[part])
  print(RESULT + json.dumps(smoke().rounded(out)), flush=True)


# ------------------------------------------------------------------------------ parent

def versions() -> dict:
  """Package versions of this interpreter (the one the parts run under)."""
  from importlib import metadata

  out = {"python": sys.version.split()[0]}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "transformers"):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def run_part(family: str, part: str, small: bool, timeout: float) -> dict:
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), f"--child={family}:{part}"]
  cmd += ["--small"] if small else []
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=os.environ)
  except subprocess.TimeoutExpired as e:
    tail = (e.stdout or b"")[-2000:]
    tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
    return {"error": f"timed out after {timeout:.0f} s", "log_tail": tail}
  wall = time.perf_counter() - t0
  results = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines()
             if line.startswith(RESULT)]
  if proc.returncode or not results:
    return {"error": f"exit code {proc.returncode}", "log_tail": proc.stdout[-3000:],
            "wall_s": wall}
  return {**results[-1], "wall_s": round(wall, 2)}


def summarise(parts: dict) -> dict:
  """Ours / PyTorch ratios of the step and of decoding, per family (and the step with
  answer-span logits over the same step with logits at every position)."""
  ratios = {}
  for family in {k.split(":")[0] for k in parts}:
    theirs = parts.get(f"{family}:torch", {})
    train, ev = parts.get(f"{family}:train", {}), parts.get(f"{family}:eval", {})
    if "tokens_per_s" in theirs and "tokens_per_s" in train:
      ratios[f"{family}:step"] = train["tokens_per_s"] / theirs["tokens_per_s"]
    if "decode_tokens_per_s" in theirs and "decode_tokens_per_s" in ev:
      ratios[f"{family}:decode"] = ev["decode_tokens_per_s"] / theirs["decode_tokens_per_s"]
    every = parts.get(f"{family}:train_all_logits", {})
    if "tokens_per_s" in every and "tokens_per_s" in train:  # ours against ours
      ratios[f"{family}:answer_span_over_all_logits"] = (train["tokens_per_s"]
                                                         / every["tokens_per_s"])
  return {k: round(v, 3) for k, v in sorted(ratios.items())}


def table(parts: dict) -> str:
  fmt = lambda v, f="{:.3g}": "—" if v is None else f.format(v)
  lines = ["| part | seconds | tokens/s | MFU | XLA peak GB | device peak GB |",
           "|---|---|---|---|---|---|"]
  for name, r in parts.items():
    if "error" in r:
      lines.append(f"| {name} | {r['error']} | | | | |")
      continue
    sec = r.get("step_s_median", r.get("eval_s"))
    tps = r.get("tokens_per_s", r.get("eval_tokens_per_s"))
    xla = r.get("xla_peak_gb", r.get("eval_xla_peak_gb"))
    dev = r.get("peak_gb", r.get("step_peak_gb"))
    lines.append(f"| {name} | {fmt(sec, '{:.4f}')} | {fmt(tps, '{:,.0f}')} | "
                 f"{fmt(r.get('mfu'), '{:.1%}')} | {fmt(xla, '{:.1f}')} | {fmt(dev, '{:.1f}')} |")
    if "decode_tokens_per_s" in r:
      lines.append(f"| {name} decode | {fmt(r['decode_s'], '{:.4f}')} | "
                   f"{fmt(r['decode_tokens_per_s'], '{:,.0f}')} | | | "
                   f"{fmt(r.get('decode_peak_gb'), '{:.1f}')} |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--families", default="opt,llama", help="comma list of opt, llama")
  ap.add_argument("--parts", default="torch,train,eval",
                  help=f"comma list of {', '.join(PARTS)}, run in this order per family")
  ap.add_argument("--small", action="store_true", help="tiny shapes in float32 (CPU check)")
  ap.add_argument("--out", default=os.environ.get("OUT", "gpu_stage2_out"),
                  help="folder for gpu_stage2.jsonl and gpu_stage2.json (default $OUT)")
  ap.add_argument("--budget", type=float, default=0.0,
                  help="seconds for all parts; a part that would start later is skipped, and "
                  "each is stopped at what is left (0: no limit)")
  ap.add_argument("--part-timeout", type=float, default=240.0, help="seconds per part")
  ap.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.child:
    child(args.child, args.small)
    return {}
  families = [f for f in args.families.split(",") if f]
  parts = [p for p in args.parts.split(",") if p]
  bad = sorted(set(families) - {"opt", "llama"}) + sorted(set(parts) - set(PARTS))
  if bad:
    ap.error(f"unknown families or parts: {bad}")
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  log = out_dir / "gpu_stage2.jsonl"
  start = time.perf_counter()
  results = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
             "command": " ".join([pathlib.Path(sys.executable).name, *sys.argv]),
             "versions": versions(), "sizes": sizes(args.small), "parts": {}}
  print(json.dumps({"versions": results["versions"]}), flush=True)
  order = ([(f, p) for f in families for p in parts if p not in EXTRA]
           + [(f, p) for p in parts if p in EXTRA for f in families])
  for family, part in order:
    name = f"{family}:{part}"
    left = args.budget - (time.perf_counter() - start) if args.budget else args.part_timeout
    if left < 30:
      results["parts"][name] = {"error": "skipped: no time left in --budget"}
      continue
    r = run_part(family, part, args.small, min(args.part_timeout, left))
    results["parts"][name] = r
    with log.open("a") as f:
      f.write(json.dumps({"part": name, **r}) + "\n")
    print(json.dumps({"part": name, **{k: v for k, v in r.items() if k != "log_tail"}}),
          flush=True)
    if "log_tail" in r:
      print(r["log_tail"], flush=True)
  results["ratios"] = summarise(results["parts"])
  results["seconds"] = round(time.perf_counter() - start, 1)
  tmp = out_dir / "gpu_stage2.json.tmp"
  tmp.write_text(json.dumps(results, indent=2) + "\n")
  tmp.replace(out_dir / "gpu_stage2.json")
  print(table(results["parts"]))
  print(json.dumps({"ratios": results["ratios"],
                    "seconds": results["seconds"]}), flush=True)
  return results


if __name__ == "__main__":
  main()
