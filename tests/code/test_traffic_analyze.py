"""The traffic project's pure functions: reading the logs `make analyze-traffic` judges, its
summary, the detection metrics, and the split of clients."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from projects.core import paths
from projects.core.cli import StageError
from projects.traffic.analyze import check_parsed, platform_logs, read_logs, report, summary
from projects.traffic.analyzer import Analysis
from projects.traffic.logformat import COLUMNS, format_line, read_file
from projects.traffic.metrics import detection, recall_at_fpr, share_by_kind, threshold_at_fpr
from projects.traffic.prepare import split_clients

APACHE_ERRORS = paths.ROOT.parent / "shared" / "reference" / "loghub" / "Apache_2k.log"
T0 = 1710115200.0  # 2024-03-11 00:00 UTC


def _line(i: int, ip: str = "10.0.0.1", agent: str = "Mozilla/5.0", status: int = 200) -> str:
    return format_line(
        ip, T0 + i, "GET", "/api/products", f"page={i}", "HTTP/1.1", status, 512, "-", agent, ""
    )


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- read_logs


def test_read_logs_names_bad_lines_by_file_and_line(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.log", [_line(0), "garbage", _line(1), "", _line(2)])
    cut = _line(4)[: _line(4).rfind('"')]  # the user agent's closing quote is gone
    second = _write(tmp_path / "b.log", [_line(3), cut])
    parsed = read_logs([first, second])
    assert parsed.total == 6  # the blank line is not counted
    assert len(parsed.frame) == 4
    assert parsed.frame["source"].tolist() == [str(first)] * 3 + [str(second)]
    assert parsed.frame["line"].tolist() == [1, 3, 5, 1]
    assert [(b.source, b.line) for b in parsed.bad] == [(str(first), 2), (str(second), 2)]
    assert parsed.bad[0].reason.startswith("too few fields")
    assert "truncated user agent field" in parsed.bad[1].reason
    check_parsed(parsed)  # some lines parse: no error


def test_read_logs_keeps_the_schema_across_files_and_reads_gzip(tmp_path: Path) -> None:
    plain = _write(tmp_path / "a.log", [_line(0), _line(1)])
    packed = tmp_path / "b.log.gz"
    packed.write_bytes(gzip.compress(f"{_line(2)}\n".encode()))
    empty = _write(tmp_path / "c.log", [])
    parsed = read_logs([plain, packed, empty])
    assert (parsed.total, len(parsed.frame), parsed.bad) == (3, 3, [])
    assert list(parsed.frame.columns) == [*COLUMNS, "source"]
    assert parsed.frame[COLUMNS].dtypes.equals(read_file(plain).frame.dtypes)


@pytest.mark.parametrize(
    "contents", [[], [""], ["", "   ", "\t"]], ids=["no bytes", "one blank", "blanks"]
)
def test_an_empty_log_is_refused_with_a_clear_message(tmp_path: Path, contents) -> None:
    path = tmp_path / "access.log"
    path.write_text("\n".join(contents))
    with pytest.raises(StageError, match=r"access\.log: empty, no line to analyse"):
        read_logs([path])


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"nothere\.log: no such file"):
        read_logs([_write(tmp_path / "a.log", [_line(0)]), tmp_path / "nothere.log"])


def _apache_errors() -> list[str]:
    if APACHE_ERRORS.exists():
        return APACHE_ERRORS.read_text(encoding="utf-8").splitlines()[:50]
    return [f"[Sun Dec 04 04:47:{i:02d} 2005] [error] mod_jk child in state {i}" for i in range(50)]


OTHER_FORMATS = {
    "an Apache error log": (_apache_errors(), "another format: an Apache error log line"),
    "JSON lines": (['{"time": "2024-03-11T00:00:00Z", "path": "/"}'] * 3, "starts with '{'"),
    "syslog": (
        ["Mar 11 00:00:01 host sshd[42]: Accepted publickey for root"] * 3,
        "no [timestamp] after host",
    ),
    "HDFS": (
        ["081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating"] * 3,
        "no [timestamp] after host",
    ),
}


@pytest.mark.parametrize("case", OTHER_FORMATS)
def test_a_log_of_another_format_is_refused_naming_the_file(tmp_path: Path, case: str) -> None:
    lines, reason = OTHER_FORMATS[case]
    path = _write(tmp_path / "other.log", lines)
    parsed = read_logs([path])
    assert (parsed.total, len(parsed.frame), len(parsed.bad)) == (len(lines), 0, len(lines))
    with pytest.raises(StageError) as caught:
        check_parsed(parsed)
    message = str(caught.value)
    assert f"none of the {len(lines)} lines is an access-log line" in message
    assert f"{path}:1: " in message and reason in message


def test_platform_logs_finds_every_services_access_logs(tmp_path: Path, monkeypatch) -> None:
    found = [
        tmp_path / "spam" / "access" / "2024-03-12.log",
        tmp_path / "anomaly" / "access" / "2024-03-11.log",
        tmp_path / "spam" / "access" / "2024-03-11.log",
    ]
    ignored = [
        tmp_path / "spam" / "requests" / "2024-03-11.jsonl",
        tmp_path / "spam" / "access" / "notes.txt",
        tmp_path / "spam" / "access" / "old" / "2024-03-01.log",
        tmp_path / "access" / "2024-03-11.log",
    ]
    for path in found + ignored:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_line(0) + "\n")
    expected = [found[1], found[2], found[0]]  # oldest day first, then by path
    assert platform_logs(tmp_path) == expected
    monkeypatch.setenv("MONITORING_DIR", str(tmp_path))
    assert platform_logs() == expected
    assert platform_logs(tmp_path / "nothing") == []


# ---------------------------------------------------------------------------- the report


def _analysis(parsed_rows: int) -> Analysis:
    requests = pd.DataFrame(
        {
            "line": range(1, parsed_rows + 1),
            "flagged": [True, False, False, True, False][:parsed_rows],
            "reasons": [["q: unseen characters (80%)"], [], [], ["unknown endpoint (100%)"], []],
        }
    )
    clients = pd.DataFrame(
        {
            "client_ip": ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1"],
            "user_agent": ["ua-1", "ua-1", "ua-1", "ua-2"],  # the first client has two sessions
            "start": [T0, T0 + 7200, T0, T0],
            "end": [T0 + 60, T0 + 7260, T0 + 5, T0 + 1],
            "requests": [2, 1, 1, 1],
            "score": [0.1, 9.0, 0.2, 0.3],
            "threshold": 1.0,
            "flagged": [False, True, False, False],
            "reasons": [[], ["status_401_share: 0.9 (60%)"], [], []],
        }
    )
    return Analysis(requests, clients)


def test_the_summary_counts_clients_not_sessions(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.log", [*(_line(i) for i in range(5)), "garbage"])
    parsed = read_logs([path])
    counts = summary(parsed, _analysis(5))
    assert counts == {
        "requests": 6, "parsed": 5, "clients": 3, "flagged_clients": 1, "flagged_requests": 2
    }  # fmt: skip


def test_the_report_names_flagged_requests_sessions_and_bad_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.log", [*(_line(i) for i in range(5)), "garbage"])
    parsed = read_logs([path])
    result = json.loads(json.dumps(report(parsed, _analysis(5)), default=str))
    assert [(r["source"], r["line"]) for r in result["flagged_requests"]] == [
        (str(path), 1), (str(path), 4)
    ]  # fmt: skip
    assert result["flagged_requests"][0]["reasons"] == ["q: unseen characters (80%)"]
    [session] = result["flagged_sessions"]
    assert session["start"] == "2024-03-11 02:00:00+00:00"
    assert session["reasons"] == ["status_401_share: 0.9 (60%)"]
    assert len(result["sessions"]) == 4 and "reasons" not in result["sessions"][0]
    assert result["unparsed"] == [{"source": str(path), "line": 6, "reason": parsed.bad[0].reason}]


# ---------------------------------------------------------------------------- metrics

TEN = [3.0, 1.0, 4.0, 10.0, 5.0, 9.0, 2.0, 6.0, 8.0, 7.0]  # 1..10, shuffled


@pytest.mark.parametrize(
    ("normal", "fpr", "threshold"),
    [
        (TEN, 0.0, 10.0),  # flags none
        (TEN, 0.05, 10.0),  # 5 % of 10 allows no false positive
        (TEN, 0.1, 9.0),  # flags 10 only
        (TEN, 0.25, 8.0),  # flags 9 and 10
        (TEN, 0.95, 1.0),  # flags all but the lowest
        ([1.0, 2.0, 3.0, 3.0, 3.0], 0.4, 3.0),  # ties: flagging the 3s would flag 60 %
        ([5.0], 0.5, 5.0),
        ([], 0.1, math.inf),
    ],
)
def test_threshold_at_fpr(normal: list[float], fpr: float, threshold: float) -> None:
    found = threshold_at_fpr(np.array(normal), fpr)
    assert found == threshold
    if normal:
        assert (np.array(normal) > found).mean() <= fpr


def test_threshold_at_a_false_positive_rate_of_one_flags_everything() -> None:
    assert (np.array(TEN) > threshold_at_fpr(np.array(TEN), 1.0)).all()


SCORES = [0.1, 0.2, 0.3, 0.4, 0.35, 0.9, 0.05]
POSITIVE = [False, False, False, False, True, True, True]


@pytest.mark.parametrize(
    ("scores", "positive", "fpr", "recall"),
    [
        (SCORES, POSITIVE, 0.0, 1 / 3),  # above every negative: 0.9 only
        (SCORES, POSITIVE, 0.25, 2 / 3),  # above 0.3: 0.35 and 0.9
        (SCORES, POSITIVE, 0.5, 2 / 3),  # above 0.2
        (SCORES, POSITIVE, 0.75, 2 / 3),  # above 0.1; 0.05 stays below
        ([0.5, 0.5, 0.5], [False, True, False], 0.0, 0.0),  # a tie with a negative is not caught
        ([0.1, 0.2], [True, True], 0.1, math.nan),  # no negatives
        ([0.1, 0.2], [False, False], 0.1, math.nan),  # no positives
    ],
)
def test_recall_at_fpr(scores, positive, fpr: float, recall: float) -> None:
    found = recall_at_fpr(np.array(scores), np.array(positive), fpr)
    assert found == pytest.approx(recall, nan_ok=True)


@pytest.mark.parametrize(
    ("scores", "flagged", "positive", "fpr", "expected"),
    [
        (
            [0.1, 0.2, 0.8, 0.9],
            [False, True, True, False],
            [False, False, True, True],
            0.5,
            {
                "precision": 0.5,
                "recall": 0.5,
                "f1": 0.5,
                "false_positive_rate": 0.5,
                "roc_auc": 1.0,
                "recall_at_50pct_fpr": 1.0,
            },
        ),
        (
            [0.9, 0.1, 0.2, 0.8, 0.3, 0.4],
            [True, False, False, True, False, False],
            [False, False, False, True, True, True],
            0.005,
            {
                "precision": 0.5,
                "recall": 1 / 3,
                "f1": 0.4,
                "false_positive_rate": 1 / 3,
                "roc_auc": 2 / 3,
                "recall_at_0_5pct_fpr": 0.0,
            },
        ),
        (
            [0.1, 0.7],
            [False, True],
            [False, False],
            0.01,
            {
                "precision": 0.0,
                "recall": 0.0,
                "f1": 0.0,
                "false_positive_rate": 0.5,
                "roc_auc": math.nan,
                "recall_at_1pct_fpr": math.nan,
            },
        ),
        (
            [0.1, 0.7],
            [False, True],
            [True, True],
            0.01,
            {
                "precision": 1.0,
                "recall": 0.5,
                "f1": 2 / 3,
                "false_positive_rate": math.nan,
                "roc_auc": math.nan,
                "recall_at_1pct_fpr": math.nan,
            },
        ),
    ],
    ids=["balanced", "a negative on top", "no positives", "no negatives"],
)
def test_detection(scores, flagged, positive, fpr: float, expected: dict) -> None:
    found = detection(np.array(scores), np.array(flagged), np.array(positive), fpr)
    assert list(found) == list(expected)
    assert found == pytest.approx(expected, abs=1e-6, nan_ok=True)


@pytest.mark.parametrize(
    ("flagged", "kinds", "wanted", "expected"),
    [
        (
            [True, False, True, True, False],
            ["sqli", "sqli", "xss", "probe", "probe"],
            ["xss", "sqli", "crlf"],
            {"xss": 1.0, "sqli": 0.5},  # in the order wanted; absent and unwanted kinds left out
        ),
        ([False, False, True], ["human", "human", "human"], ["human"], {"human": 1 / 3}),
        ([], [], ["human"], {}),
    ],
)
def test_share_by_kind(flagged, kinds, wanted, expected: dict) -> None:
    found = share_by_kind(np.array(flagged, dtype=bool), kinds, wanted)
    assert list(found) == list(expected)
    assert found == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------- split_clients


def _clients(sizes: dict[str, int]) -> pd.DataFrame:
    rows = [(f"{kind}-{i:03d}", kind) for kind, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["client", "kind"])


SIZES = {"human": 100, "scanner": 10, "nat": 3, "flood": 2, "stuffing": 1}


def test_split_clients_is_deterministic_and_ignores_row_order() -> None:
    clients = _clients(SIZES)
    first = split_clients(clients, 0.2, 0.3, seed=0)
    shuffled = clients.sample(frac=1, random_state=1).reset_index(drop=True)
    for again in (split_clients(clients, 0.2, 0.3, seed=0), split_clients(shuffled, 0.2, 0.3, 0)):
        assert {k: v.tolist() for k, v in again.items()} == {
            k: v.tolist() for k, v in first.items()
        }
    other = split_clients(clients, 0.2, 0.3, seed=1)
    assert set(other["test"]) != set(first["test"])


def test_split_clients_is_a_partition() -> None:
    clients = _clients(SIZES)
    parts = split_clients(clients, 0.2, 0.3, seed=0)
    assert list(parts) == ["train", "validation", "test"]
    ids = [client for part in parts.values() for client in part]
    assert sorted(ids) == sorted(clients["client"])  # every client once


@pytest.mark.parametrize(
    ("kind", "train", "validation", "test"),
    [
        ("human", 50, 20, 30),
        ("scanner", 5, 2, 3),
        ("nat", 1, 1, 1),
        ("flood", 1, 0, 1),  # two clients: one tested, none for validation
        ("stuffing", 1, 0, 0),  # a kind with one client goes to train
    ],
)
def test_split_clients_shares_per_kind(kind: str, train: int, validation: int, test: int) -> None:
    parts = split_clients(_clients(SIZES), 0.2, 0.3, seed=0)
    counts = {name: sum(c.startswith(f"{kind}-") for c in ids) for name, ids in parts.items()}
    assert counts == {"train": train, "validation": validation, "test": test}
