"""Short Stage 2 training loop on a 7B-class LLM shape (random weights), sharded.

Builds OPT-6.7B's shapes (32 layers, hidden 4096, 32 heads, ffn 16384, vocab 50272), or
with `--family=llama` Llama-3-8B's (32 layers, hidden 4096, 32 query / 8 KV heads, SwiGLU
14336, vocab 128256), with random bf16 weights directly on the devices, sharded over the
mesh by the backbone's logical axes (default FSDP over every visible GPU), freezes it,
and runs the Stage 2 step (soft prompts P_u/P_i spliced into a hybrid prompt,
answer-only loss, Adam on the projectors only) a few times. Prints compile time, median
step time, tokens/s, MFU and peak memory (XLA's compile-time figure and the allocator's
peak) as one JSON line.

Default shapes are those of benchmarks/stage2_memory.py (the paper config's batch 8,
sequences of P + A = 632 + 32 = 664 tokens, logits on the 33-position answer span), so
the peak can be set against that benchmark's estimate.

FLOP model (`step_flops`, stated, not 6N): per token, each decoder weight matmul costs
2·n_in·n_out forward and the same again backward for the input gradient only (the LLM is
frozen: no weight gradients), 4·N_dec; attention (QKᵀ and PV over the full T×T square,
causal masking not discounted) 4·L·T·d forward and twice that backward, 12·L·T·d; the
lm_head 4·V·d at each kept (answer-span) position only. The projectors are left out
(< 0.01%). MFU = FLOPs / step time / peak (989 TFLOP/s dense bf16 on H100 and H200).

  python launch/gpu_smoke.py                     # on the GPU machine, < 3 minutes
  python launch/gpu_smoke.py --family=llama      # Llama-3-8B shapes
  python launch/gpu_smoke.py --small             # CPU check of the same code path
  python launch/gpu_smoke.py --mesh=1,-1,1 --batch=8 --seq=664 --steps=24 --remat
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from sfubm_jax import sharding  # noqa: E402
from sfubm_jax.llm import stage2  # noqa: E402
from sfubm_jax.models.causal_lm import backbone  # noqa: E402
from sfubm_jax.models.projector import SoftPrompts  # noqa: E402

OPT_6_7B = dict(vocab_size=50272, hidden_size=4096, num_hidden_layers=32, ffn_dim=16384,
                num_attention_heads=32, max_position_embeddings=2048)
SMALL = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, ffn_dim=128,
             num_attention_heads=4, max_position_embeddings=256)
LLAMA_3_8B = dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32,
                  intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                  max_position_embeddings=8192, rope_theta=500000.0)
SMALL_LLAMA = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
SHAPES = {("opt", False): OPT_6_7B, ("opt", True): SMALL, ("llama", False): LLAMA_3_8B,
          ("llama", True): SMALL_LLAMA}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16, the vendor's datasheet
SLOTS, USER_DIM, ITEM_DIM, NUM_ITEMS = 29, 50, 50, 40000  # as benchmarks/stage2_memory.py
GB = 1e9


def decoder_matmul_weights(shape: dict) -> int:
  """N_dec: the weights of every decoder-layer matmul (embeddings and lm_head excluded)."""
  d, layers = shape["hidden_size"], shape["num_hidden_layers"]
  if "ffn_dim" in shape:  # OPT: q, k, v, out (d×d each) and fc1, fc2
    return layers * (4 * d * d + 2 * d * shape["ffn_dim"])
  kv = shape.get("num_key_value_heads", shape["num_attention_heads"]) * (
      d // shape["num_attention_heads"])  # Llama: GQA k and v, SwiGLU gate, up, down
  return layers * (2 * d * d + 2 * d * kv + 3 * d * shape["intermediate_size"])


def step_flops(shape: dict, batch: int, seq: int, keep: int) -> float:
  """FLOPs of one frozen-LLM Stage 2 step (the model in the module docstring)."""
  d, layers = shape["hidden_size"], shape["num_hidden_layers"]
  per_token = 4.0 * decoder_matmul_weights(shape) + 12.0 * layers * seq * d
  return batch * seq * per_token + batch * keep * 4.0 * shape["vocab_size"] * d


def peak_tflops(device_kind: str) -> float | None:
  return next((v for k, v in PEAK_TFLOPS.items() if k in device_kind), None)


def xla_bytes(compiled) -> dict:
  """XLA's compile-time bytes of a compiled program: arguments, outputs, temporaries."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # noqa: BLE001 (not every backend reports it)
    return {}
  if m is None:
    return {}
  out = m.output_size_in_bytes - m.alias_size_in_bytes
  return {"xla_args_gb": m.argument_size_in_bytes / GB, "xla_temp_gb": m.temp_size_in_bytes / GB,
          "xla_peak_gb": (m.argument_size_in_bytes + out + m.temp_size_in_bytes) / GB}


def device_peak_gb() -> float | None:
  """The allocator's peak bytes in use on device 0 since the process began (None on CPU)."""
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
  except Exception:  # noqa: BLE001 (CPU backends have no memory stats)
    return None
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / GB


