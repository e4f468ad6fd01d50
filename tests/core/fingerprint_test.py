"""Per-stage fingerprints: a changed field reruns the first stage that reads it and after."""

from conftest import load_config

from sfubm_jax import config_io, fingerprint

STAGES = ["data", "federate", "pretrain", "fkd", "llm", "eval"]


def _saved(config):
  d = config_io.to_dict(config)
  return {s: fingerprint.reads(s, d) for s in STAGES}


def _plan(change):
  base = load_config("tiny")
  saved = _saved(base)
  new = load_config("tiny")
  with new.unlocked():
    change(new)
  return {s.stage: s for s in fingerprint.plan(STAGES, config_io.to_dict(new), saved)}


def _actions(plan):
  return [plan[s].action for s in STAGES]


def test_unchanged_config_skips_everything():
  assert _actions(_plan(lambda c: None)) == ["skip"] * 6


def test_valid_rule_reruns_eval_only_keeping_its_generations():
  plan = _plan(lambda c: setattr(c.llm, "valid_rule", "contains"))
  assert _actions(plan) == ["skip"] * 5 + ["keep"]
  assert "llm.valid_rule 'exact' -> 'contains'" in plan["eval"].reason


def test_new_llm_variant_keeps_the_trained_ones():
  plan = _plan(lambda c: setattr(c.llm, "variants", ("sfubm", "llm_only", "mlp_llm")))
  assert _actions(plan) == ["skip"] * 4 + ["keep", "keep"]


def test_llm_field_redoes_llm_and_eval():
  plan = _plan(lambda c: setattr(c.llm, "lr", 0.5))
  assert _actions(plan) == ["skip"] * 4 + ["redo", "redo"]
  assert plan["eval"].reason == "its input from llm is rebuilt"


def test_eval_only_llm_fields_do_not_retrain():
  plan = _plan(lambda c: setattr(c.llm, "max_new_tokens", 40))
  assert _actions(plan) == ["skip"] * 5 + ["redo"]


def test_upstream_change_redoes_everything_after():
  plan = _plan(lambda c: setattr(c.server, "num_clusters", 5))
  assert _actions(plan) == ["skip", "redo", "redo", "redo", "redo", "redo"]
  assert "server.num_clusters 8 -> 5" in plan["federate"].reason
  plan = _plan(lambda c: setattr(c.data, "seed", 9))
  assert _actions(plan) == ["redo"] * 6


def test_new_fkd_variant_keeps_downstream_outputs():
  plan = _plan(lambda c: setattr(c.fkd, "variants", ("fkd", "kd_local")))
  assert _actions(plan) == ["skip"] * 3 + ["keep", "keep", "keep"]


def test_runtime_fields_never_rerun():
  def change(c):
    c.runtime.checkpoint_every = 99
    c.runtime.log_every_s = 1.0
    c.runtime.max_to_keep = 5
    c.mesh.shape = (1, -1, 1)
    c.text_encoder.batch_size = 7
  assert _actions(_plan(change)) == ["skip"] * 6


def test_unfinished_stage_runs_and_later_finished_ones_redo():
  base = load_config("tiny")
  saved = _saved(base)
  saved["pretrain"] = None
  plan = fingerprint.plan(STAGES, config_io.to_dict(base), saved)
  assert [s.action for s in plan] == ["skip", "skip", "run", "redo", "redo", "redo"]


def test_a_record_from_before_a_new_field_compares_with_its_old_behaviour():
  # Records written before `*.patience` existed lack it: they match patience 0 (what the
  # code did then) and differ from any stop that changes training.
  base = load_config("tiny")
  saved = _saved(base)
  for stage in ("pretrain", "fkd"):
    saved[stage] = {k: v for k, v in saved[stage].items() if not k.endswith(".patience")}
  for value, want in ((0, ["skip"] * 6), (3, ["skip"] * 2 + ["redo"] * 4)):
    new = load_config("tiny")
    with new.unlocked():
      new.sasrec.patience = new.gru4rec.patience = new.fkd.patience = value
    plan = fingerprint.plan(STAGES, config_io.to_dict(new), saved)
    assert [s.action for s in plan] == want
