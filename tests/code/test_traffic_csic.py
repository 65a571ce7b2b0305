"""The CSIC 2010 format: reading the published samples, writing, and look-alike files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from projects.traffic import csic
from projects.traffic import logformat as lf
from projects.traffic.simulator import PAYLOAD_KINDS

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "csic"
NORMAL = SAMPLES / "normalTrafficTraining_sample.txt"
ANOMALOUS = SAMPLES / "anomalousTrafficTest_sample.txt"
needs_samples = pytest.mark.skipif(not NORMAL.exists(), reason="CSIC samples not present")


@needs_samples
def test_reads_the_normal_sample() -> None:
    bad: list[lf.BadLine] = []
    requests = csic.read_csic(NORMAL, bad)
    assert bad == [] and len(requests) == 30
    first, add, post = requests[0], requests[1], requests[2]
    assert (first.method, first.path, first.query, first.body) == (
        "GET",
        "/tienda1/index.jsp",
        "",
        "",
    )
    assert first.line == 1 and "Konqueror" in first.user_agent
    assert add.query == "id=3&nombre=Vino+Rioja&precio=100&cantidad=55&B1=A%F1adir+al+carrito"
    assert (post.method, post.query, post.body) == ("POST", "", add.query)
    assert Counter(r.method for r in requests) == {"GET": 22, "POST": 8}
    assert lf.params(post.method, post.path, post.query, post.body)[-1] == (
        "B1",
        "Añadir al carrito",
    )


@needs_samples
def test_reads_the_anomalous_sample() -> None:
    requests = csic.read_csic(ANOMALOUS)
    assert len(requests) == 30
    assert Counter(r.method for r in requests) == {"GET": 16, "POST": 13, "PUT": 1}
    assert "DROP+TABLE" in requests[0].query
    assert requests[4].path == "/asf-logo-wide.gif~"
    put = next(r for r in requests if r.method == "PUT")
    assert put.body.startswith("modo=registro&login=armand") and put.headers["Host"] == HOST_9090


HOST_9090 = "localhost:9090"


@needs_samples
def test_writing_the_normal_sample_gives_it_back_byte_for_byte(tmp_path: Path) -> None:
    csic.write_csic(tmp_path / "out.txt", csic.read_csic(NORMAL))
    assert (tmp_path / "out.txt").read_bytes() == NORMAL.read_bytes()


def test_write_then_read(tmp_path: Path) -> None:
    requests = [
        csic.CsicRequest("GET", "/tienda1/index.jsp", "", "", csic.USER_AGENT, 0),
        csic.CsicRequest("POST", "/tienda1/a.jsp", "", "x=Jam%F3n&y=%27", "UA", 0),
        csic.CsicRequest("GET", "/tienda1/b.jsp", "id=2%2F", "", csic.USER_AGENT, 0),
    ]
    csic.write_csic(tmp_path / "f.txt", requests)
    raw = (tmp_path / "f.txt").read_bytes()
    assert b"\r\n" in raw and b"Content-Length: 15\r\n\r\nx=Jam%F3n&y=%27\r\n" in raw
    back = csic.read_csic(tmp_path / "f.txt")
    assert [(r.method, r.path, r.query, r.body) for r in back] == [
        (r.method, r.path, r.query, r.body) for r in requests
    ]
    assert [r.line for r in back] == [1, 5, 9] or all(r.line > 0 for r in back)


def test_malformed_requests_are_reported_not_fatal(tmp_path: Path) -> None:
    text = (
        "GET http://localhost:8080/a.jsp HTTP/1.1\r\nHost: x\r\n\r\n\r\n"
        "garbage line\r\nmore\r\n\r\n"
        "GET http://localhost:8080/b.jsp HTTP/1.1\r\nno colon here\r\n\r\n\r\n"
        "POST http://localhost:8080/c.jsp HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
    )
    (tmp_path / "f.txt").write_bytes(text.encode("latin-1"))
    bad: list[lf.BadLine] = []
    requests = csic.read_csic(tmp_path / "f.txt", bad)
    assert [r.path for r in requests] == ["/a.jsp"]
    assert [(b.source, b.line) for b in bad] == [("f.txt", 5), ("f.txt", 9), ("f.txt", 12)]
    assert "not a request line" in bad[0].reason and "header" in bad[1].reason


def test_to_frame_has_the_parsed_request_schema() -> None:
    requests = [csic.CsicRequest("POST", "/t/a.jsp", "", "id=1", "UA", 7)]
    frame = csic.to_frame(requests)
    assert list(frame.columns) == lf.COLUMNS
    assert frame.dtypes.to_dict() == lf.read_lines([]).frame.dtypes.to_dict()
    row = frame.iloc[0]
    assert (row["line"], row["client_ip"], row["time"], row["status"]) == (7, "-", 0.0, 0)


def test_simulated_files_look_like_the_data_set(tmp_path: Path) -> None:
    kinds = csic.simulate_csic(tmp_path, 120, 100, 300, seed=0)
    for name, n in zip(csic.FILES, (120, 100, 300), strict=True):
        bad: list[lf.BadLine] = []
        requests = csic.read_csic(tmp_path / name, bad)
        assert bad == [] and len(requests) == len(kinds[name]) == n
        assert all(r.path.startswith("/") for r in requests)
        assert any(r.method == "POST" and r.body for r in requests)
    assert set(kinds["normalTrafficTraining.txt"]) == {"normal"}
    assert set(kinds["anomalousTrafficTest.txt"]) == {*PAYLOAD_KINDS, "probe"}
    raw = (tmp_path / "normalTrafficTraining.txt").read_bytes()
    assert b"%F1" in raw and b"\r\n\r\n" in raw  # Latin-1 percent-encoding, CRLF
    assert csic.simulate_csic(tmp_path / "again", 120, 100, 300, seed=0) == kinds
