"""Frozen pre-trained models for the later stages (FKD, Stage 2).

Reads what the `pretrain` stage saved under `DIR/pretrain/<domain>/<model>/` and the
fused item embeddings the `fkd` stage saved at `DIR/fkd/<domain>/<variant>/item_emb.npy`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.training import seqrec_train as st

ID_METHODS = ("sasrec", "gru4rec")
FKD_METHODS = ("fkd", "kd_local", "id_only", "text_only")


def _pretrain_dir(workdir, domain: str, kind: str) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / "pretrain" / domain / kind


def load_pretrained(workdir, domain: str, kind: str) -> tuple[nn.Module, dict]:
  """(model, best-on-valid params) of `kind` in {"sasrec", "gru4rec"} for `domain`."""
  directory = _pretrain_dir(workdir, domain, kind)
  params_path, model_path = directory / "params.msgpack", directory / "model.json"
  for path in (params_path, model_path):
    if not path.exists():
      raise UserError(f"no pre-trained {kind} for domain {domain!r}: {path} is missing; run "
                      f"the pretrain stage first (--stages=pretrain) with this --workdir")
  spec = io_utils.read_json(model_path)["spec"]
  model = st.build_model(kind, spec)
  target = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, spec["max_len"]), jnp.int32)))
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target)
  try:
    params = serialization.from_bytes(target, params_path.read_bytes())
  except (ValueError, KeyError) as e:
    raise UserError(f"{params_path} does not fit the model in {model_path} ({e}); rerun the "
                    f"pretrain stage in a fresh --workdir") from e
  return model, jax.tree.map(jnp.asarray, params)


def load_sasrec(workdir, domain: str) -> tuple[nn.Module, dict]:
  """(SASRec module, frozen best-on-valid params) of `domain`."""
  return load_pretrained(workdir, domain, "sasrec")


def load_item_embeddings(workdir, domain: str, method: str) -> np.ndarray:
  """Item embeddings [N+1, d] float32 of `method` (row 0 = padding).

  "sasrec"/"gru4rec": the pre-trained item table; "fkd", "kd_local", "id_only",
  "text_only": the fused ID-Encoding-Layer embeddings the fkd stage saved.
  """
  if method in ID_METHODS:
    _, params = load_pretrained(workdir, domain, method)
    return np.asarray(params["params"]["item_emb"]["embedding"], np.float32)
  if method in FKD_METHODS:
    path = pathlib.Path(workdir).absolute() / "fkd" / domain / method / "item_emb.npy"
    if not path.exists():
      raise UserError(f"no {method} item embeddings for domain {domain!r}: {path} is missing; "
                      f"run the fkd stage first (--stages=fkd) with this --workdir")
    return np.load(path, allow_pickle=False).astype(np.float32)
  raise UserError(f"unknown item-embedding method {method!r}; methods are "
                  f"{ID_METHODS + FKD_METHODS}")


def make_user_encoder(workdir, domain: str, batch_size: int = 256
                      ) -> Callable[[np.ndarray], np.ndarray]:
  """seqs [B, L] int32 (left-padded) -> r_u [B, d] float32: frozen SASRec's last output.

  Jitted once for [batch_size, L]; larger inputs run in chunks, smaller ones are padded.
  """
  model, params = load_sasrec(workdir, domain)

  @jax.jit
  def last_output(seqs):
    return model.apply(params, seqs, deterministic=True)[:, -1]  # [b, d]

  def encode(seqs: np.ndarray) -> np.ndarray:
    seqs = np.asarray(seqs, np.int32)
    if seqs.ndim != 2:
      raise ValueError(f"seqs [B, L] expected, got shape {seqs.shape}")
    out = []
    for i in range(0, len(seqs), batch_size):
      chunk = np.zeros((batch_size, seqs.shape[1]), np.int32)
      part = seqs[i:i + batch_size]
      chunk[: len(part)] = part
      out.append(np.asarray(last_output(chunk))[: len(part)])
    if not out:
      return np.zeros((0, params["params"]["item_emb"]["embedding"].shape[1]), np.float32)
    return np.concatenate(out).astype(np.float32)

  return encode
