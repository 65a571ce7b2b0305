"""The access-log line, written once: the Combined Log Format that nginx and Apache write, with
the request body and the response time appended as nginx logs them when asked to
(`... "$http_user_agent" "$request_body" $request_time`).

The services write their access logs in it, simulators write theirs, and the request pattern
analyzer reads them all the same way as any web server's log.
"""

from __future__ import annotations

import datetime as dt
import re

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NEEDS_ESCAPE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


def _escape_bytes(m: re.Match[str]) -> str:
    return "".join(f"\\x{b:02X}" for b in m.group().encode("utf-8", "surrogateescape"))


def escape(text: str) -> str:
    """A quoted field's text as nginx's `escape=default` writes it: `"`, `\\` and bytes below
    0x20 or above 0x7e as `\\xXX` (UTF-8 bytes), so that a field never breaks its quotes."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    text = text.replace("\\", "\\x5C").replace('"', "\\x22")
    return _UNPRINTABLE.sub(_escape_bytes, text)


_day_names: dict[int, str] = {}


def format_time(time: float, tz_minutes: int = 0) -> str:
    """Epoch seconds as `10/Oct/2000:13:55:36 -0700` in a zone `tz_minutes` east of UTC."""
    local = int(time) + tz_minutes * 60
    day, seconds = divmod(local, 86400)
    name = _day_names.get(day)
    if name is None:
        date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        name = _day_names[day] = f"{date.day:02d}/{MONTHS[date.month - 1]}/{date.year:04d}"
    hours, rest = divmod(seconds, 3600)
    sign = "+" if tz_minutes >= 0 else "-"
    zh, zm = divmod(abs(tz_minutes), 60)
    return f"{name}:{hours:02d}:{rest // 60:02d}:{rest % 60:02d} {sign}{zh:02d}{zm:02d}"


def format_line(
    client_ip: str,
    time: float,
    method: str,
    path: str,
    query: str = "",
    protocol: str = "HTTP/1.1",
    status: int = 200,
    bytes: int = 0,  # the column's name, so that a frame row can be passed as keywords
    referrer: str = "-",
    user_agent: str = "-",
    body: str = "",
    user: str = "-",
    tz_minutes: int = 0,
    request_time: float | None = None,
) -> str:
    """One combined-log line (no line end): the body as a last quoted field when there is one,
    and after it the response time in seconds when given."""
    if method == "-":
        # what the reader makes of a request line that is not one: the raw text in `path`
        request = path if path not in ("", "-") else "-"
    else:
        target = f"{path}?{query}" if query else path
        request = f"{method} {target} {protocol}" if protocol else f"{method} {target}"
    line = (
        f'{client_ip} - {user or "-"} [{format_time(time, tz_minutes)}] "{escape(request)}" '
        f'{status} {bytes} "{escape(referrer)}" "{escape(user_agent)}"'
    )
    if request_time is not None:  # then the body field is there, `"-"` when there is none
        return f'{line} "{escape(body) if body else "-"}" {request_time:.3f}'
    return f'{line} "{escape(body)}"' if body else line
