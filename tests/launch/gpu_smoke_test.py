"""launch/gpu_smoke.py's code path at small shapes on the 8 forced CPU devices."""

import importlib.util
import math
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]


def _smoke():
  spec = importlib.util.spec_from_file_location("gpu_smoke", REPO / "launch" / "gpu_smoke.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_small_smoke_runs_sharded_and_trains():
  out = _smoke().main(["--small", "--steps=3", "--seq=64", "--mesh=1,-1,1"])
  assert out["devices"] == 8 and out["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
  assert out["batch"] % 8 == 0 and out["seq"] == 64
  assert out["logits_kept"] == 14  # 13 answer tokens + the position before them
  assert math.isfinite(out["loss_first"]) and out["loss_last"] < out["loss_first"]
  assert out["step_s_median"] > 0 and out["llm_params"] > 0


def test_small_smoke_all_logits_same_first_loss():
  smoke = _smoke()
  a = smoke.main(["--small", "--steps=1", "--seq=64", "--mesh=2,2,2"])
  b = smoke.main(["--small", "--steps=1", "--seq=64", "--mesh=2,2,2", "--all-logits"])
  assert b["logits_kept"] == 64
  assert math.isclose(a["loss_first"], b["loss_first"], rel_tol=1e-4)


def test_small_llama_smoke_runs_tensor_parallel_and_trains():
  out = _smoke().main(["--family=llama", "--small", "--steps=3", "--seq=64", "--mesh=1,4,2"])
  assert out["family"] == "llama" and out["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2}
  assert math.isfinite(out["loss_first"]) and out["loss_last"] < out["loss_first"]
