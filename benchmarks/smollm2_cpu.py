"""SmolLM2-135M on this CPU: the Stage 2 step and greedy decoding, Flax vs PyTorch.

Both sides run the same weights (the shipped `smollm2-135m-instruct` GGUF, dequantised to
fp32: ours through `backbone.load`, PyTorch `transformers.LlamaForCausalLM` from the same
cached folder) in one process, with the same thread count, on the same inputs:

  step    Stage 2 training step with the LLM frozen: soft prompts (P_u, P_i projectors)
          spliced into `inputs_embeds`, forward + backward to the projectors, logits only on
          the answer span (the last `--answer` + 1 positions), Adam update. Batch 8 x 256.
  decode  greedy decoding with a KV cache from a left-padded batch of prompts, no early
          stop (the stop token is unreachable), against `generate(do_sample=False)`.

Prints one JSON line with seconds per step / tokens per second of each and the ratios
(PyTorch time / ours: > 1 means ours is faster). Compile/warm-up runs are excluded.

  python benchmarks/smollm2_cpu.py --threads=1
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _median(times):
  times = sorted(times)
  return times[len(times) // 2]


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--threads", type=int, default=1, help="XLA and PyTorch CPU threads")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=256)
  ap.add_argument("--answer", type=int, default=15, help="answer tokens (loss span - 1)")
  ap.add_argument("--slots", type=int, default=21, help="soft-prompt slots per prompt")
  ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
  ap.add_argument("--prompt", type=int, default=128, help="decode prompt length")
  ap.add_argument("--new", type=int, default=32, help="decode new tokens")
  ap.add_argument("--skip", default="", help="comma list of parts to skip: step,decode")
  args = ap.parse_args(argv)
  skip = set(filter(None, args.skip.split(",")))

  # Threads must be fixed before jax/torch start their pools; the affinity mask also
  # bounds XLA's Eigen pool, which sizes itself from the CPUs the process may use.
  if hasattr(os, "sched_setaffinity") and args.threads < len(os.sched_getaffinity(0)):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                             f"{'true' if args.threads > 1 else 'false'} "
                             f"intra_op_parallelism_threads={args.threads}").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, str(REPO))
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  import torch
  from transformers import LlamaForCausalLM

  from sfubm_jax.llm import stage2
  from sfubm_jax.llm.decoding import make_greedy_generate
  from sfubm_jax.models.causal_lm import backbone
  from sfubm_jax.models.projector import SoftPrompts

  torch.set_num_threads(args.threads)
  torch.set_num_interop_threads(1)
  folder = backbone.resolve_checkpoint("smollm2-135m-instruct")
  cfg, params = backbone.load("smollm2-135m-instruct")
  hf = LlamaForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
  for p in hf.parameters():
    p.requires_grad_(False)
  model = backbone.build(cfg)
  rng = np.random.default_rng(0)
  out = {"threads": args.threads, "load": open("/proc/loadavg").read().split()[:3],
         "model": "smollm2-135m-instruct (fp32)", "cpus": os.cpu_count()}

  if "step" not in skip:
    b, t, a, d_user, d_item = args.batch, args.seq, args.answer, 50, 50
    ids = rng.integers(3, cfg.vocab_size, (b, t)).astype(np.int32)
    item_pos = np.sort(rng.choice(np.arange(1, t - a - 2), (b, args.slots)), axis=1)
    loss_mask = np.zeros((b, t), np.float32)
    loss_mask[:, t - a - 1 : t - 1] = 1.0
    batch = {"input_ids": ids, "attention_mask": np.ones((b, t), np.int32),
             "item_pos": item_pos.astype(np.int32),
             "item_ids": rng.integers(1, 100, (b, args.slots)).astype(np.int32),
             "user_pos": np.full((b,), t - a - 2, np.int32),
             "user_vecs": rng.normal(size=(b, d_user)).astype(np.float32),
             "labels": np.concatenate([ids[:, 1:], ids[:, :1]], axis=1), "loss_mask": loss_mask}
    items = rng.normal(size=(100, d_item)).astype(np.float32)
    prompts = SoftPrompts(out_dim=cfg.embed_dim, hidden=128)
    s2 = stage2.Stage2Model(model, prompts)
    tx = optax.adam(1e-4)
    trainable = {"prompts": s2.init_prompts(jax.random.key(1), d_user, d_item), "llm": {}}
    _, frozen_llm = stage2.split_llm_params(params, "frozen")
    frozen = {"llm": frozen_llm, "items": jnp.asarray(items)}
    state = {"trainable": trainable, "opt": tx.init(trainable)}
    keep = stage2.answer_span(loss_mask)
    step = jax.jit(stage2.make_train_step(s2, tx, keep), donate_argnums=0)
    jbatch = jax.tree.map(jnp.asarray, batch)
    t0 = time.perf_counter()
    state, m = step(state, frozen, jbatch)
    jax_first = float(m["loss"])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
      t0 = time.perf_counter()
      state, m = step(state, frozen, jbatch)
      float(m["loss"])
      times.append(time.perf_counter() - t0)
    jax_step = _median(times)

    # PyTorch: the same projector shapes (GELU/tanh MLPs), splice, answer-span logits.
    proj = {k: torch.nn.Sequential(torch.nn.Linear(dim, 128), act(),
                                   torch.nn.Linear(128, cfg.embed_dim))
            for k, dim, act in (("u", d_user, torch.nn.GELU), ("i", d_item, torch.nn.Tanh))}
    opt = torch.optim.Adam([p for m_ in proj.values() for p in m_.parameters()], lr=1e-4)
    tb = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
    titems = torch.from_numpy(items)
    rows = torch.arange(b)

    def torch_step():
      emb = hf.model.embed_tokens(tb["input_ids"].long()).clone()
      emb[rows[:, None], tb["item_pos"].long()] = proj["i"](titems[tb["item_ids"].long()])
      emb[rows, tb["user_pos"].long()] = proj["u"](tb["user_vecs"])
      logits = hf(inputs_embeds=emb, attention_mask=tb["attention_mask"].long(),
                  logits_to_keep=keep).logits
      labels, mask = tb["labels"][:, -keep:].long(), tb["loss_mask"][:, -keep:]
      nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                              reduction="none") * mask.flatten()
      loss = nll.sum() / mask.sum()
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      return float(loss)

    torch_step()
    times = []
    for _ in range(args.steps):
      t0 = time.perf_counter()
      torch_step()
      times.append(time.perf_counter() - t0)
    torch_s = _median(times)
    out["step"] = {"batch": b, "seq": t, "logits_kept": keep, "jax_compile_s": round(compile_s, 1),
                   "jax_s": round(jax_step, 3), "torch_s": round(torch_s, 3),
                   "jax_tok_s": round(b * t / jax_step, 1),
                   "torch_tok_s": round(b * t / torch_s, 1),
                   "ratio_torch_over_jax": round(torch_s / jax_step, 3),
                   "jax_first_loss": round(jax_first, 4)}
    print(json.dumps({"step": out["step"]}), flush=True)

  if "decode" not in skip:
    b, p, new = args.batch, args.prompt, args.new
    lengths = rng.integers(p // 2, p + 1, b)
    ids = np.full((b, p), cfg.pad_token_id, np.int64)
    mask = np.zeros((b, p), np.int64)
    for r, n in enumerate(lengths):
      ids[r, p - n:] = rng.integers(3, cfg.vocab_size, n)
      mask[r, p - n:] = 1
    never = cfg.vocab_size  # an id no step can emit: every row decodes `new` tokens
    gen = make_greedy_generate(model, max_new_tokens=new, eos_token_ids=[never])
    embed = jax.jit(lambda prm, x: model.apply(prm, x, method="embed_tokens"))
    run = lambda: np.asarray(gen(params, embed(params, jnp.asarray(ids, jnp.int32)),
                                 jnp.asarray(mask, jnp.int32)))
    t0 = time.perf_counter()
    ours = run()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(2):
      t0 = time.perf_counter()
      ours = run()
      times.append(time.perf_counter() - t0)
    jax_s = _median(times)

    def hf_run():
      with torch.no_grad():
        return hf.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                           do_sample=False, max_new_tokens=new, min_new_tokens=new,
                           eos_token_id=None, pad_token_id=cfg.pad_token_id)[:, p:].numpy()

    hf_run()
    times = []
    for _ in range(2):
      t0 = time.perf_counter()
      ref = hf_run()
      times.append(time.perf_counter() - t0)
    torch_s = _median(times)
    agree = float(np.mean(ours == ref))
    out["decode"] = {"batch": b, "prompt": p, "new_tokens": new,
                     "jax_compile_s": round(compile_s, 1), "jax_s": round(jax_s, 3),
                     "torch_s": round(torch_s, 3), "jax_tok_s": round(b * new / jax_s, 1),
                     "torch_tok_s": round(b * new / torch_s, 1),
                     "ratio_torch_over_jax": round(torch_s / jax_s, 3),
                     "tokens_equal_share": round(agree, 4)}
  out["load_after"] = open("/proc/loadavg").read().split()[:3]
  print(json.dumps(out), flush=True)
  return out


if __name__ == "__main__":
  main()
