"""The `eval` stage: Stage 2 generation and likelihood ranking on the test split (SPEC §7).

Per (domain, variant) trained by the `llm` stage: the test prompts (test history, the
stored test candidates) of `llm.eval_users` seeded test users (0 = all), in chunks bucketed
by prompt length, are decoded greedily with the KV cache, each output is matched to
one candidate title (`answers.choose`, rule `config.llm.valid_rule`), and the 20
candidates are also ranked by log p(" " + title + eos | prompt) (`config.llm.rank_reduce`),
as many candidates at a time as `config.llm.eval_memory_gb` holds (`memory.rank_chunk_size`),
their answers packed into one row on the prompt's KV cache (`stage2.rank_from_cache`);
one prompt pass with the KV cache serves both (`stage2.make_eval_fn`).
Users are processed in chunks of `config.llm.eval_batch_size` whose results are written
atomically to `DIR/eval/<domain>/<variant>/chunks/*.json`; a rerun skips finished chunks.
Then: metrics into `DIR/results.json` (valid_ratio, hit@1 over all users, hit@1_valid,
rank_hit@1, rank_hr@5, rank_ndcg@5, rank_ndcg@10), pop and SASRec on the same users and
candidates under `stage2_sample`, every generation in `DIR/eval/generations.jsonl` (one
line per variant, domain, user: the shown candidate titles in prompt order, the raw
output, the parsed choice). The pipeline writes
`DIR/report.md` once this stage is complete.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from sfubm_jax import io_utils, metrics, results
from sfubm_jax.errors import UserError
from sfubm_jax.llm import answers, batches, memory, prompts, stage2
from sfubm_jax.llm.context import DomainContext, VariantParts, build_parts, load_context
from sfubm_jax.llm.train_stage import restore_trained
from sfubm_jax.progress import progress
from sfubm_jax.sharding import batch_divisor, batch_sharding


@functools.lru_cache(maxsize=8)
def jitted_eval_fn(model: stage2.Stage2Model, max_new_tokens: int,
                   eos_id: int | tuple[int, ...], pad_id: int, reduce: str, c_chunk: int = 0,
                   pack_len: int = 0):
  """fn(trainable, frozen, batch, answers, answer_mask) -> (greedy tokens, rank scores),
  one prompt pass for both (`stage2.make_eval_fn`), compiled once per bucket length.

  `eos_id`: the stop token, or all of them (`DomainContext.stop_ids`)."""
  stops = tuple(int(e) for e in eos_id) if isinstance(eos_id, tuple) else (int(eos_id),)
  return jax.jit(stage2.make_eval_fn(model, reduce, c_chunk, max_new_tokens=max_new_tokens,
                                     stop_ids=stops, pad_id=pad_id, pack_len=pack_len))


def answer_arrays(ctx: DomainContext, builder, cands: np.ndarray, length: int):
  """answers [U, C, A] (title + eos, right-padded) and their mask, for ranking."""
  ans = np.full(cands.shape + (length,), ctx.pad_id, np.int32)
  mask = np.zeros(cands.shape + (length,), np.float32)
  for u, row in enumerate(cands):
    for k, item in enumerate(row):
      a = builder.answer(item)
      ans[u, k, : len(a)], mask[u, k, : len(a)] = a, 1.0
  return ans, mask


def eval_users(config: ml_collections.ConfigDict, ctx: DomainContext) -> np.ndarray:
  """Indices of the test users Stage 2 evaluates: `llm.eval_users` of them (seeded)."""
  return batches.sample(ctx.split.num_users, config.llm.eval_users, config.llm.seed, salt=17)


def evaluate_variant(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                     ctx: DomainContext, parts: VariantParts) -> list[dict]:
  """Decodes and ranks the evaluated test users (bucketed chunks, resumable); returns
  per-user records."""
  hp = config.llm
  out = workdir / "eval" / ctx.domain / parts.variant.name / "chunks"
  soft = parts.variant.soft_prompts
  builder = ctx.builder(soft)
  users = eval_users(config, ctx)
  hist, target = (x[users] for x in ctx.split.history("test"))
  cands, target_pos = (x[users] for x in ctx.split.candidates("test"))
  ps = [builder.build(h, c) for h, c in zip(hist, cands)]
  lengths = np.asarray([len(p.ids) for p in ps])
  prompts.check_length(prompts.round_up(int(lengths.max()))
                       + ctx.max_new_tokens, hp.max_seq_len)
  slots = max(1, max(len(p.item_slots) for p in ps))
  ans, ans_mask = answer_arrays(ctx, builder, cands, ctx.answer_len)
  bs = hp.eval_batch_size
  if bs % batch_divisor(ctx.mesh):
    raise UserError(f"config.llm.eval_batch_size={bs} is not a multiple of the "
                    f"{batch_divisor(ctx.mesh)} batch-parallel devices (config.mesh.shape)")
  user_vecs = (ctx.user_vectors(hist) if soft
               else np.zeros((len(hist), 1), np.float32))  # [U, d]
  chunks = batches.eval_chunks(lengths, bs, hp.max_buckets)
  todo = [i for i in range(len(chunks)) if not (out / f"{i:05d}.json").exists()]
  if todo:
    c_chunk = memory.rank_chunk_size(  # sized for the longest bucket: every chunk fits
        ctx.llm_config, batch_size=bs // batch_divisor(ctx.mesh),
        prompt_len=max(c.length for c in chunks),
        answer_len=ctx.answer_len, num_candidates=cands.shape[1], memory_gb=hp.eval_memory_gb)
    state = restore_trained(workdir, parts)
    trainable, frozen = state["trainable"], parts.frozen
    # The candidates' answers are packed per user: the row is as long as the longest
    # user's chunk of answers, not c_chunk × the longest answer.
    evaluate = jitted_eval_fn(parts.model, ctx.max_new_tokens, ctx.stop_ids or ctx.eos_id,
                              ctx.pad_id, hp.rank_reduce, c_chunk,
                              stage2.packed_length(ans_mask, c_chunk))
    shard = lambda x: jax.device_put(jnp.asarray(x), batch_sharding(ctx.mesh, x.ndim))
    desc = f"eval {ctx.domain}/{parts.variant.name}"
    for i in progress(todo, desc=desc, every_s=config.runtime.log_every_s):
      rows, real = chunks[i].rows, chunks[i].rows[chunks[i].weight > 0]
      batch = prompts.pack([ps[r] for r in rows], None, length=chunks[i].length,
                           num_slots=slots, pad_id=ctx.pad_id)
      batch["user_vecs"] = user_vecs[rows]
      batch = jax.tree.map(shard, batch)
      tokens, scores = jax.device_get(evaluate(trainable, frozen, batch, shard(ans[rows]),
                                               shard(ans_mask[rows])))
      chunk = []
      for k, r in enumerate(real):
        toks = [int(t) for t in tokens[k] if t != ctx.pad_id]
        text = ctx.tokenizer.decode(toks, skip_special_tokens=True)
        chunk.append({"user": int(users[r]), "row": int(r), "output": text,
                      "scores": scores[k].tolist()})
      io_utils.write_json(out / f"{i:05d}.json", chunk)
  records = []
  for i in range(len(chunks)):
    records.extend(io_utils.read_json(out / f"{i:05d}.json"))
  records.sort(key=lambda rec: rec["user"])
  titles = ctx.display_titles
  for rec in records:
    r = rec.pop("row")
    names = [titles[c] for c in cands[r]]
    rec.update(variant=parts.variant.name, domain=ctx.domain,
               user_id=ctx.split.user_ids[rec["user"]], target=titles[int(target[r])],
               target_pos=int(target_pos[r]), candidates=names,
               choice=answers.choose(rec["output"], names, hp.valid_rule))
    rec["parsed"] = names[rec["choice"]] if rec["choice"] >= 0 else None
  return records


def stage1_on_eval_users(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                         ctx: DomainContext) -> dict[str, float]:
  """pop and SASRec ranking metrics on the users and candidates Stage 2 evaluates: the
  pretrain stage's own evaluations (`evaluate_pop`, `seqrec_train.evaluate`) on those rows."""
  from sfubm_jax.training import export
  from sfubm_jax.training import seqrec_train as st
  from sfubm_jax.training.popularity import evaluate_pop

  users = eval_users(config, ctx)
  out = {"users": float(len(users))}
  pop = evaluate_pop(ctx.split, "test", config.data.seed, users)
  out.update({f"pop_{k}": v for k, v in pop.items()})
  if ctx.encode_users is not None:  # a soft-prompt variant runs, so SASRec exists
    model, params = export.load_sasrec(workdir, ctx.domain)
    sas = st.evaluate(st.make_scorer(model), params, ctx.split, "test", users=users)
    out.update({f"sasrec_{k}": v for k, v in sas.items()})
  return out


