"""report.md from a synthetic workdir: our numbers beside the paper's, plots written."""

from conftest import load_config

from sfubm_jax import io_utils, report, results


def test_report_tables_and_plots(tmp_path):
  config = load_config("food_kitchen", "cpu")
  # The report states the Stage 2 sizes from the config; pin them so that the test does
  # not follow the :cpu defaults.
  config.llm.eval_users, config.llm.epochs, config.llm.batch_size = 64, 2, 8
  w = tmp_path
  results.update_results(w, "sasrec", "food", {"hit@1": 0.1234, "ndcg@10": 0.3})
  results.update_results(w, "pop", "food", {"hit@1": 0.0456, "ndcg@10": 0.2})
  results.update_results(w, "sfubm", "food", {"hit@1": 0.3141, "valid_ratio": 0.9, "hit@1_valid":
                                              0.349, "rank_hit@1": 0.25, "rank_ndcg@10": 0.5})
  results.update_results(w, "llm_text_only", "food", {"hit@1": 0.2718, "valid_ratio": 0.5})
  results.update_results(w, "text_only", "food", {"hit@1": 0.0777})
  table = "| domain | users |\n|---|---|\n| food | 7 |\n"
  io_utils.atomic_write_text(w / "data" / "stats.md", table)
  io_utils.write_json(w / "federate" / "food" / "privacy.json",
                      {"sim": 0.5511, "reid@1": 0.0123, "noise_scale": 0.1,
                       "mech_top10": 0.4321, "unprotected": False})
  io_utils.write_json(w / "federate" / "kitchen" / "privacy.json",
                      {"sim": 0.9, "reid@1": 0.0, "noise_scale": 0.1, "unprotected": True})
  io_utils.write_json(w / "llm" / "food" / "sfubm" / "history.json",
                      {"loss": [3.0, 2.0, 1.5], "train_mode": "frozen", "prompts": 256,
                       "llm": {"family": "llama", "params": 134515008, "layers": 30,
                               "hidden": 576, "source": "smollm2-135m-instruct",
                               "train_mode": "frozen"}})
  results.update_results(w, "stage2_sample", "food", {"users": 200, "pop_hit@1": 0.0521,
                                                      "sasrec_hit@1": 0.2222})
  io_utils.write_json(w / "pretrain" / "food" / "sasrec" / "history.json",
                      [{"epoch": 1, "loss": 5.0}, {"epoch": 2, "loss": 4.0}])
  text = report.write_report(config, w).read_text()
  row = next(line for line in text.splitlines() if line.startswith("| sfubm |"))
  assert "0.3141" in row and "90.00%" in row and "0.3662" in row  # ours beside the paper's
  assert "0.1234" in text and "0.2685" in text  # SASRec ours / paper
  t4 = next(line for line in text.splitlines() if line.startswith("| llm_text_only |"))
  assert "0.2718" in t4 and "0.0777" in t4  # Stage 2 ablation beside Stage 1 FKD variant
  assert "| food | 0.1 | 0.5511 | 0.0123 | – | 0.4321 |" in text
  assert "UNPROTECTED RUN" in text and "for kitchen" in text
  assert next(line for line in text.splitlines() if line.startswith("| pop |")).count("0.0456")
  assert "| food | 7 |" in text
  assert ("LLM that ran: llama family, 134.5M parameters, 30 layers, hidden 576, from "
          "`smollm2-135m-instruct`; frozen (only the projectors train)") in text
  assert "train mode `frozen`" in text
  assert "Stage 2 sample sizes (food): 256 training prompts" in text
  assert "200 evaluated test users (`llm.eval_users=64`" in text
  assert "On the 200 test users that Stage 2 evaluated" in text
  assert "pop Hit@1 0.0521" in text and "sasrec Hit@1 0.2222" in text
  assert "mlp_llm | not run" in text
  assert "`llm.train_targets=last`): one per user" in text and "2 epochs, batch 8" in text
  config.llm.epochs = 1
  assert "; 1 epoch, batch 8, Adam" in report.write_report(config, w).read_text()
  for png in ("report_plots/llm_food.png", "report_plots/pretrain_food_sasrec.png"):
    assert f"]({png})" in text
    assert (w / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_numeric_series_shapes():
  assert report.numeric_series({"loss": [1, 2], "note": "x"}) == {"loss": [1.0, 2.0]}
  assert report.numeric_series([{"epoch": 1, "a": 1.0}, {"epoch": 2, "a": 0.5}]) == {
      "a": [1.0, 0.5]}
  assert report.numeric_series({"history": {"loss": [1.0]}}) == {"history/loss": [1.0]}


def test_stage1_training_length_names_early_stops(tmp_path):
  config = load_config("food_kitchen", "cpu")
  w = tmp_path
  io_utils.write_json(w / "pretrain" / "food" / "sasrec" / "history.json",
                      {"epoch_loss": [5.0] * 25, "valid": [], "stopped_at": 25})
  io_utils.write_json(w / "pretrain" / "food" / "sasrec" / "metrics.json", {"best_epoch": 15})
  io_utils.write_json(w / "fkd" / "food" / "fkd" / "metrics.json",
                      {"best_epoch": 1, "history": {"epoch_loss": [9.0] * 10}})
  text = report.write_report(config, w).read_text()
  assert ("| food/sasrec | 25 of 40 | 15 | early stop after epoch 25 (`sasrec.patience=1`) |"
          in text)
  assert "| food/fkd | 10 of 10 | 1 | all |" in text
