"""Which reader reads a domain: dispatch on `config.data.sources[<domain>]`.

Each source has `format` (canonical | amazon2014 | amazon2018 | movielens), `path` (a
directory; empty for canonical = `config.data.root/<domain>`) and, for Amazon,
`category` (the file-name part, e.g. "Books" or "Grocery_and_Gourmet_Food"). A relative
path is looked up in the current directory first, then under the repository root, so
that the shipped `third_party/datasets` is found from anywhere.
"""

from __future__ import annotations

import os
import pathlib

import ml_collections
from absl import logging

from sfubm_jax.data.amazon import VERSIONS, read_amazon
from sfubm_jax.data.canonical import read_canonical
from sfubm_jax.data.movielens import read_movielens
from sfubm_jax.data.raw import RawDomain
from sfubm_jax.errors import UserError

FORMATS = ("canonical", *VERSIONS, "movielens")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def resolve_path(path: str, what: str) -> pathlib.Path:
  """An absolute path as is; a relative one from the cwd, else from the repository root."""
  p = pathlib.Path(os.path.expanduser(path))
  if p.is_absolute():
    if not p.exists():
      raise UserError(f"{what}: {p} does not exist")
    return p
  here = pathlib.Path.cwd() / p
  if here.exists():
    return here
  shipped = REPO_ROOT / p
  if shipped.exists():
    return shipped
  raise UserError(
      f"{what}: relative path {path!r} exists neither in the current directory ({here}) nor "
      f"under the repository root ({shipped}); give an absolute path"
  )


def source_of(config: ml_collections.ConfigDict, domain: str) -> ml_collections.ConfigDict:
  sources = config.data.sources
  if domain not in sources:
    raise UserError(
        f"config.data.sources has no entry for domain {domain!r} (it has {sorted(sources)})"
    )
  source = sources[domain]
  if source.format not in FORMATS:
    raise UserError(
        f"config.data.sources.{domain}.format={source.format!r} is not supported; use one "
        f"of {FORMATS}"
    )
  return source


def read_domain(config: ml_collections.ConfigDict, domain: str) -> RawDomain:
  """Reads `domain` from its configured source into a RawDomain."""
  source = source_of(config, domain)
  what = f"domain {domain!r} ({source.format})"
  if source.format == "canonical":
    directory = resolve_path(source.path or os.path.join(config.data.root, domain), what)
  elif not source.path:
    raise UserError(
        f"config.data.sources.{domain}.path is empty; format {source.format} needs the "
        f"directory of the downloaded files"
    )
  else:
    directory = resolve_path(source.path, what)
  logging.info("domain %s: reading %s data from %s", domain, source.format, directory)
  every_s = float(config.runtime.log_every_s)
  policy = config.data.unknown_items
  if source.format == "canonical":
    return read_canonical(domain, directory, unknown_items=policy, every_s=every_s)
  if source.format == "movielens":
    return read_movielens(domain, directory, unknown_items=policy, every_s=every_s)
  return read_amazon(
      domain,
      directory,
      version=source.format,
      category=source.category,
      unknown_items=policy,
      max_description_chars=int(config.data.max_text_chars),
      every_s=every_s,
  )
