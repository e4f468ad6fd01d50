"""Short Stage 2 training loop on a 7B-class LLM shape (random weights), sharded.

Builds OPT-6.7B's shapes (32 layers, hidden 4096, 32 heads, ffn 16384, vocab 50272), or
with `--family=llama` Llama-3-8B's (32 layers, hidden 4096, 32 query / 8 KV heads, SwiGLU
14336, vocab 128256), with random bf16 weights directly on the devices, sharded over the
mesh by the backbone's logical axes (default FSDP over every visible GPU), freezes it,
and runs the Stage 2 step (soft prompts P_u/P_i spliced into a hybrid prompt,
answer-only loss, Adam on the projectors only) a few times. Prints compile time, median
step time, tokens/s and peak memory as one JSON line.

  python launch/gpu_smoke.py                     # on the GPU machine, < 3 minutes
  python launch/gpu_smoke.py --family=llama      # Llama-3-8B shapes
  python launch/gpu_smoke.py --small             # CPU check of the same code path
  python launch/gpu_smoke.py --mesh=1,-1,1 --batch=8 --seq=512 --steps=5 --remat
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
  ap.add_argument("--seq", type=int, default=512, help="prompt + answer tokens")
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--remat", action="store_true", help="rematerialise decoder layers")
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
                                           remat=args.remat, **extra)
  mesh = sharding.make_mesh(tuple(int(x) for x in args.mesh.split(",")))
  batch_size = args.batch or max(8, sharding.batch_divisor(mesh))

  t0 = time.perf_counter()
  llm_params = backbone.init_random(cfg, jax.random.key(0), mesh=mesh)
  jax.block_until_ready(llm_params)
  init_s = time.perf_counter() - t0

  user_dim, item_dim = 50, 50
  model = stage2.Stage2Model(backbone.build(cfg), SoftPrompts(out_dim=cfg.embed_dim, hidden=128))
  rep = sharding.replicated(mesh)
  trainable = {"prompts": jax.device_put(model.init_prompts(jax.random.key(1), user_dim,
                                                            item_dim), rep), "llm": {}}
  _, frozen_llm = stage2.split_llm_params(llm_params, "frozen")
  items = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(
      size=(1001, item_dim)).astype(np.float32)), rep)
  frozen = {"llm": frozen_llm, "items": items}
  tx = optax.adam(1e-4)
  state = {"trainable": trainable, "opt": tx.init(trainable)}
  rng = np.random.default_rng(0)
  host = [synthetic_batch(rng, batch_size, seq, 29, 13, cfg.vocab_size, user_dim)
          for _ in range(2)]
  # As the llm stage: logits over the answer span only (unless --all-logits).
  keep = 0 if args.all_logits else stage2.answer_span(host[0]["loss_mask"])
  step = jax.jit(stage2.make_train_step(model, tx, keep), donate_argnums=0)
  batches = [{k: jax.device_put(v, sharding.batch_sharding(mesh, v.ndim)) for k, v in b.items()}
             for b in host]
  t0 = time.perf_counter()
  state, m = step(state, frozen, batches[0])
  first_loss = float(m["loss"])
  compile_s = time.perf_counter() - t0
  times, losses = [], []
  for i in range(args.steps):
    t0 = time.perf_counter()
    state, m = step(state, frozen, batches[i % 2])
    losses.append(float(m["loss"]))  # syncs: the time covers the whole step
    times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))
  stats = {}
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
  except Exception:  # noqa: BLE001 (CPU backends have no memory stats)
    stats = {}
  out = {
      "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
      "mesh": dict(mesh.shape), "family": args.family,
      "llm_params": backbone.count_params(llm_params),
      "layers": cfg.num_hidden_layers, "dtype": dtype, "batch": batch_size, "seq": seq,
      "remat": args.remat, "logits_kept": keep or seq, "init_s": round(init_s, 2),
      "compile_first_step_s": round(compile_s, 2),
      "step_s_median": round(step_s, 4), "tokens_per_s": round(batch_size * seq / step_s, 1),
      "loss_first": round(first_loss, 4), "loss_last": round(losses[-1], 4) if losses else None,
      "peak_bytes_device0": stats.get("peak_bytes_in_use"),
  }
  print(json.dumps(out), flush=True)
  return out


if __name__ == "__main__":
  main()