def rounded(d: dict) -> dict:
  return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def synthetic_batch(rng, batch, seq, slots, answer, vocab, user_dim):
  """Prompt tokens with `slots` item slots and one user slot; the last `answer` are the target."""
  ids = rng.integers(4, vocab, size=(batch, seq)).astype(np.int32)
  item_pos = np.sort(rng.choice(np.arange(1, seq - answer - 1), (batch, slots)), axis=1)
  loss_mask = np.zeros((batch, seq), np.float32)
  loss_mask[:, seq - answer - 1 : seq - 1] = 1.0
  return {
      "input_ids": ids, "attention_mask": np.ones((batch, seq), np.int32),
      "item_pos": item_pos.astype(np.int32),
      "item_ids": rng.integers(1, 1000, size=(batch, slots)).astype(np.int32),
      "user_pos": np.full((batch,), seq - answer - 2, np.int32),
      "user_vecs": rng.normal(size=(batch, user_dim)).astype(np.float32),
      "labels": np.concatenate([ids[:, 1:], ids[:, :1]], axis=1), "loss_mask": loss_mask,
  }


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--family", choices=backbone.FAMILIES, default="opt")
  ap.add_argument("--small", action="store_true", help="tiny shapes, float32 (CPU check)")
  ap.add_argument("--layers", type=int, default=0, help="override the number of layers")
  ap.add_argument("--mesh", default="1,-1,1", help="mesh shape over (data, fsdp, tensor)")
  ap.add_argument("--batch", type=int, default=0, help="sequences per step")
  ap.add_argument("--seq", type=int, default=664, help="prompt + answer tokens")
  ap.add_argument("--answer", type=int, default=0,
                  help="answer (loss) tokens at the end of each row (0: 32; --small 13)")
  ap.add_argument("--steps", type=int, default=24, help="timed steps after the first")
  ap.add_argument("--remat", action="store_true", help="rematerialise decoder layers")
  ap.add_argument("--attention", choices=("xla", "cudnn"), default="xla",
                  help="the backbone's attention_impl (cudnn: fused attention, GPU only)")
  ap.add_argument("--all-logits", action="store_true",
                  help="vocabulary logits at every position, not only the answer span")
  args = ap.parse_args(argv)

  shape = dict(SHAPES[(args.family, args.small)])
  if args.layers:
    shape["num_hidden_layers"] = args.layers
  dtype = "float32" if args.small else "bfloat16"
  seq = min(args.seq, shape["max_position_embeddings"])
  extra = {"dropout": 0.0} if args.family == "opt" else {}
  cfg = backbone.config_class(args.family)(**shape, dtype=dtype, param_dtype=dtype,
                                           remat=args.remat, attention_impl=args.attention,
                                           **extra)
  mesh = sharding.make_mesh(tuple(int(x) for x in args.mesh.split(",")))
  batch_size = args.batch or max(8, sharding.batch_divisor(mesh))

  t0 = time.perf_counter()
  llm_params = backbone.init_random(cfg, jax.random.key(0), mesh=mesh)
  jax.block_until_ready(llm_params)
  init_s = time.perf_counter() - t0

  user_dim, item_dim = USER_DIM, ITEM_DIM
  answer = args.answer or (13 if args.small else 32)
  model = stage2.Stage2Model(backbone.build(cfg), SoftPrompts(out_dim=cfg.embed_dim, hidden=128))
  rep = sharding.replicated(mesh)
  trainable = {"prompts": jax.device_put(model.init_prompts(jax.random.key(1), user_dim,
                                                            item_dim), rep), "llm": {}}
  _, frozen_llm = stage2.split_llm_params(llm_params, "frozen")
  items = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(
      size=(NUM_ITEMS + 1, item_dim)).astype(np.float32)), rep)
  frozen = {"llm": frozen_llm, "items": items}
  tx = optax.adam(1e-4)
  state = {"trainable": trainable, "opt": tx.init(trainable)}
  rng = np.random.default_rng(0)
  host = [synthetic_batch(rng, batch_size, seq, SLOTS, answer, cfg.vocab_size, user_dim)
          for _ in range(2)]
  # As the llm stage: logits over the answer span only (unless --all-logits).
  keep = 0 if args.all_logits else stage2.answer_span(host[0]["loss_mask"])
  # The (small) state is replicated in and out of the step, so that the one compiled
  # program (lowered once below, for XLA's memory figures) takes every step's output.
  state = jax.device_put(state, rep)
  step = jax.jit(stage2.make_train_step(model, tx, keep), donate_argnums=0,
                 out_shardings=(rep, rep))
  batches = [{k: jax.device_put(v, sharding.batch_sharding(mesh, v.ndim)) for k, v in b.items()}
             for b in host]
  t0 = time.perf_counter()
  compiled = step.lower(state, frozen, batches[0]).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, m = compiled(state, frozen, batches[0])
  first_loss = float(m["loss"])
  first_step_s = time.perf_counter() - t0
  times, losses = [], []
  for i in range(args.steps):
    t0 = time.perf_counter()
    state, m = compiled(state, frozen, batches[i % 2])
    losses.append(float(m["loss"]))  # syncs: the time covers the whole step
    times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))
  kind = jax.devices()[0].device_kind
  flops = step_flops(shape, batch_size, seq, keep or seq)
  peak = peak_tflops(kind)
  out = {
      "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
      "mesh": dict(mesh.shape), "family": args.family,
      "llm_params": backbone.count_params(llm_params),
      "layers": cfg.num_hidden_layers, "dtype": dtype, "batch": batch_size, "seq": seq,
      "remat": args.remat, "attention": args.attention, "logits_kept": keep or seq,
      "answer_tokens": answer,
      "steps": args.steps, "init_s": init_s, "compile_s": compile_s, "first_step_s": first_step_s,
      "step_s_median": step_s, "step_s_min": float(np.min(times)) if times else None,
      "tokens_per_s": batch_size * seq / step_s, "tflops": flops / step_s / 1e12,
      "mfu": flops / step_s / 1e12 / peak if peak else None, "flops_per_step": flops,
      "loss_first": first_loss, "loss_last": losses[-1] if losses else None,
      **xla_bytes(compiled), "peak_gb": device_peak_gb(),
  }
  out = rounded(out)
  print(json.dumps(out), flush=True)
  return out


if __name__ == "__main__":
  main()
