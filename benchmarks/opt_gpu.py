"""Flax OPT vs PyTorch `transformers` OPT: the Stage-2 step and greedy decoding.

GPU (OPT-6.7B shapes, random bf16 weights built on the device; < 4 minutes on one H100):
  python benchmarks/opt_gpu.py
  python benchmarks/opt_gpu.py --parts ours_step,torch_step --attention cudnn
CPU (a small config in float32; what the project's dev box records):
  python benchmarks/opt_gpu.py --small

Parts: ours_step, torch_step (Stage-2 step: forward + backward to the input embeddings,
weights frozen, loss on the last `--target` tokens), ours_decode, torch_decode (greedy,
`--new-tokens` forced: no stop token). The PyTorch parts run first, in a child process,
so the two frameworks never share GPU memory. Results print as they come and, with
`--out`, are written as JSON.

FLOP model (stated, not 6N): per token, a weight matmul costs 2·n_in·n_out forward and
the same again backward for the input gradient only (no weight gradient): 4·N with N =
decoder matmul weights + the tied lm_head. Attention (QKᵀ and PV over the full T×T
square) costs 4·L·T·d forward and twice that backward: 12·L·T·d. MFU = FLOPs / time /
peak, peak = 989 TFLOP/s dense bf16 on H100 and H200 (or `--peak-tflops`).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

OPT_6_7B = dict(vocab_size=50272, hidden_size=4096, num_hidden_layers=32, ffn_dim=16384,
                num_attention_heads=32, max_position_embeddings=2048)
SMALL = dict(vocab_size=8192, hidden_size=256, num_hidden_layers=4, ffn_dim=1024,
             num_attention_heads=4, max_position_embeddings=1024)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}
PARTS = ("torch_step", "torch_decode", "ours_step", "ours_decode")


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--small", action="store_true", help="small config, float32 (CPU)")
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
  p.add_argument("--batch", type=int, default=None, help="step batch (8; small 4)")
  p.add_argument("--seq", type=int, default=None, help="step tokens per row (512; small 128)")
  p.add_argument("--target", type=int, default=32, help="loss tokens at the end of each row")
  p.add_argument("--decode-batch", type=int, default=None, help="decoding batch (16; small 4)")
  p.add_argument("--prompt-len", type=int, default=None, help="prompt length (128; small 32)")
  p.add_argument("--new-tokens", type=int, default=None, help="new tokens (128; small 32)")
  p.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
  p.add_argument("--attention", default="xla", choices=("xla", "cudnn"), help="our attention")
  p.add_argument("--remat", action="store_true", help="rematerialise our decoder layers")
  p.add_argument("--peak-tflops", type=float, default=None, help="override the peak")
  p.add_argument("--out", default="", help="write results here as JSON")
  p.add_argument("--child", default="", help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  small = a.small
  a.shape = SMALL if small else OPT_6_7B
  a.dtype = "float32" if small else "bfloat16"
  a.batch = a.batch or (4 if small else 8)
  a.seq = a.seq or (128 if small else 512)
  a.decode_batch = a.decode_batch or (4 if small else 16)
  a.prompt_len = a.prompt_len or (32 if small else 128)
  a.new_tokens = a.new_tokens or (32 if small else 128)
  a.parts = [x for x in a.parts.split(",") if x]
  unknown = set(a.parts) - set(PARTS)
  if unknown:
    p.error(f"unknown parts {sorted(unknown)}")
  return a


def step_flops(shape: dict, tokens: int, seq: int) -> float:
  d, f, layers = shape["hidden_size"], shape["ffn_dim"], shape["num_hidden_layers"]
  matmul_weights = layers * (4 * d * d + 2 * d * f) + shape["vocab_size"] * d
  return tokens * (4.0 * matmul_weights + 12.0 * layers * seq * d)


def make_data(a):
  """Token ids, masks and labels shared by both frameworks (same numpy seed)."""
  import numpy as np

  rng = np.random.default_rng(0)
  vocab = a.shape["vocab_size"]
  ids = rng.integers(4, vocab, (a.batch, a.seq)).astype(np.int64)
  mask = np.ones_like(ids)
  loss_mask = np.zeros_like(ids)
  loss_mask[:, -a.target:] = 1
  lengths = rng.integers(a.prompt_len // 2, a.prompt_len + 1, a.decode_batch)
  lengths[0] = a.prompt_len
  prompt = rng.integers(4, vocab, (a.decode_batch, a.prompt_len)).astype(np.int64)
  prompt_mask = (np.arange(a.prompt_len)[None] >= a.prompt_len - lengths[:, None]).astype(np.int64)
  prompt = np.where(prompt_mask == 1, prompt, 1)  # left padded with <pad> = 1
  return ids, mask, loss_mask, prompt, prompt_mask


def report(results: dict, name: str, **values) -> None:
  results[name] = values
  print(f"[{name}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in values.items()), flush=True)


# ---------------------------------------------------------------- PyTorch (child process)

def run_torch(a) -> dict:
  import torch
  import transformers

  results = {}
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
  report(results, "torch_env", torch=torch.__version__, transformers=transformers.__version__,
         device=name)
  dtype = getattr(torch, a.dtype)
  cfg = transformers.OPTConfig(**a.shape)
  t0 = time.perf_counter()
  with torch.device(dev):
    model = transformers.OPTForCausalLM._from_config(cfg, dtype=dtype,
                                                     attn_implementation="sdpa").eval()
  model.requires_grad_(False)
  report(results, "torch_init", seconds=time.perf_counter() - t0)
  ids, mask, loss_mask, prompt, prompt_mask = (torch.from_numpy(x).to(dev) for x in make_data(a))
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

  def step():
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, attention_mask=mask).logits[:, :-1].float()
    labels, weights = ids[:, 1:], loss_mask[:, 1:].float()
    nll = torch.logsumexp(logits, -1) - logits.gather(-1, labels[..., None])[..., 0]
    loss = (nll * weights).sum() / weights.sum()
    loss.backward()
    return loss, embeds.grad

  if "torch_step" in a.parts:
    timed(results, "torch_step", step, sync, a, tokens=a.batch * a.seq)
  if "torch_decode" in a.parts:
    def decode():
      with torch.no_grad():
        return model.generate(input_ids=prompt, attention_mask=prompt_mask, do_sample=False,
                              max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                              pad_token_id=1)
    timed(results, "torch_decode", decode, sync, a, tokens=a.decode_batch * a.new_tokens,
          steps=2)
  return results


def timed(results, name, fn, sync, a, *, tokens: int, steps: int | None = None):
  """One warm-up (compile) call, then `steps` timed calls; tokens/s and MFU of steps.

  A part that fails is reported and skipped, so one broken part costs no other numbers.
  """
  t0 = time.perf_counter()
  try:
    fn()
    sync()
  except Exception as e:  # a benchmark goes on with its other parts
    report(results, name, error=f"{type(e).__name__}: {str(e)[:300]}")
    return
  warm = time.perf_counter() - t0
  steps = steps or a.steps
  t0 = time.perf_counter()
  for _ in range(steps):
    fn()
  sync()
  seconds = (time.perf_counter() - t0) / steps
  values = dict(first_call_s=warm, seconds=seconds, tokens_per_s=tokens / seconds)
  if name.endswith("_step"):
    flops = step_flops(a.shape, tokens, a.seq)
    values["tflops"] = flops / seconds / 1e12
    if a.peak:
      values["mfu"] = values["tflops"] / a.peak
  report(results, name, **values)


# ---------------------------------------------------------------- Flax (this process)

def run_ours(a) -> dict:
  import flax
  import jax
  import jax.numpy as jnp

  from sfubm_jax.llm.decoding import make_greedy_generate
  from sfubm_jax.models.causal_lm.opt.checkpoint import init_opt
  from sfubm_jax.models.causal_lm.opt.model import OPTConfig, OPTForCausalLM

  results = {}
  device = jax.devices()[0]
  report(results, "jax_env", jax=jax.__version__, flax=flax.__version__,
         device=device.device_kind)
  cfg = OPTConfig(**a.shape, dtype=a.dtype, param_dtype=a.dtype, attention_impl=a.attention,
                  remat=a.remat)
  model = OPTForCausalLM(cfg)
  t0 = time.perf_counter()
  params = jax.block_until_ready(init_opt(cfg, jax.random.key(0, impl="unsafe_rbg")))
  report(results, "ours_init", seconds=time.perf_counter() - t0)
  ids, mask, loss_mask, prompt, prompt_mask = (jnp.asarray(x, jnp.int32) for x in make_data(a))
  embed = jax.jit(lambda p, x: model.apply(p, x, method=OPTForCausalLM.embed_tokens))

  def loss_fn(params, embeds):
    logits, _ = model.apply(params, inputs_embeds=embeds, attention_mask=mask)
    logits = logits[:, :-1]  # [B, T-1, V] float32
    labels, weights = ids[:, 1:], loss_mask[:, 1:].astype(jnp.float32)
    nll = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[..., None], -1)[..., 0]
    return jnp.sum(nll * weights) / jnp.sum(weights)

  sync = lambda: None
  if "ours_step" in a.parts:
    grad_step = jax.jit(jax.value_and_grad(loss_fn, argnums=1))
    embeds = embed(params, ids)
    timed(results, "ours_step", lambda: jax.block_until_ready(grad_step(params, embeds)), sync,
          a, tokens=a.batch * a.seq)
  if "ours_decode" in a.parts:
    generate = make_greedy_generate(model, max_new_tokens=a.new_tokens, eos_token_ids=())
    prompt_embeds = embed(params, prompt)
    timed(results, "ours_decode",
          lambda: jax.block_until_ready(generate(params, prompt_embeds, prompt_mask)), sync, a,
          tokens=a.decode_batch * a.new_tokens, steps=2)
  return results


def main(argv=None) -> None:
  a = parse_args(argv)
  a.peak = a.peak_tflops
  if a.child == "torch":
    a.peak = a.peak or _peak_from_torch()
    print("RESULT " + json.dumps(run_torch(a)), flush=True)
    return
  results = {"args": {k: v for k, v in vars(a).items() if k != "shape"}, "shape": a.shape}
  torch_parts = [p for p in a.parts if p.startswith("torch")]
  if torch_parts:
    cmd = [sys.executable, __file__, "--child", "torch", *(argv or sys.argv[1:])]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=os.environ)
    for line in proc.stdout.splitlines():
      if line.startswith("RESULT "):
        results.update(json.loads(line[len("RESULT "):]))
      else:
        print(line, flush=True)
    if proc.returncode:
      print(f"[torch] child failed with exit code {proc.returncode}; continuing", flush=True)
  if any(p.startswith("ours") for p in a.parts):
    import jax

    kind = jax.devices()[0].device_kind
    a.peak = a.peak or next((v for k, v in PEAK_TFLOPS.items() if k in kind), None)
    results.update(run_ours(a))
  for part in ("step", "decode"):
    ours, theirs = results.get(f"ours_{part}"), results.get(f"torch_{part}")
    if ours and theirs:
      report(results, f"ratio_{part}", ours_over_torch=ours["tokens_per_s"] /
             theirs["tokens_per_s"])
  if a.out:
    from sfubm_jax import io_utils

    io_utils.write_json(a.out, results)


def _peak_from_torch() -> float | None:
  import torch

  if not torch.cuda.is_available():
    return None
  name = torch.cuda.get_device_name()
  return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


if __name__ == "__main__":
  main()
