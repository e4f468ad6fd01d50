"""The federation round over a local Flower deployment equals the in-process round.

The federate stage with `federation.transport=flower` starts a SuperLink and one SuperNode
per client on localhost (no Ray, `flower_deploy.run_round`), runs the App in
`sfubm_jax/federation/flower_app/` and stops them. The centroids each client keeps must be
byte-identical to the file transport's; the server must have received exactly the upload
message bytes (one uint8 array each), which hold the perturbed vectors, not the raw ones.
"""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("flwr")

from federation_stage_test import _fake_encoder, _split  # noqa: E402

from sfubm_jax import config_io  # noqa: E402
from sfubm_jax.data.split import save_split  # noqa: E402
from sfubm_jax.federation import (  # noqa: E402
  artifacts,
  messages,
  server,
  stage,
  text_encoder,
)
from tests.conftest import load_config  # noqa: E402


def test_flower_round_equals_the_file_round(tmp_path):
  workdir = tmp_path / "w"
  config = load_config("tiny")
  config.server.num_clusters = 5
  config.privacy.tile = 16
  config.privacy.sweep = ()
  for i, domain in enumerate(config.domains):
    split = _split(domain, 30 + 7 * i, i)
    save_split(split, workdir / "data" / domain)
    text_encoder.encode_texts(split.texts[1:], model=config.text_encoder.model,
                              cache_dir=workdir / "federate" / "text_cache",
                              encoder=_fake_encoder)
  config_io.save_config(config, workdir)
  stage.run(config, workdir)  # the file transport, in process
  want = {d: (artifacts.domain_dir(workdir, d) / "federated.npy").read_bytes()
          for d in config.domains}
  want_up = {d: (workdir / "federate" / "wire" / "uploads" / f"{d}.msg").read_bytes()
             for d in config.domains}
  want_report = json.loads((workdir / "federate" / server.REPORT).read_text())
  for d in config.domains:
    (artifacts.domain_dir(workdir, d) / "federated.npy").unlink()
  shutil.rmtree(workdir / "federate" / "wire")

  outbox = workdir / "federate" / "wire"
  config.federation.transport = "flower"
  config.federation.timeout_s = 300.0
  stage.run(config, workdir)  # the same stage, over a local Flower deployment
  report = json.loads((workdir / "federate" / server.REPORT).read_text())
  assert (outbox / "DONE").exists() and (workdir / "federate" / "flower" / "home").is_dir()
  for d in config.domains:
    got = (artifacts.domain_dir(workdir, d) / "federated.npy").read_bytes()
    assert got == want[d], d  # byte-identical centroids
    received = (outbox / "uploads" / f"{d}.msg").read_bytes()
    assert received == want_up[d]  # the same message bytes as the file transport
    vectors = messages.decode(received, "upload").vectors
    raw = np.load(artifacts.domain_dir(workdir, d) / "local.npy")[1:]  # e, never uploaded
    assert not any(np.isclose(vectors, r, atol=1e-6).all(axis=1).any() for r in raw)
  assert {k: v for k, v in report.items() if k != "seconds"} == {
      k: v for k, v in want_report.items() if k != "seconds"}
  seen = json.loads((outbox / "received.json").read_text())
  for d in config.domains:  # what each Flower message held: one uint8 array, nothing else
    assert list(seen[d]) == ["upload"] and list(seen[d]["upload"]) == ["bytes"]
    assert seen[d]["upload"]["bytes"][0] == "uint8"
