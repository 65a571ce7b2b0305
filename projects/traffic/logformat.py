"""The Combined Log Format that nginx and Apache write, with an optional request-body field.

A line is `%h %l %u [%d/%b/%Y:%H:%M:%S %z] "%r" %>s %b "%{Referer}i" "%{User-agent}i"`,
optionally followed by ` "<body>"` (nginx's `$request_body`). The Common Log Format (without the
last two fields) is read too. Quoted fields are escaped as nginx does (`\\xXX` for `"`, `\\` and
bytes outside printable ASCII); Apache's `\\"`, `\\\\`, `\\n`… are read as well.

A line that cannot be read becomes a `BadLine` whose reason names what is wrong; reading never
raises on bad input. The reader is one compiled regex per line, with a slower diagnosis only for
the lines that fail it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_plus

import numpy as np
import pandas as pd

# the writing side is shared with the platform's services, which log in the same format
from projects.core.accesslog import escape, format_line, format_time  # noqa: F401 (re-exported)

COLUMNS = [
    "line",
    "client_ip",
    "user",
    "time",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "referrer",
    "user_agent",
    "body",
]

MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_MONTH_NAMES = {i: m for m, i in MONTHS.items()}

_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
# the common request line is split by the regex itself; anything else lands in one group
_REQUEST = (
    r'"(?:([A-Za-z][A-Za-z_-]*) (/[^ ?"\\]*|\*)(?:\?([^ "\\]*))?(?: ([A-Z]+/\d(?:\.\d)?))?"'
    r'|([^"\\]*(?:\\.[^"\\]*)*)")'
)
_LINE = re.compile(
    r"(\S+) \S+ (\S+) "
    r"\[(\d{2}/[A-Za-z]{3}/\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\] "
    + _REQUEST
    # a byte count beyond int64 is not one a server wrote: the line is reported, not parsed
    + r" (\d{3}) (\d{1,18}|-)"
    # referrer and user agent, then nginx's `$request_body` and `$request_time` if logged
    + rf"(?: {_QUOTED} {_QUOTED}(?: {_QUOTED}(?: \d+(?:\.\d+)?)?)?)?[ \t]*\r?\n?\Z"
)
# the groups of _LINE, in order
_GROUPS = [
    "client_ip",
    "user",
    "date",
    "hour",
    "minute",
    "second",
    "zone",
    "method",
    "path",
    "query",
    "protocol",
    "request",
    "status",
    "bytes",
    "referrer",
    "user_agent",
    "body",
]
_ESCAPE = re.compile(r"\\([xX][0-9A-Fa-f]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "v": "\v", "f": "\f"}
_PROTOCOL = re.compile(r"[A-Z]+/\d(?:\.\d)?")
_METHOD = re.compile(r"[A-Za-z][A-Za-z_-]*")
_WEEKDAY_START = re.compile(r"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ")

# static assets, by extension
STATIC = re.compile(
    r"[^/]*\.(css|js|mjs|map|png|jpe?g|gif|svg|ico|webp|avif|bmp|woff2?|ttf|otf|eot|mp[34]|webm"
    r"|wav|pdf|zip)",
    re.IGNORECASE,
)
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{16,}"
)
# a form body: name[=value] pairs joined by `&`, no raw whitespace
_FORM = re.compile(r"[^\s&=]*(?:=[^\s&]*)?(?:&[^\s&=]*(?:=[^\s&]*)?)*")


@dataclass(frozen=True)
class BadLine:
    """A line that could not be read: where it is, why, and its text (cut to 300 characters)."""

    source: str
    line: int
    reason: str
    text: str


@dataclass
class Parsed:
    """The parsed requests (one row per good line, columns `COLUMNS`) and the bad lines."""

    frame: pd.DataFrame
    bad: list[BadLine] = field(default_factory=list)
    total: int = 0


# ---------------------------------------------------------------------------- reading


# escapes that Python's `unicode_escape` codec reads exactly as nginx and Apache mean them
_PLAIN_ESCAPES = re.compile(r'\\(?![xX][0-9A-Fa-f]{2}|["\\nrtbvf])')


def _unescape(text: str) -> str:
    """Undo nginx's `\\xXX` and Apache's `\\"`-style escapes; bytes are decoded as UTF-8."""
    if "\\" not in text:
        return text
    if text.isascii() and not _PLAIN_ESCAPES.search(text):
        # the fast path, in C: escapes become U+0000..U+00FF, i.e. the bytes they stand for
        raw = text.encode("ascii").decode("unicode_escape").encode("latin-1")
        return raw.decode("utf-8", "replace")

    def one(m: re.Match[str]) -> str:
        s = m.group(1)
        if len(s) == 3 and s[0] in "xX":
            # a byte: keep it as a surrogate escape so that multi-byte sequences join up below
            return bytes([int(s[1:], 16)]).decode("utf-8", "surrogateescape")
        return _SIMPLE_ESCAPES.get(s, s)

    raw_text = _ESCAPE.sub(one, text)
    return raw_text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _day_base(date_zone: str) -> float:
    """Epoch seconds of the local midnight of `dd/Mon/yyyy+hhmm` (NaN when no such date)."""
    day, month, year = date_zone[:2], date_zone[3:6].capitalize(), date_zone[7:11]
    sign, hours, minutes = date_zone[11], int(date_zone[12:14]), int(date_zone[14:16])
    if month not in MONTHS or minutes > 59:
        return float("nan")
    try:
        midnight = calendar.timegm(dt.date(int(year), MONTHS[month], int(day)).timetuple())
    except ValueError:
        return float("nan")
    offset = hours * 3600 + minutes * 60
    return float(midnight - offset if sign == "+" else midnight + offset)


def _times(frame: pd.DataFrame) -> pd.Series:
    """Epoch seconds (UTC) of each row, NaN where the timestamp is impossible."""
    codes, uniques = pd.factorize(frame["date"] + frame["zone"])
    bases = np.array([_day_base(u) for u in uniques], dtype=float)
    hms = frame[["hour", "minute", "second"]].astype(np.int64).to_numpy()
    seconds = hms @ np.array([3600, 60, 1])
    valid = (hms[:, 0] <= 23) & (hms[:, 1] <= 59) & (hms[:, 2] <= 60)
    times = np.where(valid, bases[codes] + seconds, np.nan) if len(frame) else np.array([])
    return pd.Series(times, index=frame.index, dtype=float)


def split_request(request: str) -> tuple[str, str, str, str]:
    """`GET /a?b=1 HTTP/1.1` -> (method, path, query, protocol); `-` -> (`-`, `-`, "", "")."""
    request = request.strip()
    if request in ("", "-"):
        return "-", "-", "", ""
    parts = request.split(" ")
    method = parts[0]
    if len(parts) == 1 or not _METHOD.fullmatch(method):
        # not a request at all (a TLS handshake on the plain port, binary junk): keep it whole
        return "-", request, "", ""
    protocol = ""
    if len(parts) > 2 and _PROTOCOL.fullmatch(parts[-1]):
        protocol = parts.pop()
    target = " ".join(parts[1:])  # a client that did not encode its spaces
    if target.startswith(("http://", "https://")):
        # absolute form (proxies, CSIC): drop scheme and authority
        slash = target.find("/", target.find("//") + 2)
        target = target[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    return method, path, query, protocol


def _diagnose(text: str) -> str:
    """Why `text` is not a combined/common log line (only called after the fast regex failed)."""
    if _WEEKDAY_START.match(text):
        return "another format: an Apache error log line ([weekday month day time year] ...)"
    if text.startswith(("{", "[")):
        return (
            "another format: starts with '{' or '[' (JSON or an error log?), not a client address"
        )
    m = re.match(r"(\S+) (\S+) (\S+) ", text)
    if not m:
        return "too few fields: expected 'host ident user [time] \"request\" status bytes'"
    rest = text[m.end() :]
    if not rest.startswith("["):
        return "another format: no [timestamp] after host, ident and user"
    close = rest.find("]")
    if close < 0:
        return "bad timestamp: no closing ']'"
    stamp = rest[1:close]
    if not re.fullmatch(r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}", stamp):
        return f"bad timestamp: {stamp[:40]!r} is not dd/Mon/yyyy:HH:MM:SS +zzzz"
    rest = rest[close + 1 :]
    if not rest.startswith(' "'):
        return "no request line: expected a quoted request after the timestamp"
    req = re.match(" " + _QUOTED, rest)
    if req is None:
        return "truncated request line: no closing quote"
    rest = rest[req.end() :]
    sb = re.match(r" (\S+) (\S+)", rest)
    if sb is None:
        return "no status and bytes after the request line"
    if not re.fullmatch(r"\d{3}", sb.group(1)):
        return f"status is not a number: {sb.group(1)[:20]!r}"
    if not re.fullmatch(r"\d{1,18}|-", sb.group(2)):
        return f"bytes is not a number: {sb.group(2)[:20]!r}"
    return _diagnose_tail(rest[sb.end() :].rstrip("\r\n"))


def _diagnose_tail(rest: str) -> str:
    names = ["referrer", "user agent", "body"]
    for i, name in enumerate(names):
        if rest.strip() == "":
            return f"missing {name} field" if i == 1 else "unreadable line"
        if not rest.startswith(' "'):
            return f"unexpected text where the {name} field should be: {rest[:30]!r}"
        q = re.match(" " + _QUOTED, rest)
        if q is None:
            return f"truncated {name} field: no closing quote"
        rest = rest[q.end() :]
    return f"unexpected text after the body field: {rest[:30]!r}"


def _slow_fields(groups: tuple) -> tuple:
    """The fields of a line with escapes or an unusual request line."""
    g = list(groups)
    if g[7] is None:
        g[7], g[8], g[9], g[10] = split_request(_unescape(g[11]))
    for i in (14, 15, 16):
        if g[i] and "\\" in g[i]:
            g[i] = _unescape(g[i])
    return tuple(g)


def read_lines(lines: Iterable[str], source: str = "<lines>") -> Parsed:
    """Parse access-log lines; blank lines are skipped and not counted.

    Args:
        lines: the lines, with or without their line ends.
        source: the name used in `BadLine.source` (a file name).

    Returns:
        The frame of parsed requests (columns `COLUMNS`), the bad lines and the count of lines.
    """
    rows: list[tuple] = []
    numbers: list[int] = []
    texts: list[str] = []
    bad: list[BadLine] = []
    total = 0
    match = _LINE.match
    for number, text in enumerate(lines, start=1):
        m = match(text)
        if m is None:
            if text.strip():
                total += 1
                bad.append(BadLine(source, number, _diagnose(text), text.rstrip("\r\n")[:300]))
            continue
        total += 1
        g = m.groups()
        rows.append(_slow_fields(g) if g[7] is None or "\\" in text else g)
        numbers.append(number)
        texts.append(text)
    frame = pd.DataFrame(rows, columns=_GROUPS, dtype=object)
    frame.insert(0, "line", np.array(numbers, dtype=np.int64))
    frame["time"] = _times(frame)
    impossible = np.flatnonzero(frame["time"].isna().to_numpy())
    for i in impossible:
        reason = "bad timestamp: no such date or time"
        bad.append(BadLine(source, numbers[i], reason, texts[i].rstrip("\r\n")[:300]))
    if len(impossible):
        frame = frame.drop(index=impossible).reset_index(drop=True)
        bad.sort(key=lambda b: b.line)
    return Parsed(frame=_finish(frame), bad=bad, total=total)


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill absent fields as the schema says and give every column its dtype."""
    frame["query"] = frame["query"].fillna("")
    frame["protocol"] = frame["protocol"].fillna("")
    frame["referrer"] = frame["referrer"].fillna("-")
    frame["user_agent"] = frame["user_agent"].fillna("-")
    frame["body"] = frame["body"].fillna("").replace("-", "")
    frame["status"] = frame["status"].astype(np.int64)
    frame["bytes"] = frame["bytes"].replace("-", "0").astype(np.int64)
    return frame[COLUMNS].astype({"line": "int64", "time": "float64"})