def score(records: list[dict]) -> dict[str, float]:
  """Generation metrics and likelihood-ranking metrics of one (variant, domain)."""
  choices = np.asarray([r["choice"] for r in records])
  target_pos = np.asarray([r["target_pos"] for r in records])
  out = answers.generation_metrics(choices, target_pos)
  ranking = metrics.ranking_metrics(np.asarray([r["scores"] for r in records]), target_pos)
  out.update({f"rank_{k}": v for k, v in ranking.items()})
  return out


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  lines = []
  for domain in [d for d in config.llm.domains if d]:
    ctx = load_context(config, workdir, domain)
    results.update_results(workdir, "stage2_sample", domain,
                           stage1_on_eval_users(config, workdir, ctx))
    for name in config.llm.variants:
      parts = build_parts(config, workdir, ctx, name)
      records = evaluate_variant(config, workdir, ctx, parts)
      m = score(records)
      results.update_results(workdir, parts.variant.results_key, domain, m)
      logging.info("eval %s/%s: %s", domain, name, json.dumps(m, sort_keys=True))
      for rec in records:
        rec = {k: v for k, v in rec.items() if k != "scores"}
        lines.append(json.dumps(rec, sort_keys=True, ensure_ascii=False))
  io_utils.atomic_write_text(workdir / "eval" / "generations.jsonl", "\n".join(lines) + "\n")
