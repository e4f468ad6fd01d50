"""launch/gpu_stage2.py: the device check's parts at small shapes on the CPU, and its FLOP model."""

import importlib.util
import json
import math
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load(name):
  spec = importlib.util.spec_from_file_location(name, REPO / "launch" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_step_flops_by_hand():
  smoke = _load("gpu_smoke")
  # OPT: d=2, ffn 3, 1 layer, vocab 5. N_dec = 4·d² + 2·d·f = 16 + 12 = 28.
  opt = dict(hidden_size=2, ffn_dim=3, num_hidden_layers=1, num_attention_heads=1,
             vocab_size=5)
  # batch 1 × seq 2: 2 tokens × (4·28 + 12·1·2·2) + 1 row × keep 1 × 4·5·2 = 320 + 40
  assert smoke.step_flops(opt, batch=1, seq=2, keep=1) == 360.0
  # Llama: d=4, 2 heads (head dim 2), 1 KV head, SwiGLU 3: 2·16 + 2·4·2 + 3·4·3 = 84.
  llama = dict(hidden_size=4, intermediate_size=3, num_hidden_layers=1,
               num_attention_heads=2, num_key_value_heads=1, vocab_size=5)
  assert smoke.decoder_matmul_weights(llama) == 84
  # 3 rows × 4 tokens × (4·84 + 12·1·4·4) + 3 rows × keep 2 × 4·5·4
  assert smoke.step_flops(llama, batch=3, seq=4, keep=2) == 12 * (336 + 192) + 480


def test_small_parts_run_and_agree(tmp_path):
  g2 = _load("gpu_stage2")
  out = g2.main(["--small", "--families=opt,llama", "--parts=torch,train,eval",
                 f"--out={tmp_path}"])
  parts = out["parts"]
  assert set(parts) == {f"{f}:{p}" for f in ("opt", "llama") for p in ("torch", "train", "eval")}
  for name, r in parts.items():
    assert "error" not in r, (name, r.get("error"), r.get("log_tail", "")[-1500:])
  for family in ("opt", "llama"):
    torch_part, train, ev = (parts[f"{family}:{p}"] for p in ("torch", "train", "eval"))
    # The same batch in both frameworks: same shape, same answer span.
    assert (torch_part["batch"], torch_part["seq"], torch_part["logits_kept"]) == (
        train["batch"], train["seq"], train["logits_kept"])
    for r in (torch_part, train):  # both steps train their projectors
      assert math.isfinite(r["loss_first"]) and r["loss_last"] < r["loss_first"]
    assert train["devices"] == 8 and train["mesh"]["fsdp"] == 8  # sharded (conftest)
    # The eval program's greedy tokens are those of plain greedy decoding (float32 here).
    assert ev["decode_matches_eval"] and ev["eval_finite"] and ev["decoded"] == 8
    assert ev["rank_chunk"] == 20 and ev["candidates"] == 20
    assert torch_part["decoded"] == ev["new_tokens"] == 8
    assert out["ratios"][f"{family}:step"] > 0 and out["ratios"][f"{family}:decode"] > 0
  lines = [json.loads(x) for x in (tmp_path / "gpu_stage2.jsonl").read_text().splitlines()]
  assert [x["part"] for x in lines] == list(parts)
  saved = json.loads((tmp_path / "gpu_stage2.json").read_text())
  assert saved["ratios"] == out["ratios"] and saved["versions"]["jax"]


def test_budget_skips_parts_and_bad_names_exit_2(tmp_path, capsys):
  import pytest

  g2 = _load("gpu_stage2")
  out = g2.main(["--small", "--families=opt", "--parts=train", "--budget=1",
                 f"--out={tmp_path}"])
  assert out["parts"] == {"opt:train": {"error": "skipped: no time left in --budget"}}
  with pytest.raises(SystemExit) as e:
    g2.main(["--small", "--families=gpt2", f"--out={tmp_path}"])
  assert e.value.code == 2 and "gpt2" in capsys.readouterr().err