def _decoded_lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for raw in f:
            yield raw.decode("utf-8", "replace")


def read_file(path: Path | str) -> Parsed:
    """Parse an access log file (streamed; `.gz` is read compressed; bad bytes never raise)."""
    path = Path(path)
    return read_lines(_decoded_lines(path), source=path.name)


# ---------------------------------------------------------------------------- writing


# ---------------------------------------------------------------------------- requests


def _decode(text: str) -> str:
    """Percent-decode a form value: UTF-8, or Latin-1 when it is not valid UTF-8 (CSIC)."""
    if "%" not in text:
        return text.replace("+", " ") if "+" in text else text
    try:
        return unquote_plus(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return unquote_plus(text, encoding="latin-1")


def _form_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((_decode(name), _decode(value)))
    return pairs


def _json_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _flatten(value: object, prefix: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list):
        for item in value:
            _flatten(item, f"{prefix}[]", out)
    else:
        out.append((prefix, _json_text(value)))


def body_params(body: str) -> list[tuple[str, str]]:
    """A body's parameters: a JSON object flattened, form pairs, or one `<body>` parameter."""
    body = body.strip()
    if not body:
        return []
    if body[0] in "{[":
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
            return [("<body>", body)]
        out: list[tuple[str, str]] = []
        _flatten(document, "", out)
        return out
    if "=" in body and _FORM.fullmatch(body):
        return _form_pairs(body)
    return [("<body>", body)]


def params(method: str, path: str, query: str, body: str) -> list[tuple[str, str]]:
    """The request's parameters in order: the query string's pairs, then the body's.

    Values are percent-decoded (UTF-8, falling back to Latin-1). Path segments are not
    parameters; `endpoint` templates them.
    """
    del method, path  # part of the request's identity, kept in the signature for callers
    out = _form_pairs(query) if query else []
    if body:
        out += body_params(body)
    return out


def endpoint(method: str, path: str) -> str:
    """The route template: `GET /api/products/{id}`, `GET /static/css/*.css`.

    Segments of digits, UUIDs or long hex become `{id}`; a static asset (by extension) keeps its
    folder and collapses its file name to `*.ext`.
    """
    segments = path.split("/")
    templated = ["{id}" if _ID_SEGMENT.fullmatch(s) else s for s in segments]
    static = STATIC.fullmatch(segments[-1])
    if static:
        templated[-1] = "*." + static.group(1).lower()
    return f"{method} {'/'.join(templated)}"
