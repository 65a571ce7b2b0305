"""Broken copies of a project's raw files, for the data tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

# A change to a file's lines; None in place of an edit deletes the file.
Edit = Callable[[list[str]], list[str]]


def copy_with_edits(
    source_dir: Path, target_dir: Path, names: Iterable[str], edits: Mapping[str, Edit | None]
) -> Path:
    """Copy the raw files `names` into `target_dir`, applying `edits` to their lines."""
    target_dir.mkdir(parents=True)
    for name in names:
        source = source_dir / name
        if not source.exists():
            pytest.fail(f"{source} is missing: run `make setup` (make test does) first")
        if name not in edits:
            shutil.copy(source, target_dir / name)
        elif (edit := edits[name]) is not None:
            lines = source.read_text(encoding="utf-8").splitlines()
            (target_dir / name).write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
    return target_dir
