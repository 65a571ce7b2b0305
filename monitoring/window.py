"""The latest window of a request log: every record logged since the last monitoring run.

A cursor (`<project>/cursor.json`) remembers how far each daily file has been monitored. It only
moves once a window has been reported, so a failed run leaves the window for the next one, and
the logs themselves are only ever read: a bad line is reported where it is, never rewritten.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from projects.core.cli import StageError

CURSOR_FILE = "cursor.json"
# how many bad lines a message quotes; the count is always complete
QUOTED = 5


class MonitorError(StageError):
    """A window that cannot be judged; `kind` is its verdict and `status` the exit status."""

    kind = "failed"
    status = 1


class EmptyWindowError(MonitorError):
    kind, status = "empty_window", 3


class CorruptLogError(MonitorError):
    kind, status = "corrupt_log", 4


class MissingColumnError(MonitorError):
    kind, status = "missing_column", 5


class NullColumnError(MonitorError):
    kind, status = "null_column", 6


class ReferenceMismatchError(MonitorError):
    kind, status = "reference_mismatch", 7


@dataclass
class Position:
    """Where monitoring stopped in one log file: a byte offset and the lines before it."""

    offset: int = 0
    line: int = 0


@dataclass
class Window:
    """The records of a window, and the cursor to save once it has been reported."""

    records: pd.DataFrame
    cursor: dict[str, Position]
    skipped: list[str] = field(default_factory=list)  # bad lines, when told to skip them
    other_routes: int = 0


def read_cursor(directory: Path) -> dict[str, Position]:
    try:
        saved = json.loads((directory / CURSOR_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MonitorError(f"{directory / CURSOR_FILE} cannot be read ({exc}); remove it to "
                           "monitor the whole log again") from None  # fmt: skip
    return {name: Position(**position) for name, position in saved.items()}


def write_cursor(directory: Path, cursor: dict[str, Position]) -> None:
    """Replace the cursor atomically: a crash leaves the old one or the new one."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{CURSOR_FILE}.tmp"
    temporary.write_text(json.dumps({n: vars(p) for n, p in sorted(cursor.items())}, indent=1))
    os.replace(temporary, directory / CURSOR_FILE)


def _problem(line: bytes | str) -> str:
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    text = text.strip()
    if text.startswith("{") and not text.endswith("}"):
        return "truncated: the record ends before its closing brace"
    return "not a JSON object"


Located = tuple[str, dict[str, Any]]  # a record and where it is ("<file>:<line>")


def parse_lines(lines: Iterable[tuple[str, bytes | str]]) -> tuple[list[Located], list[str]]:
    """Split `(where, line)` pairs into the JSON objects and the bad lines' places.

    Blank lines are ignored; a line that is not JSON, or is JSON but not an object (a line cut
    short by a crash, a stray value), is named with its place and what is wrong with it.
    """
    records: list[Located] = []
    bad: list[str] = []
    for where, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # nested too deep for the parser: not a record
            record = None
        if isinstance(record, dict):
            records.append((where, record))
        else:
            bad.append(f"{where}: {_problem(line)}")
    return records, bad


def numbered(name: str, data: bytes, first_line: int) -> Iterator[tuple[str, bytes]]:
    """The whole lines of `data` as `("<name>:<line number>", line)`."""
    for number, line in enumerate(data.split(b"\n")[:-1], start=first_line + 1):
        yield f"{name}:{number}", line


def read_jsonl(directory: Path) -> tuple[list[Located], list[str]]:
    """Every record of every `*.jsonl` file of `directory`, in name (date) order, and the bad
    lines' places; the files are only read."""
    records: list[Located] = []
    bad: list[str] = []
    for path in sorted(directory.glob("*.jsonl")):
        data = path.read_bytes()
        found, problems = parse_lines(numbered(str(path), data + b"\n", 0))
        records += found
        bad += problems
    return records, bad


