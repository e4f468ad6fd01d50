"""Stage 2 variants (SPEC §8, paper Tables 2 and 4) as data over one code path.

A variant says where the soft prompts come from; the training step and decoding are the
same for all of them. `item_source` is the method name given to
`export.load_item_embeddings` (None = no soft prompts at all: the `llm_only` baseline,
whose template has no slots). `projector_hidden` None means the config's MLP width;
0 means a single linear map d → d_llm (no hidden layer, no activation): that is how
`fkd_no_projector` drops the projector alignment while the FKD embeddings still reach
the LLM. The Table 4 ablations `text_only`, `id_only`, `kd_local` share their names with
the Stage 1 FKD variants, so their Stage 2 rows are `llm_text_only`, ... in results.json.
"""

from __future__ import annotations

import dataclasses

# Stage 1 methods that write results.json under these names (fkd stage variants).
STAGE1_METHODS = ("fkd", "kd_local", "id_only", "text_only")


@dataclasses.dataclass(frozen=True)
class Variant:
  """How one Stage 2 method builds its prompt."""

  name: str
  item_source: str | None  # export.load_item_embeddings method; None = no soft prompts
  projector_hidden: int | None = None  # None = config.llm.projector_hidden; 0 = linear
  description: str = ""

  @property
  def soft_prompts(self) -> bool:
    return self.item_source is not None

  @property
  def results_key(self) -> str:
    """Method name in results.json; "llm_" + name where Stage 1 already uses the name."""
    return f"llm_{self.name}" if self.name in STAGE1_METHODS else self.name


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("sfubm", "fkd", None, "SF-UBM: r_u + FKD item embeddings, MLP projectors"),
        Variant("llm_only", None, None, "LLM on text only, no soft prompts"),
        Variant("mlp_llm", "sasrec", None, "SASRec embeddings + MLP projectors (A-LLMRec-like)"),
        Variant("text_only", "text_only", None, "FKD text branch only (Table 4)"),
        Variant("id_only", "id_only", None, "FKD ID branch only (Table 4)"),
        Variant("kd_local", "kd_local", None, "FKD on local text, no federation (Table 4)"),
        Variant("fkd_no_projector", "fkd", 0, "FKD embeddings, linear map instead of MLPs"),
    )
}


def get_variant(name: str) -> Variant:
  from sfubm_jax.errors import UserError

  if name not in VARIANTS:
    raise UserError(f"unknown Stage 2 variant {name!r} in config.llm.variants; "
                    f"variants are {list(VARIANTS)}")
  return VARIANTS[name]


def projector_hidden(variant: Variant, default: int) -> int:
  return default if variant.projector_hidden is None else variant.projector_hidden
