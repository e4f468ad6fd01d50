"""SBERT encoding on this CPU: texts sorted by length in small batches vs unsorted batches.

The federate stage encodes every item text with the shipped all-MiniLM-L6-v2
(`federation.text_encoder.encode_texts`). A batch pads to its longest text, so the order
in which texts are batched matters. This script encodes the same texts of one domain two
ways with the same sentence-transformers model, in one process:

  reference   the old way: batches of 128 in catalogue order (`text_encoder.batch_size`
              128, no sorting)
  ours        what `encode_texts` does now: shortest texts first, batches of `--batch`
              (32 in the `:cpu` configs)

and checks that both give the same vectors (each text's vector does not depend on its
batch, up to float noise). Prints one JSON line: texts/s of each and the ratio
(ours / reference: > 1 means ours is faster).

  python benchmarks/text_encoder_cpu.py --domain=food --texts=2048
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _texts(domain: str, n: int, max_chars: int) -> list[str]:
  csv.field_size_limit(1 << 30)
  with gzip.open(REPO / "third_party" / "datasets" / domain / "items.csv.gz", "rt") as f:
    rows = [r for _, r in zip(range(n), csv.DictReader(f))]
  return [((r.get("title") or "") + ". " + (r.get("description") or ""))[:max_chars]
          for r in rows]


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--domain", default="food")
  ap.add_argument("--texts", type=int, default=2048)
  ap.add_argument("--batch", type=int, default=32, help="batch size of the sorted run")
  ap.add_argument("--max_chars", type=int, default=512, help="config.data.max_text_chars")
  args = ap.parse_args(argv)
  sys.path.insert(0, str(REPO))
  import numpy as np
  import torch
  from sentence_transformers import SentenceTransformer

  from sfubm_jax.federation import text_encoder

  texts = _texts(args.domain, args.texts, args.max_chars)
  st = SentenceTransformer(str(text_encoder.model_path(text_encoder.SHIPPED_MODEL)),
                           device="cpu")
  encode = lambda group: st.encode(group, batch_size=len(group), convert_to_numpy=True,
                                   show_progress_bar=False)
  encode(texts[:64])  # warm-up

  def run(order, batch):
    out = np.zeros((len(texts), encode(texts[:1]).shape[1]), np.float32)
    t0 = time.perf_counter()
    for s in range(0, len(order), batch):
      group = order[s : s + batch]
      out[group] = encode([texts[i] for i in group])
    return len(texts) / (time.perf_counter() - t0), out

  ref_rate, ref = run(list(range(len(texts))), 128)
  order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
  our_rate, ours = run(order, args.batch)
  tokens = [len(x) for x in st.tokenizer(texts)["input_ids"]]
  result = {
      "domain": args.domain, "texts": len(texts), "mean_tokens": float(np.mean(tokens)),
      "max_tokens": int(max(tokens)), "torch_threads": torch.get_num_threads(),
      "reference_unsorted_128_texts_per_s": round(ref_rate, 1),
      f"ours_sorted_{args.batch}_texts_per_s": round(our_rate, 1),
      "ratio": round(our_rate / ref_rate, 2),
      "max_abs_diff": float(np.abs(ours - ref).max()),
  }
  print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