def parse_block(name: str, data: bytes, first_line: int) -> tuple[pd.DataFrame, list[str]]:
    """The records of whole lines of a log, and the bad lines' places and problems.

    Arrow's JSON reader parses a clean block several times faster than line by line; a block
    it refuses (a bad line, a field of two types) is parsed line by line, which names each bad
    line exactly.
    """
    if not data.strip():
        return pd.DataFrame(), []
    try:
        from pyarrow import ArrowInvalid, json

        return json.read_json(io.BytesIO(data)).to_pandas(), []
    except (ArrowInvalid, ValueError):
        found, bad = parse_lines(numbered(name, data, first_line))
        return pd.DataFrame.from_records([record for _, record in found]), bad


def read_window(
    requests_dir: Path, cursor: dict[str, Position], routes: tuple[str, ...], skip_bad: bool
) -> Window:
    """Every whole record after `cursor` in the daily files of `requests_dir`.

    A last line without its newline may still be being written; it is left for the next window.

    Raises:
        EmptyWindowError: nothing new has been logged for `routes`.
        CorruptLogError: a line is not a JSON record (unless `skip_bad`) or a file shrank.
    """
    frames: list[pd.DataFrame] = []
    bad: list[str] = []
    moved = dict(cursor)
    for path in sorted(requests_dir.glob("*.jsonl")):
        start = cursor.get(path.name, Position())
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < start.offset:
                raise CorruptLogError(
                    f"{path} is shorter than when it was last monitored ({f.tell()} < "
                    f"{start.offset} bytes): a request log must only be appended to"
                )
            f.seek(start.offset)
            data = f.read()
        data = data[: data.rfind(b"\n") + 1]  # whole lines only
        frame, problems = parse_block(path.name, data, start.line)
        frames.append(frame)
        bad += problems
        moved[path.name] = Position(start.offset + len(data), start.line + data.count(b"\n"))
    if bad and not skip_bad:
        quoted = "; ".join(bad[:QUOTED]) + ("; ..." if len(bad) > QUOTED else "")
        raise CorruptLogError(
            f"{len(bad)} line(s) of the request log in {requests_dir} are not records: {quoted}. "
            "Nothing was monitored and the log is left as it is; `--skip-bad-lines` monitors "
            "the other records and lists the bad lines in the report"
        )
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    ours = frame["route"].isin(routes) if "route" in frame else pd.Series(False, frame.index)
    if not ours.any():
        raise EmptyWindowError(
            f"no new {'/'.join(routes)} requests in {requests_dir} since the last monitoring "
            "run: send traffic (e.g. `make simulate`) first"
        )
    return Window(frame[ours].reset_index(drop=True), moved, bad, int((~ours).sum()))


def read_feedback(feedback_dir: Path) -> pd.Series:
    """The ground-truth label of each prediction id that has one (the latest wins).

    Bad lines are skipped here: feedback only adds quality figures, and it is never the window.
    """
    frames = []
    for path in sorted(feedback_dir.glob("*.jsonl")):
        data = path.read_bytes()
        frames.append(parse_block(path.name, data + b"\n" * (not data.endswith(b"\n")), 0)[0])
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not {"prediction_id", "label"} <= set(frame.columns):
        return pd.Series(dtype=object)
    usable = frame["prediction_id"].map(type).eq(str) & frame["label"].map(type).eq(str)
    latest = frame[usable].drop_duplicates("prediction_id", keep="last")
    return pd.Series(latest["label"].to_numpy(), index=latest["prediction_id"], dtype=object)


def check_fields(records: pd.DataFrame, fields: tuple[str, ...], where: Path) -> pd.DataFrame:
    """The records that have every field; a field missing or null in all records is an error.

    Raises:
        MissingColumnError: no record has one of `fields`.
        NullColumnError: one of `fields` is null in every record.
    """
    for name in fields:
        if name not in records:
            raise MissingColumnError(
                f"the request log in {where} has no '{name}' field in this window's "
                f"{len(records)} records; monitoring needs {', '.join(fields)}"
            )
        if records[name].isna().all():
            raise NullColumnError(
                f"'{name}' is null in all {len(records)} records of this window in {where}"
            )
    complete = records[list(fields)].notna().all(axis=1)
    return records[complete].reset_index(drop=True)
