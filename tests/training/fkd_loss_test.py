"""FKD terms against a numpy brute force; the teacher gets no gradient; variant switches."""

import fkd_fixtures as fx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sfubm_jax.models import fkd

N, D, DT, L, HIDDEN = 12, 8, 6, 6, 5

SEQS = np.array(
    [[0, 0, 3, 5, 5, 7],  # a repeated item
     [1, 2, 3, 4, 6, 12],
     [0, 0, 0, 0, 9, 2],
     [0, 0, 0, 0, 0, 11]],  # one real position: no next-item term
    np.int32,
)
BATCH = {"seqs": SEQS, "touched": SEQS}  # touched: what S' avoids


def _tables():
  """(X, C) [N+1, DT]: local vectors, all distinct; C like the server's reply, each item
  one of 4 centroids."""
  rng = np.random.default_rng(0)
  local = rng.normal(size=(N + 1, DT)).astype(np.float32)
  federated = rng.normal(size=(4, DT)).astype(np.float32)[rng.integers(0, 4, N + 1)]
  local[0] = federated[0] = 0.0
  return local, federated


def _text_in(hp):
  """The raw [N+1, DT] table f_t reads in this variant (not rebuilt from frozen_tables)."""
  local, federated = _tables()
  return local if hp.switches.text == "local" else federated


def _setup(variant="fkd", alpha=0.5, beta=0.2, rec_positions="all"):
  encode, sasrec = fx.frozen_sasrec(N, D, L, seed=1)
  local, federated = _tables()
  hp = fx.hparams(encode, D, DT, variant, hidden=HIDDEN, alpha=alpha, beta=beta,
                  rec_positions=rec_positions)
  params = fkd.init_params(jax.random.PRNGKey(2), hp)
  item_emb = np.asarray(sasrec["params"]["item_emb"]["embedding"])
  text_in = local if fkd.VARIANTS[variant].text == "local" else federated
  frozen = fkd.frozen_tables(sasrec, item_emb, text_in, local)
  return encode, sasrec, hp, params, frozen


def _numpy_terms(encode, sasrec, hp, params, frozen, key):
  """Every term by explicit loops over users and positions, MLPs from the param arrays."""
  p = jax.tree.map(np.asarray, params)
  e_id, x = (np.asarray(frozen[k], np.float64) for k in ("item_emb", "text_local"))
  text_in = _text_in(hp).astype(np.float64)
  cf = np.asarray(fkd.sample_counterfactual(key, jnp.asarray(SEQS), jnp.asarray(SEQS), N))
  h = np.asarray(encode(sasrec, SEQS), np.float64)
  h_cf = np.asarray(encode(sasrec, cf), np.float64)
  r = np.asarray(encode(sasrec, SEQS[:, :-1]), np.float64)
  s = hp.switches
  emb = s.id_weight * e_id + s.text_weight * fx.mlp(p["f_t"], text_in)
  kd, lid, ltxt, rec = [], [], [], []
  for u in range(len(SEQS)):
    kd_u, id_u, txt_u, rec_u = [], [], [], []
    for t in range(L):
      v = SEQS[u, t]
      if v == 0:
        continue
      z_id = fx.mlp(p["f_id"], h[u, t])
      z_t = fx.mlp(p["f_t"], text_in[v])
      m_cf = fx.mlp(p["f_id"], h_cf[u, t]) - fx.mlp(p["f_t"], text_in[cf[u, t]])
      kd_u.append(np.sum((z_id - z_t - m_cf) ** 2))
      id_u.append(np.sum((fx.mlp(p["g_id"], z_id) - h[u, t]) ** 2))
      txt_u.append(np.sum((fx.mlp(p["g_t"], z_t) - x[v]) ** 2))
      last = t == L - 2
      if t < L - 1 and (hp.rec_positions == "all" or last):
        logits = emb[1:] @ r[u, t]  # [N] items 1..N
        logz = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
        rec_u.append(logz - logits[SEQS[u, t + 1] - 1])
    kd.append(np.mean(kd_u))
    lid.append(np.mean(id_u))
    ltxt.append(np.mean(txt_u))
    if rec_u:
      rec.append(np.mean(rec_u))
  terms = {"l_kd": np.mean(kd), "l_id": np.mean(lid), "l_txt": np.mean(ltxt),
           "l_rec": np.mean(rec)}
  terms["loss"] = terms["l_rec"] + terms["l_kd"] + hp.alpha * terms["l_id"] + hp.beta * terms[
      "l_txt"]
  return terms, cf


