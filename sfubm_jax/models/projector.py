"""Soft-prompt projectors P_u and P_i of Stage 2 (SPEC §7, Eq. 15–16).

`p_u = P_u(r_u)` maps the frozen SASRec user state and `p_i = P_i(ẽ_i)` the fused FKD
item embedding into the LLM's input-embedding space. Each is a 2-layer MLP
d → hidden → d_llm with its own activation (GELU for users, tanh for items); with
`hidden=0` it is a single linear map d → d_llm, the `fkd_no_projector` ablation.

`match_rms` rescales a projector's output layer so that, on given inputs, its outputs
have a target root-mean-square (Stage 2 uses the LLM's token embeddings' RMS: soft prompts
then start at the scale of the tokens around them instead of several times above it).
`fit_targets` instead trains both projectors by mean squared error towards given vectors
(Stage 2's "title_fit" init: each item towards its title's mean token embedding, each user
towards that of its next train item), before the next-token loss takes over.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "relu": nn.relu,
}


class Projector(nn.Module):
  """x [..., d] -> [..., out_dim]; MLP with one hidden layer, or linear when hidden == 0."""

  out_dim: int
  hidden: int = 128
  activation: str = "gelu"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(self.dtype)
    if self.hidden > 0:
      x = nn.Dense(self.hidden, dtype=self.dtype, name="hidden")(x)  # [..., H]
      x = ACTIVATIONS[self.activation](x)
    return nn.Dense(self.out_dim, dtype=self.dtype, name="out")(x)  # [..., d_llm]


class SoftPrompts(nn.Module):
  """The pair (P_u, P_i): user states [B, d_u] and item embeddings [B, S, d_i] to d_llm."""

  out_dim: int
  hidden: int = 128
  user_activation: str = "gelu"
  item_activation: str = "tanh"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, user_vecs: jax.Array, item_vecs: jax.Array) -> tuple[jax.Array, jax.Array]:
    p_u = Projector(self.out_dim, self.hidden, self.user_activation, self.dtype, name="user")(
        user_vecs
    )  # [B, d_llm]
    p_i = Projector(self.out_dim, self.hidden, self.item_activation, self.dtype, name="item")(
        item_vecs
    )  # [B, S, d_llm]
    return p_u, p_i


def output_rms(params, user_vecs: jax.Array, item_vecs: jax.Array, module: SoftPrompts
               ) -> tuple[float, float]:
  """Root-mean-square of P_u(user_vecs) [B, d_u] and P_i(item_vecs) [B, S, d_i]."""
  p_u, p_i = module.apply(params, user_vecs, item_vecs)
  rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32)))))
  return rms(p_u), rms(p_i)


def match_rms(params, user_vecs: jax.Array, item_vecs: jax.Array, module: SoftPrompts,
              target: float):
  """`params` with each projector's output layer (kernel and bias) scaled so that its
  outputs on these inputs have root-mean-square `target`. The outputs are linear in that
  layer, so the match is exact."""
  user, item = output_rms(params, user_vecs, item_vecs, module)
  factor = {"user": target / max(user, 1e-12), "item": target / max(item, 1e-12)}
  inner = dict(params["params"])
  for name, f in factor.items():
    layer = dict(inner[name])
    layer["out"] = jax.tree.map(lambda x, f=f: x * f, layer["out"])
    inner[name] = layer
  return {**params, "params": inner}


def fit_targets(params, module: SoftPrompts, user_vecs: jax.Array, user_targets: jax.Array,
                item_vecs: jax.Array, item_targets: jax.Array, *, steps: int, lr: float
                ) -> tuple[dict, dict[str, float]]:
  """`params` after `steps` full-batch Adam steps on MSE(P_u(user_vecs) [U, d_u], user_targets
  [U, D]) + MSE(P_i(item_vecs) [N, d_i], item_targets [N, D]), and each term's error relative
  to its targets' mean square (1 = no better than predicting zero), before and after."""
  opt = optax.adam(lr)

  def errors(p):
    p_u, p_i = module.apply(p, user_vecs, item_vecs[None])
    rel = lambda x, y: jnp.mean(jnp.square(x - y)) / jnp.mean(jnp.square(y))
    return rel(p_u, user_targets), rel(p_i[0], item_targets)

  def step(carry, _):
    p, s = carry
    grads = jax.grad(lambda q: sum(errors(q)))(p)
    updates, s = opt.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), None

  @jax.jit
  def run(p):
    (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
    return p

  before = [float(e) for e in errors(params)]
  params = run(params)
  after = [float(e) for e in errors(params)]
  return params, {"user_rel_mse_before": before[0], "item_rel_mse_before": before[1],
                  "user_rel_mse": after[0], "item_rel_mse": after[1]}
