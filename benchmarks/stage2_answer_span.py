"""Stage 2 training step: logits over the answer span only vs at every position.

The llm stage computes the vocabulary projection only at the trailing positions that
predict answer tokens (`stage2.answer_span`); the reference is the same jitted step with
logits at every position (what the step did before). Both train the same parameters on
the same left-padded batch of hybrid prompts and give the same loss; the benchmark
checks that, then prints steps/s of each and the ratio.

  python benchmarks/stage2_answer_span.py               # the :cpu small OPT, trained whole
  python benchmarks/stage2_answer_span.py --shape=opt-6.7b --batch=8   # GPU, LLM frozen
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def _smoke():
  """launch/gpu_smoke.py as a module: its OPT-6.7B shape and synthetic Stage 2 batch."""
  import importlib.util

  spec = importlib.util.spec_from_file_location("gpu_smoke", REPO / "launch" / "gpu_smoke.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--shape", choices=["cpu", "opt-6.7b"], default="cpu")
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--seq", type=int, default=384, help="prompt + answer tokens")
  ap.add_argument("--answer", type=int, default=9, help="answer tokens (8 title tokens + eos)")
  ap.add_argument("--steps", type=int, default=20)
  args = ap.parse_args(argv)

  sys.path.insert(0, str(REPO))
  import jax
  import jax.numpy as jnp
  import optax

  from sfubm_jax.llm import stage2
  from sfubm_jax.models.causal_lm.opt import model as opt
  from sfubm_jax.models.projector import SoftPrompts

  smoke = _smoke()
  shapes = {
      # configs/common.py _shrink_cpu: the :cpu variants' small OPT (trained from scratch).
      "cpu": dict(vocab_size=4096, hidden_size=128, num_hidden_layers=2, ffn_dim=512,
                  num_attention_heads=4, max_position_embeddings=1024),
      "opt-6.7b": smoke.OPT_6_7B,
  }
  gpu = args.shape != "cpu"
  dtype = "bfloat16" if gpu else "float32"
  cfg = opt.OPTConfig(**shapes[args.shape], dtype=dtype, param_dtype=dtype, dropout=0.0)
  model = stage2.Stage2Model(opt.OPTForCausalLM(cfg), SoftPrompts(out_dim=cfg.hidden_size,
                                                                  hidden=128))
  llm_params = jax.jit(lambda k: model.llm.init(k, jnp.ones((1, 8), jnp.int32),
                                                attention_mask=jnp.ones((1, 8), jnp.int32)))(
      jax.random.key(0))
  train_llm, frozen_llm = stage2.split_llm_params(llm_params, "frozen" if gpu else "full")
  rng = np.random.default_rng(0)
  batch = smoke.synthetic_batch(rng, args.batch, args.seq, 29, args.answer, cfg.vocab_size, 50)
  frozen = {"llm": frozen_llm,
            "items": jnp.asarray(rng.normal(size=(1001, 50)).astype(np.float32))}
  tx = optax.adam(1e-4)
  keep = stage2.answer_span(batch["loss_mask"])

  def timed(k):
    trainable = {"prompts": model.init_prompts(jax.random.key(1), 50, 50),
                 "llm": jax.tree.map(jnp.copy, train_llm)}
    state = {"trainable": trainable, "opt": tx.init(trainable)}
    step = jax.jit(stage2.make_train_step(model, tx, k), donate_argnums=0)
    state, m = step(state, frozen, batch)
    first = float(m["loss"])
    start = time.perf_counter()
    for _ in range(args.steps):
      state, m = step(state, frozen, batch)
    float(m["loss"])
    return first, (time.perf_counter() - start) / args.steps

  loss_span, s_span = timed(keep)
  loss_all, s_all = timed(0)
  np.testing.assert_allclose(loss_span, loss_all, rtol=2e-2 if gpu else 1e-5)
  out = {"device": jax.devices()[0].device_kind, "shape": args.shape, "batch": args.batch,
         "seq": args.seq, "logits_kept": keep, "loss_first": loss_span,
         "answer_span_step_s": round(s_span, 4), "all_logits_step_s": round(s_all, 4),
         "speedup": round(s_all / s_span, 2)}
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