@pytest.mark.parametrize("variant,rec_positions", [
    ("fkd", "all"), ("kd_local", "all"), ("text_only", "last"), ("id_only", "all")])
def test_each_term_equals_numpy(variant, rec_positions):
  encode, sasrec, hp, params, frozen = _setup(variant, rec_positions=rec_positions)
  key = jax.random.PRNGKey(7)
  loss, aux = jax.jit(lambda p: fkd.fkd_loss(p, frozen, BATCH, key=key, hp=hp))(params)
  expected, _ = _numpy_terms(encode, sasrec, hp, params, frozen, key)
  for name, value in expected.items():
    np.testing.assert_allclose(float(aux[name]), value, rtol=2e-5, err_msg=name)
    assert value > 0.0, name  # every term is active on this batch
  assert float(loss) == pytest.approx(expected["loss"], rel=2e-5)


def test_padding_rows_do_not_count():
  _, _, hp, params, frozen = _setup()
  key = jax.random.PRNGKey(7)
  padded = np.concatenate([SEQS, np.zeros((4, L), np.int32)])
  loss = jax.jit(
      lambda s: fkd.fkd_loss(params, frozen, {"seqs": s, "touched": s}, key=key, hp=hp)[1])
  a, b = loss(SEQS), loss(padded)
  for name in ("l_rec", "l_id", "l_txt"):  # (L_KD's draws depend on the batch shape)
    np.testing.assert_allclose(float(a[name]), float(b[name]), rtol=1e-6, err_msg=name)


def test_teacher_mediator_gets_no_gradient():
  """∂L_KD/∂θ equals the gradient of ‖M(θ) − T‖² with the teacher T a fixed array."""
  encode, sasrec, hp, params, frozen = _setup()
  key = jax.random.PRNGKey(3)
  _, cf = _numpy_terms(encode, sasrec, hp, params, frozen, key)
  p_np = jax.tree.map(np.asarray, params)
  text_in = _text_in(hp)
  h = encode(sasrec, SEQS)
  teacher = (fx.mlp(p_np["f_id"], np.asarray(encode(sasrec, cf)))
             - fx.mlp(p_np["f_t"], text_in[cf]))  # [B, L, d] constant
  real = jnp.asarray(SEQS > 0, jnp.float32)

  def reference(p):
    m = fx.mlp(p["f_id"], h, jnp) - fx.mlp(p["f_t"], jnp.asarray(text_in[SEQS]), jnp)
    per_pos = jnp.sum((m - teacher) ** 2, -1) * real
    return jnp.mean(per_pos.sum(-1) / real.sum(-1))

  got = jax.grad(lambda p: fkd.fkd_loss(p, frozen, BATCH, key=key, hp=hp)[1]["l_kd"])(
      params)
  want = jax.grad(reference)(params)
  for name in ("f_id", "f_t"):
    for g, w in zip(jax.tree.leaves(got[name]), jax.tree.leaves(want[name])):
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)
  # The test can tell: with the teacher differentiated the f_id gradient is different.
  h_cf = encode(sasrec, cf)

  def no_stop_gradient(p):
    m = fx.mlp(p["f_id"], h, jnp) - fx.mlp(p["f_t"], jnp.asarray(text_in[SEQS]), jnp)
    m_cf = fx.mlp(p["f_id"], h_cf, jnp) - fx.mlp(p["f_t"], jnp.asarray(text_in[cf]), jnp)
    per_pos = jnp.sum((m - m_cf) ** 2, -1) * real
    return jnp.mean(per_pos.sum(-1) / real.sum(-1))

  leaky = jax.grad(no_stop_gradient)(params)
  joint_hp = fx.hparams(encode, D, DT, "fkd", hidden=HIDDEN, teacher="joint")
  joint = jax.grad(lambda p: fkd.fkd_loss(p, frozen, BATCH, key=key, hp=joint_hp)[1][
      "l_kd"])(params)
  for g, w in zip(jax.tree.leaves(joint["f_id"]), jax.tree.leaves(leaky["f_id"])):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(float(no_stop_gradient(params)), float(reference(params)), rtol=1e-5)
  gap = np.abs(np.asarray(leaky["f_id"]["params"]["hidden"]["kernel"])
               - np.asarray(want["f_id"]["params"]["hidden"]["kernel"])).max()
  assert gap > 1e-2 * np.abs(np.asarray(want["f_id"]["params"]["hidden"]["kernel"])).max()
  for name in ("g_id", "g_t"):  # L_KD does not reach the decoders
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(got[name]))


