"""Stage 2 padding share and step time: one global length (before) vs length buckets (now).

Needs a workdir whose data, pretrain and fkd stages are done for the config's target
domain (e.g. a `configs/food_kitchen.py:cpu` run). Builds the training prompts the llm
stage builds (the config's sample size), then reports

- the padding share of the tokens of one epoch's batches: every batch padded to the
  longest prompt of the run, rounded up to 8 (the former packing), against the batches of
  `llm.batches.train_batches` (each padded to its bucket); the same for evaluation chunks;
- the train step time (the real jitted Stage 2 step of variant sfubm, frozen LLM) at each
  length that occurs, measured after compilation (median of `--repeats`), and the epoch
  time both ways = Σ over batches of the step time at that batch's length.

  python benchmarks/stage2_padding.py --workdir=W --config=configs/food_kitchen.py:cpu
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--config", default="configs/food_kitchen.py:cpu")
  ap.add_argument("--prompts", type=int, default=0, help="0 = the config's llm.train_prompts")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--json", default="", help="also write the result as JSON here")
  ap.add_argument("--no-timing", action="store_true", help="padding shares only")
  args = ap.parse_args()

  import jax

  from sfubm_jax import cli
  from sfubm_jax.llm import batches, prompts, train_stage
  from sfubm_jax.llm.context import build_parts, load_context

  config = cli.load_config_file(args.config)
  if args.prompts:
    config.unlock()
    config.llm.train_prompts = args.prompts
  workdir = pathlib.Path(args.workdir).absolute()
  hp = config.llm
  domain = hp.domains[0]
  ctx = load_context(config, workdir, domain)
  ex = train_stage.training_examples(ctx, config.data.num_negatives, hp.seed, hp.train_targets,
                                     hp.train_prompts)
  parts = build_parts(config, workdir, ctx, "sfubm")
  enc = train_stage.encode_examples(ctx.builder(True), ex, hp.max_seq_len,
                                    ctx.user_vectors(ex["history"]))
  bucketed = batches.train_batches(enc.lengths, hp.batch_size, hp.seed, 0, hp.max_buckets)
  global_len = prompts.round_up(int(enc.lengths.max()))
  flat = [batches.Batch(b.rows, b.weight, global_len)
          for b in batches.train_batches(np.zeros_like(enc.lengths), hp.batch_size, hp.seed, 0)]
  eval_builder = ctx.builder(True)
  test_hist, _ = ctx.split.history("test")
  test_cands, _ = ctx.split.candidates("test")
  users = batches.sample(ctx.split.num_users, hp.eval_users, hp.seed, salt=17)
  eval_lengths = np.asarray([len(eval_builder.build(h, c).ids)
                             for h, c in zip(test_hist[users], test_cands[users])])
  eval_global = prompts.round_up(int(eval_lengths.max()))
  eval_chunks = batches.eval_chunks(eval_lengths, hp.eval_batch_size, hp.max_buckets)
  eval_flat = [batches.Batch(c.rows, c.weight, eval_global)
               for c in batches.eval_chunks(np.zeros_like(eval_lengths), hp.eval_batch_size)]

  step_fn = train_stage.jitted_train_step(parts.model, hp.lr, enc.keep)
  state = parts.state
  times = {}
  lengths_timed = [] if args.no_timing else sorted({b.length for b in bucketed} | {global_len})
  for length in lengths_timed:
    plan = [b for b in bucketed if b.length == length] or [
        batches.Batch(flat[0].rows, flat[0].weight, length)]
    batch = train_stage.EpochBatches(enc, plan[:1], ctx.pad_id, ctx.mesh)[0]
    state, m = step_fn(state, parts.frozen, batch)  # compile
    jax.block_until_ready(m["loss"])
    runs = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      state, m = step_fn(state, parts.frozen, batch)
      jax.block_until_ready(m["loss"])
      runs.append(time.perf_counter() - t0)
    times[length] = float(np.median(runs))
    print(f"step at length {length}: {times[length]:.3f} s (median of {args.repeats})",
          flush=True)
  epoch_flat = sum(times[b.length] for b in flat) if times else None
  epoch_bucketed = sum(times[b.length] for b in bucketed) if times else None
  out = {
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      "load_avg": os.getloadavg(), "config": args.config, "domain": domain,
      "train_prompts": len(enc.prompts), "batch_size": hp.batch_size,
      "max_buckets": hp.max_buckets,
      "train_padding_before": batches.padding_share(enc.lengths, flat),
      "train_padding_after": batches.padding_share(enc.lengths, bucketed),
      "eval_users": len(users), "eval_batch_size": hp.eval_batch_size,
      "eval_padding_before": batches.padding_share(eval_lengths, eval_flat),
      "eval_padding_after": batches.padding_share(eval_lengths, eval_chunks),
      "step_seconds_by_length": times,
      "epoch_seconds_before": epoch_flat, "epoch_seconds_after": epoch_bucketed,
      "epoch_speedup": epoch_flat / epoch_bucketed if times else None,
      "train_lengths": [int(x) for x in np.percentile(enc.lengths, [0, 50, 100])],
      "eval_lengths": [int(x) for x in np.percentile(eval_lengths, [0, 50, 100])],
  }
  print(json.dumps(out, indent=1))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()
