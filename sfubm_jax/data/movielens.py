"""Reader of GroupLens MovieLens releases in their two published layouts.

  ml-1m / ml-10m:          movies.dat  MovieID::Title::Genres   (latin-1)
                           ratings.dat UserID::MovieID::Rating::Timestamp
  ml-20m / ml-25m / latest: movies.csv  movieId,title,genres    (UTF-8, quoted CSV)
                           ratings.csv userId,movieId,rating,timestamp
Item text: the title, and "Genres: a, b" as description (genres are '|'-separated).
Each user's ratings are ordered by timestamp with a stable sort (file order on ties).
"""

from __future__ import annotations

import pathlib

from sfubm_jax.data import files
from sfubm_jax.data.raw import RawDomain, RawDomainBuilder
from sfubm_jax.errors import UserError

DAT_ENCODING = "latin-1"


def genres_description(genres: str) -> str:
  """'Adventure|Comedy' -> 'Genres: Adventure, Comedy'."""
  return "Genres: " + genres.strip().replace("|", ", ")


def _dat_fields(path: pathlib.Path, count: int, every_s: float):
  for line, text in files.lines(path, encoding=DAT_ENCODING, every_s=every_s):
    if not text.strip():
      continue
    fields = text.split("::")
    if len(fields) != count:
      raise UserError(
          f"{files.where(path, line)}: malformed row, expected {count} '::'-separated "
          f"fields, got {len(fields)}"
      )
    yield line, fields


def read_movielens(
    name: str, directory: pathlib.Path, *, unknown_items: str = "error", every_s: float = 5.0
) -> RawDomain:
  """Reads movies + ratings (.dat or .csv, whichever the folder has) into a RawDomain."""
  ratings_path = files.find_file(directory, ("ratings.dat", "ratings.csv"), "the rating file")
  dat = ratings_path.suffix == ".dat"
  movies_path = files.find_file(
      directory, ("movies.dat",) if dat else ("movies.csv",), "the movie file"
  )
  builder = RawDomainBuilder(name, unknown_items=unknown_items)
  if dat:
    movies = _dat_fields(movies_path, 3, every_s)
    ratings = _dat_fields(ratings_path, 4, every_s)
  else:
    movies = files.csv_rows(movies_path, ("movieId", "title", "genres"), every_s=every_s)
    ratings = files.csv_rows(
        ratings_path, ("userId", "movieId", "rating", "timestamp"), every_s=every_s
    )
  for line, (movie, title, genres) in movies:
    builder.add_item(
        movie.strip(), title, genres_description(genres), where=files.where(movies_path, line)
    )
  for line, (user, movie, rating, timestamp) in ratings:
    at = files.where(ratings_path, line)
    movie = movie.strip()
    if unknown_items == "error" and not builder.has_title(movie):
      raise UserError(f"{at}: rating names movie {movie!r}, which is not in {movies_path}")
    ts = files.parse_float(timestamp, "timestamp", at)
    value = files.parse_float(rating, "rating", at)
    if ts != ts or value != value:  # NaN: a published MovieLens row always has both.
      raise UserError(f"{at}: malformed row, empty rating or timestamp")
    builder.add_interaction(user.strip(), movie, ts, value, where=at)
  return builder.build(sort_by_time=True)