def test_counterfactual_avoids_the_users_items_and_is_uniform():
  seqs = jnp.asarray(np.tile(SEQS, (2500, 1)))
  cf = np.asarray(fkd.sample_counterfactual(jax.random.PRNGKey(0), seqs, seqs, N))
  assert np.array_equal(cf > 0, np.asarray(seqs) > 0)  # same padding pattern
  assert cf.max() <= N
  for u, row in enumerate(SEQS):
    draws = cf[u::len(SEQS)][:, row > 0].ravel()
    allowed = np.setdiff1d(np.arange(1, N + 1), row[row > 0])
    assert np.isin(draws, allowed).all()
    counts = np.array([(draws == i).sum() for i in allowed])
    expected = len(draws) / len(allowed)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 3 * len(allowed) + 30, (u, counts)  # far below for a uniform draw


def test_variants_change_only_what_they_should():
  _, _, hp, params, frozen = _setup("fkd")
  e_id = np.asarray(frozen["item_emb"])
  f_t = fx.mlp(jax.tree.map(np.asarray, params["f_t"]), _text_in(hp))
  emb = {v: np.asarray(fkd.fused_item_embeddings(
      params, frozen, fx.hparams(hp.encode, D, DT, v, hidden=HIDDEN))) for v in fkd.VARIANTS}
  np.testing.assert_allclose(emb["fkd"][1:], e_id[1:] + f_t[1:], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(emb["id_only"][1:], e_id[1:])
  np.testing.assert_allclose(emb["text_only"][1:], f_t[1:], rtol=1e-5, atol=1e-6)
  for v in fkd.VARIANTS:
    assert not emb[v][0].any()  # padding row
  # The only difference of kd_local is the table f_t reads: X instead of C.
  assert fkd.VARIANTS["kd_local"] == fkd.Switches("local", 1.0, 1.0)
  assert fkd.VARIANTS["fkd"] == fkd.Switches("federated", 1.0, 1.0)


def test_zero_text_init_starts_at_the_sasrec_table():
  _, _, hp, params, frozen = _setup()
  hp0 = fx.hparams(hp.encode, D, DT, "fkd", hidden=HIDDEN, text_out_init=0.0)
  params0 = fkd.init_params(jax.random.PRNGKey(2), hp0)
  emb = np.asarray(fkd.fused_item_embeddings(params0, frozen, hp0))
  np.testing.assert_array_equal(emb[1:], np.asarray(frozen["item_emb"])[1:])
  grads = jax.grad(lambda p: fkd.fkd_loss(p, frozen, BATCH, key=jax.random.PRNGKey(0),
                                          hp=hp0)[0])(params0)
  assert np.abs(np.asarray(grads["f_t"]["params"]["out"]["kernel"])).sum() > 0  # it can learn


def test_counterfactual_avoids_held_out_targets():
  # touched = the stored sequence: training items plus the validation and test targets.
  train = np.array([[0, 0, 3, 5, 7]], np.int32)
  touched = np.array([[0, 3, 5, 7, 9, 11]], np.int32)  # 9, 11: held-out targets
  seqs = jnp.asarray(np.tile(train, (4000, 1)))
  cf = np.asarray(fkd.sample_counterfactual(jax.random.PRNGKey(1), seqs,
                                            jnp.asarray(np.tile(touched, (4000, 1))), 12))
  drawn = set(cf[cf > 0].tolist())
  assert drawn == set(range(1, 13)) - {3, 5, 7, 9, 11}


def _torch_ref(repo_root):
  import importlib.util

  mods = {}
  for name in ("sasrec_torch", "fkd_torch"):
    spec = importlib.util.spec_from_file_location(name, repo_root / "benchmarks" / f"{name}.py")
    mods[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mods[name])
  return mods["sasrec_torch"], mods["fkd_torch"]


def test_pytorch_reference_matches_loss_and_gradients(repo_root):
  """The benchmark's PyTorch FKD: same loss and gradients given the same S' (to 1e-5)."""
  import torch

  sasrec_torch, fkd_torch = _torch_ref(repo_root)
  encode, sasrec, hp, params, frozen = _setup("fkd")
  key = jax.random.PRNGKey(7)
  (loss, _), grads = jax.value_and_grad(
      lambda p: fkd.fkd_loss(p, frozen, BATCH, key=key, hp=hp), has_aux=True)(params)
  cf = np.asarray(fkd.sample_counterfactual(key, jnp.asarray(SEQS), jnp.asarray(SEQS), N))

  t_sasrec = sasrec_torch.TorchSASRec(N, D, 1, 1, 0.0, L).eval()
  sasrec_torch.load_flax_params(t_sasrec, sasrec)
  nets = fkd_torch.TorchFKD(D, DT, HIDDEN)
  fkd_torch.load_flax_params(nets, params)
  t_frozen = {k: torch.tensor(np.asarray(frozen[k])) for k in ("item_emb", "text_local")}
  t_frozen["text_rows"], t_frozen["text_index"] = fkd_torch.text_tables(
      torch.tensor(_text_in(hp)))
  seqs = torch.tensor(SEQS, dtype=torch.long)
  t_loss = fkd_torch.fkd_loss(nets, t_sasrec, t_frozen, seqs, seqs,
                              cf=torch.tensor(cf, dtype=torch.long))
  t_loss.backward()
  assert float(t_loss.detach()) == pytest.approx(float(loss), rel=1e-5)
  for name in fkd.NETS:
    seq = getattr(nets, name)
    g = grads[name]["params"]
    for layer, part in ((seq[0], "hidden"), (seq[2], "out")):
      np.testing.assert_allclose(layer.weight.grad.numpy().T, np.asarray(g[part]["kernel"]),
                                 atol=1e-5, rtol=1e-4, err_msg=f"{name}.{part}")
      np.testing.assert_allclose(layer.bias.grad.numpy(), np.asarray(g[part]["bias"]),
                                 atol=1e-5, rtol=1e-4, err_msg=f"{name}.{part}")


def test_pytorch_counterfactual_avoids_touched_items(repo_root):
  import torch

  _, fkd_torch = _torch_ref(repo_root)
  seqs = torch.tensor(np.tile(SEQS, (50, 1)), dtype=torch.long)
  cf = fkd_torch.sample_counterfactual(seqs, seqs, N, torch.Generator().manual_seed(0))
  assert torch.equal(cf == 0, seqs == 0)
  for row, touched in zip(cf.numpy(), seqs.numpy()):
    assert not set(row[row > 0]) & set(touched[touched > 0])
  drawn = set(cf[0::4].flatten().tolist()) - {0}
  assert drawn == set(range(1, N + 1)) - set(SEQS[0].tolist())  # all free items occur


def test_text_tables_keep_distinct_rows_only():
  """f_t runs on the distinct rows of C (K+1 of them), and ẽ is what f_t on every row gives."""
  _, _, hp, params, frozen = _setup("fkd")
  local, federated = _tables()
  assert frozen["text_rows"].shape[0] <= 5  # 4 centroids + the padding row
  rows, index = np.asarray(frozen["text_rows"]), np.asarray(frozen["text_index"])
  np.testing.assert_array_equal(rows[index], federated)
  kept = fkd.frozen_tables(frozen["sasrec"], frozen["item_emb"], local, local)
  assert kept["text_index"].shape == (0,)  # all rows distinct: kept as they are
  np.testing.assert_array_equal(kept["text_rows"], local)
  f_t = fx.mlp(jax.tree.map(np.asarray, params["f_t"]), federated)  # on all N+1 rows
  np.testing.assert_allclose(np.asarray(fkd.fused_item_embeddings(params, frozen, hp))[1:],
                             np.asarray(frozen["item_emb"])[1:] + f_t[1:], rtol=1e-5, atol=1e-6)
