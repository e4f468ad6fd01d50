"""Peak device memory of Stage 2 at 7B shapes, from XLA's buffer assignment; no weights.

For OPT-6.7B and Llama-3-8B (hyperparameters of launch/gpu_smoke.py) at the paper
config's batch sizes, each program is lowered with abstract inputs (ShapeDtypeStructs
from `jax.eval_shape` of the init: nothing is allocated) and compiled for the CPU, whose
`memory_analysis()` gives the bytes of arguments, outputs and temporaries:

  train        the Stage 2 step (frozen LLM, P_u/P_i and Adam, logits on the answer span),
               with `llm.remat` off and on; batch `llm.batch_size` × (P + A) tokens
  decode       greedy decoding, `llm.eval_batch_size` prompts of P tokens, max_new_tokens
  rank 20      likelihood ranking, all 20 candidates' answers packed into one row of
               20 × A tokens on the prompt's KV cache (`stage2.rank_from_cache`)
  rank k       chunked ranking, k = `memory.rank_chunk_size` at `llm.eval_memory_gb`
               (compiled only when k < 20)
  eval k       what the eval stage runs: one prompt pass whose KV cache serves both greedy
               decoding and chunked ranking (`stage2.make_eval_fn`)

The CPU compiler turns bfloat16 matmuls into float32 ones (it converts the weights), so
a bf16 program's CPU figures say nothing about a GPU. The programs are therefore compiled
in float32, where the CPU allocates what the program needs, and the bf16 figure is the
bound `bf16 weights (exact) + float32 temporaries` (every bf16 temporary is at most its
float32 counterpart; logits and softmax statistics are float32 in both). The inference
programs are compiled with all 32 layers (20–50 s each here); their peak is not linear in
the layers (XLA frees each layer's prompt cache once it is used when all candidates run
in one pass), so nothing is extrapolated there. The train step (slower to compile) is
compiled with 2 and 4 layers and extrapolated linearly to 32: its activations grow by
one layer's worth per layer. For it the script also prints an estimate: bf16 weights +
the float32 temporaries × the bf16 / float32 ratio of an analytic count of the saved
activations (`layer_activation_bytes`, printed beside XLA's float32 growth per layer).
The reference of a chunked ranking row is all 20 candidates at once, measured in the
same run: the script prints chunked / all-at-once peak, and each ranking row carries
`memory.rank_bytes`' estimate of the chunk (`rank_estimate_gb`).

Token counts (stated, not measured on OPT's tokenizer, which is not available offline):
a prompt has bos, about 45 template tokens, 9 history + 20 candidate titles of 12 words
at about 1.5 BPE tokens a word (18 tokens), each followed by its [ITEM] slot, 27 commas
and the [USER] slot: 1 + 45 + 29 × 19 + 27 + 1 = 625, padded to P = 632. Answers: the
longest shown title (31 tokens) + eos, A = 32. Training sequences P + A = 664.

  python benchmarks/stage2_memory.py                  # both models, about 4 minutes here
  python benchmarks/stage2_memory.py --layers=4       # a quick look (4-layer models)
  python benchmarks/stage2_memory.py --programs=eval  # only the eval stage's program
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
GB = 1e9
USABLE_GB = 80 * 0.92  # one 80 GB GPU at XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 (launch/)
PROMPT_LEN, ANSWER_LEN, SLOTS, CANDIDATES = 632, 32, 29, 20
USER_DIM = ITEM_DIM = 50  # SASRec d (SPEC §5)
NUM_ITEMS = 40000  # item-embedding rows (the largest paper catalogue is 41,598 books)


def _smoke():
  spec = importlib.util.spec_from_file_location("gpu_smoke", REPO / "launch" / "gpu_smoke.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def llm_config(family: str, layers: int, dtype: str):
  from sfubm_jax.models.causal_lm import backbone

  smoke = _smoke()
  shape = dict(smoke.LLAMA_3_8B if family == "llama" else smoke.OPT_6_7B,
               num_hidden_layers=layers)
  extra = {"dropout": 0.0} if family == "opt" else {}
  return lambda remat=False: backbone.config_class(family)(
      **shape, dtype=dtype, param_dtype=dtype, remat=remat, **extra)


def programs(cfg, hp: dict, c_chunk: int) -> dict:
  """{name: (jitted fn, abstract args)} of the Stage 2 programs on `cfg`."""
  import jax
  import jax.numpy as jnp
  import optax

  from sfubm_jax.llm import stage2
  from sfubm_jax.llm.context import decode_budget
  from sfubm_jax.llm.decoding import make_greedy_generate
  from sfubm_jax.models.causal_lm import backbone
  from sfubm_jax.models.projector import SoftPrompts

  sd, i32, f32 = jax.ShapeDtypeStruct, jnp.int32, jnp.float32
  model = stage2.Stage2Model(backbone.build(cfg), SoftPrompts(out_dim=cfg.embed_dim,
                                                              hidden=hp["projector_hidden"]))
  abstract = backbone.abstract_params(cfg)
  _, frozen_llm = stage2.split_llm_params(abstract, "frozen")
  trainable = {"prompts": jax.eval_shape(lambda: model.init_prompts(jax.random.key(0),
                                                                    USER_DIM, ITEM_DIM)),
               "llm": {}}
  frozen = {"llm": frozen_llm, "items": sd((NUM_ITEMS, ITEM_DIM), f32)}

  def batch(b, t, answers):
    out = {"input_ids": sd((b, t), i32), "attention_mask": sd((b, t), i32),
           "item_pos": sd((b, SLOTS), i32), "item_ids": sd((b, SLOTS), i32),
           "user_pos": sd((b,), i32), "user_vecs": sd((b, USER_DIM), f32)}
    if answers:
      out.update(labels=sd((b, t), i32), loss_mask=sd((b, t), f32))
    return out

  tx = optax.adam(hp["lr"])
  state = {"trainable": trainable, "opt": jax.eval_shape(tx.init, trainable)}
  b, e = hp["batch_size"], hp["eval_batch_size"]
  train = jax.jit(stage2.make_train_step(model, tx, ANSWER_LEN + 1), donate_argnums=0)
  new_tokens = decode_budget(hp["max_new_tokens"], ANSWER_LEN)
  generate = make_greedy_generate(model.llm, max_new_tokens=new_tokens,
                                  eos_token_ids=[cfg.eos_token_id])
  eval_batch = batch(e, PROMPT_LEN, False)
  answers = (sd((e, CANDIDATES, ANSWER_LEN), i32), sd((e, CANDIDATES, ANSWER_LEN), f32))
  out = {
      "train": (train, (state, frozen, batch(b, PROMPT_LEN + ANSWER_LEN, True))),
      "decode": (generate, (abstract, sd((e, PROMPT_LEN, cfg.embed_dim), cfg.dtype),
                            sd((e, PROMPT_LEN), i32))),
      f"rank {CANDIDATES}": (jax.jit(stage2.make_rank_fn(model, "sum")),
                             (trainable, frozen, eval_batch, *answers)),
  }
  if c_chunk < CANDIDATES:
    out[f"rank {c_chunk}"] = (jax.jit(stage2.make_rank_fn(model, "sum", c_chunk)),
                              (trainable, frozen, eval_batch, *answers))
  out[f"eval {c_chunk}"] = (
      jax.jit(stage2.make_eval_fn(model, "sum", c_chunk, max_new_tokens=new_tokens,
                                  stop_ids=(cfg.eos_token_id,), pad_id=cfg.pad_token_id)),
      (trainable, frozen, eval_batch, *answers))
  return out


def analyse(fn, args) -> dict:
  """Bytes XLA assigns to arguments, outputs (less donated aliases) and temporaries."""
  m = fn.lower(*args).compile().memory_analysis()
  return {"args": m.argument_size_in_bytes, "temp": m.temp_size_in_bytes,
          "out": m.output_size_in_bytes - m.alias_size_in_bytes}


def param_bytes(cfg) -> int:
  import jax
  import numpy as np

  from sfubm_jax.models.causal_lm import backbone

  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(backbone.abstract_params(cfg)))


def layer_activation_bytes(cfg, batch: int, seq: int, itemsize: int) -> int:
  """Analytic bytes one decoder layer saves for the backward pass (a count, not XLA's).

  Compute-dtype [N, ·] tensors (N = batch × seq): OPT keeps the layer input, both
  LayerNorm outputs, q, k, v, the attention output, the residual sum (8 × D) and fc1's
  output and its ReLU (2 × F); Llama the same with GQA-sized k, v and the SwiGLU gate, up
  and silu(gate) (3 × F), plus the float32 RMSNorm inputs (2 × D × 4 bytes). Attention:
  the float32 probabilities and their compute-dtype copy for the value matmul.
  """
  n, d = batch * seq, cfg.hidden_size
  probs = batch * cfg.num_attention_heads * seq * seq * (4 + itemsize)
  if hasattr(cfg, "ffn_dim"):  # OPT
    return n * (8 * d + 2 * cfg.ffn_dim) * itemsize + probs
  kv = cfg.num_key_value_heads * cfg.head_dim
  return (n * (6 * d + 2 * kv + 3 * cfg.intermediate_size) * itemsize + n * 2 * d * 4
          + probs)


def measure(family: str, hp: dict, train_layers: tuple[int, int], full: int = 32,
            only: tuple[str, ...] = ()) -> list[dict]:
  """One row per program at `full` layers (train: extrapolated from `train_layers`);
  `only`: the programs whose name starts with one of these (all if empty)."""
  wanted = lambda name: not only or any(name.startswith(o) for o in only)
  from sfubm_jax.llm import memory

  bf16 = llm_config(family, full, "bfloat16")()
  c_chunk = memory.rank_chunk_size(bf16, batch_size=hp["eval_batch_size"],
                                   prompt_len=PROMPT_LEN, answer_len=ANSWER_LEN,
                                   num_candidates=CANDIDATES, memory_gb=hp["eval_memory_gb"])
  figures = {}  # program -> analysis at `full` layers
  for name, (fn, args) in programs(llm_config(family, full, "float32")(), hp, c_chunk).items():
    if name != "train" and wanted(name):
      figures[name] = analyse(fn, args)
  lo, hi = train_layers
  # Activations grow linearly with the layers: extrapolate.
  for remat in (False, True) if wanted("train") else ():
    a, b = (analyse(*programs(llm_config(family, n, "float32")(remat), hp, CANDIDATES)["train"])
            for n in (lo, hi))
    figures["train" + (" (remat)" if remat else "")] = {
        k: a[k] + (b[k] - a[k]) * (full - lo) / (hi - lo) for k in a}
    if not remat:
      train_raw = (a, b)
  bf16_params, f32_params = param_bytes(bf16), param_bytes(llm_config(family, full, "float32")())
  # The train step's bf16 estimate: XLA's float32 temporaries scaled by the analytic
  # bf16 / float32 ratio of the saved activations (that count is checked against XLA's
  # per-layer growth in float32, `per_layer_*` below).
  seq = PROMPT_LEN + ANSWER_LEN
  act = {s: layer_activation_bytes(bf16, hp["batch_size"], seq, s) for s in (2, 4)}
  rows = []
  for name, f in figures.items():
    row = {"family": family, "program": name, "temp_f32_gb": f["temp"] / GB,
           "peak_f32_gb": (f["args"] + f["out"] + f["temp"]) / GB,
           "params_bf16_gb": bf16_params / GB,
           # bf16 weights (exact) + float32 temporaries: an upper bound of the bf16 program
           "peak_bf16_bound_gb": (f["args"] - f32_params + bf16_params + f["out"]
                                  + f["temp"]) / GB,
           "layers": f"{lo},{hi} → {full}" if name.startswith("train") else str(full)}
    if name == "train":
      a, b = train_raw
      row["per_layer_xla_f32_gb"] = (b["temp"] - a["temp"]) / (hi - lo) / GB
      row["per_layer_analytic_f32_gb"] = act[4] / GB
      row["per_layer_analytic_bf16_gb"] = act[2] / GB
      row["peak_bf16_estimate_gb"] = (f["args"] - f32_params + bf16_params + f["out"]
                                      + f["temp"] * act[2] / act[4]) / GB
    if name.startswith("rank"):
      k = int(name.split()[1])
      row["rank_estimate_gb"] = memory.rank_bytes(
          bf16, batch_size=hp["eval_batch_size"], prompt_len=PROMPT_LEN,
          answer_len=ANSWER_LEN, candidates=k) / GB
    rows.append(row)
  return rows


def main(argv=None) -> list[dict]:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--families", default="opt,llama")
  ap.add_argument("--layers", type=int, default=32, help="decoder layers of the models")
  ap.add_argument("--programs", default="",
                  help="comma list of program-name prefixes to measure (train, decode, rank, "
                  "eval); empty = all")
  ap.add_argument("--train_layers", default="2,4",
                  help="layer counts the train step is compiled at, then extrapolated")
  args = ap.parse_args(argv)
  sys.path.insert(0, str(REPO))
  from configs import common

  c = common.get_config("food_kitchen").llm
  hp = {k: c[k] for k in ("batch_size", "eval_batch_size", "max_new_tokens", "eval_memory_gb",
                          "lr", "projector_hidden")}
  lo, hi = (int(x) for x in args.train_layers.split(","))
  t0 = time.perf_counter()
  only = tuple(filter(None, args.programs.split(",")))
  rows = [r for f in args.families.split(",")
          for r in measure(f, hp, (lo, hi), args.layers, only)]
  print(json.dumps({"config": hp, "prompt_len": PROMPT_LEN, "answer_len": ANSWER_LEN,
                    "seconds": round(time.perf_counter() - t0, 1)}))
  head = ("| model | program | layers compiled | XLA f32 temporaries | XLA f32 peak | "
          "bf16 peak: bound | bf16 peak: estimate | fits 73.6 GB |")
  print(head + "\n|" + "---|" * 8)
  for r in rows:
    name = {"opt": "OPT-6.7B", "llama": "Llama-3-8B"}[r["family"]]
    est = r.get("peak_bf16_estimate_gb")
    fits = (est if est is not None else r["peak_bf16_bound_gb"]) <= USABLE_GB
    print(f"| {name} | {r['program']} | {r['layers']} | {r['temp_f32_gb']:.1f} GB | "
          f"{r['peak_f32_gb']:.1f} GB | {r['peak_bf16_bound_gb']:.1f} GB | "
          f"{'—' if est is None else f'{est:.1f} GB'} | {'yes' if fits else 'no'} |")
  for f in args.families.split(","):
    ranks = [r for r in rows if r["family"] == f and r["program"].startswith("rank")]
    if len(ranks) == 2:
      print(f"{f}: chunked ({ranks[1]['program']}) / all at once ({ranks[0]['program']}) "
            "bf16 bound "
            f"peak = {ranks[1]['peak_bf16_bound_gb'] / ranks[0]['peak_bf16_bound_gb']:.3f}")
  for r in rows:
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}))
  return rows


if __name__ == "__main__":
  main()
