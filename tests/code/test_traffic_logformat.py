"""The access-log reader and writer, request parameters and endpoint templates."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from projects.traffic import logformat as lf

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
APACHE_ACCESS = REFERENCE / "access-logs" / "apache_combined_200.log"
APACHE_ERROR = REFERENCE / "loghub" / "Apache_2k.log"

UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
GOOD = [
    (
        f'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.0" 200 2326 "-" "{UA}"',
        {
            "method": "GET",
            "path": "/a",
            "query": "b=1",
            "protocol": "HTTP/1.0",
            "time": 971211336.0,
        },
    ),
    (
        '1.2.3.4 - frank [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 304 -',
        {"user": "frank", "bytes": 0, "referrer": "-", "user_agent": "-", "status": 304},
    ),
    (
        '2001:db8::1 - - [01/Feb/2024:10:00:00 +0530] "-" 400 0 "-" "-"',
        {"client_ip": "2001:db8::1", "method": "-", "path": "-", "protocol": "", "status": 400},
    ),
    (
        '5.6.7.8 - - [01/Feb/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "a \\"q\\" b"',
        {"user_agent": 'a "q" b'},
    ),
    (
        '5.6.7.8 - - [01/Feb/2024:10:00:00 +0000] "GET /x HTTP/1.1" 200 5 "-" "b" '
        '"{\\x22a\\x22:\\x22caf\\xC3\\xA9\\x22}"',
        {"body": '{"a":"café"}', "path": "/x"},
    ),
    (
        '5.6.7.8 - - [01/Feb/2024:10:00:00 +0000] "POST /l HTTP/1.1" 401 5 "-" "b" "-"',
        {"body": ""},
    ),
    (
        '5.6.7.8 - - [01/Feb/2024:10:00:00 +0000] "GET /" 200 5 "-" "b"',
        {"method": "GET", "path": "/", "protocol": ""},
    ),
    (
        '5.6.7.8 - - [01/Feb/2024:10:00:00 +0000] "GET http://shop.example/p?q=1 HTTP/1.1" 200 5',
        {"path": "/p", "query": "q=1"},
    ),
    (
        '5.6.7.8 - - [01/Feb/2024:10:00:00 +0000] "\\x16\\x03\\x01" 400 0 "-" "-"',
        {"method": "-", "path": "\x16\x03\x01"},
    ),
    (
        '5.6.7.8 - - [01/Feb/2024:10:00:00 +0000] "GET /a b HTTP/1.1" 400 0 "-" "-"',
        {"method": "GET", "path": "/a b", "protocol": "HTTP/1.1"},
    ),
]
BAD = [
    ("[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok", "another format"),
    ("081109 203615 148 INFO dfs.DataNode: Receiving block", "another format"),
    ('1.2.3.4 - - [10/Oct/2000:13:55:36] "GET / HTTP/1.1" 200 1', "bad timestamp"),
    ('1.2.3.4 - - [31/Feb/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1', "bad timestamp"),
    ('1.2.3.4 - - [10/Oct/2000:25:55:36 +0000] "GET / HTTP/1.1" 200 1', "bad timestamp"),
    ("1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] 200 1", "no request line"),
    ('1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1', "truncated request line"),
    ('1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" OK 1', "status is not a number"),
    ('1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 x', "bytes is not a number"),
    ('1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "Moz', "truncated user"),
    ('1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-"', "missing user agent"),
    (
        '1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "POST / HTTP/1.1" 200 1 "-" "M" "{\\x22a\\x22:',
        "truncated body field",
    ),
    ("just some text", "too few fields"),
]


@pytest.mark.parametrize(("line", "expected"), GOOD)
def test_reads_a_good_line(line: str, expected: dict) -> None:
    parsed = lf.read_lines([line], "t.log")
    assert parsed.bad == [] and parsed.total == 1
    row = parsed.frame.iloc[0].to_dict()
    for key, value in expected.items():
        assert row[key] == value, key


@pytest.mark.parametrize(("line", "reason"), BAD)
def test_names_what_is_wrong_with_a_bad_line(line: str, reason: str) -> None:
    parsed = lf.read_lines(["", line], "t.log")
    assert len(parsed.frame) == 0 and parsed.total == 1
    (bad,) = parsed.bad
    assert (bad.source, bad.line) == ("t.log", 2)
    assert reason in bad.reason


def test_frame_has_the_schema_even_when_empty() -> None:
    for lines in ([], ["garbage"]):
        frame = lf.read_lines(lines).frame
        assert list(frame.columns) == lf.COLUMNS
        assert str(frame["time"].dtype) == "float64"
        assert str(frame["status"].dtype) == "int64"
        assert str(frame["line"].dtype) == "int64"


def test_format_then_read_is_the_identity() -> None:
    fields = {
        "client_ip": "2a02:1234::5",
        "time": 1710115200.0,
        "method": "POST",
        "path": "/api/v1/users/me",
        "query": "x=%3Cscript%3E&q=O'Brien",
        "protocol": "HTTP/1.1",
        "status": 422,
        "bytes": 96,
        "referrer": "https://shop.example.com/app/",
        "user_agent": 'Odd "UA" \\ with\ttab',
        "body": '{"name":"Zoë O\'Brien","note":"a\\"b\\n\u2764 <3","n":-1}',
        "user": "-",
    }
    for tz in (0, 60, -420):
        line = lf.format_line(**fields, tz_minutes=tz)
        assert "\n" not in line
        row = lf.read_lines([line]).frame.iloc[0].to_dict()
        assert {k: row[k] for k in fields} == fields


def test_reads_a_file_streamed_and_gzipped_with_bad_bytes(tmp_path: Path) -> None:
    line = lf.format_line("1.2.3.4", 1.7e9, "GET", "/", user_agent="x").encode()
    raw = line + b"\n" + line.replace(b'"x"', b'"\xff\xfe"') + b"\n\n" + b"\x00\x01junk\n"
    plain, zipped = tmp_path / "a.log", tmp_path / "a.log.gz"
    plain.write_bytes(raw)
    zipped.write_bytes(gzip.compress(raw))
    for path in (plain, zipped):
        parsed = lf.read_file(path)
        assert parsed.total == 3 and len(parsed.frame) == 2
        assert parsed.frame["user_agent"].iloc[1] == "\ufffd\ufffd"
        assert [(b.source, b.line) for b in parsed.bad] == [(path.name, 4)]


@pytest.mark.parametrize(
    ("query", "body", "expected"),
    [
        ("a=1&b=x+y&c", "", [("a", "1"), ("b", "x y"), ("c", "")]),
        ("q=caf%C3%A9&r=A%F1adir", "", [("q", "café"), ("r", "Añadir")]),
        ("", "id=3&nombre=Vino+Rioja&B1=A%F1adir",
         [("id", "3"), ("nombre", "Vino Rioja"), ("B1", "Añadir")]),
        ("p=1", '{"a":{"b":[1,"x"]},"c":null,"d":true}',
         [("p", "1"), ("a.b[]", "1"), ("a.b[]", "x"), ("c", "null"), ("d", "true")]),
        ("", '[{"id":1},{"id":2}]', [("[].id", "1"), ("[].id", "2")]),
        ("", "<xml>hello world</xml>", [("<body>", "<xml>hello world</xml>")]),
        ("", '{"broken":', [("<body>", '{"broken":')]),
        ("a=%zz&&b=", "", [("a", "%zz"), ("b", "")]),
    ],
)  # fmt: skip
def test_params(query: str, body: str, expected: list[tuple[str, str]]) -> None:
    assert lf.params("POST", "/x", query, body) == expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v1/products/123", "GET /api/v1/products/{id}"),
        ("GET", "/api/v1/products/123/reviews", "GET /api/v1/products/{id}/reviews"),
        ("GET", "/u/550e8400-e29b-41d4-a716-446655440000", "GET /u/{id}"),
        ("GET", "/t/9f86d081884c7d659a2feaa0c55ad015", "GET /t/{id}"),
        ("GET", "/static/js/app.8f3a9c21.js", "GET /static/js/*.js"),
        ("GET", "/images/products/12/3.JPG", "GET /images/products/{id}/*.jpg"),
        ("GET", "/robots.txt", "GET /robots.txt"),
        ("POST", "/login", "POST /login"),
        ("GET", "/", "GET /"),
        ("GET", "/.git/config", "GET /.git/config"),
        ("GET", "/deadbeef", "GET /deadbeef"),
    ],
)
def test_endpoint(method: str, path: str, expected: str) -> None:
    assert lf.endpoint(method, path) == expected


@pytest.mark.skipif(not APACHE_ACCESS.exists(), reason="reference access log not present")
def test_every_line_of_a_real_access_log_parses() -> None:
    parsed = lf.read_file(APACHE_ACCESS)
    assert parsed.bad == []
    assert parsed.total == len(parsed.frame) == 200
    assert set(parsed.frame["protocol"]) <= {"HTTP/1.0", "HTTP/1.1"}
    assert (parsed.frame["time"] > 1.4e9).all()


@pytest.mark.skipif(not APACHE_ERROR.exists(), reason="reference error log not present")
def test_an_error_log_is_another_format_line_by_line() -> None:
    parsed = lf.read_file(APACHE_ERROR)
    assert len(parsed.frame) == 0
    assert len(parsed.bad) == parsed.total == 2000
    assert all("another format" in b.reason for b in parsed.bad)
    assert parsed.bad[0].source == "Apache_2k.log" and parsed.bad[0].line == 1
