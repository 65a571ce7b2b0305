"""The traffic pipeline in the shared repository copy, and its two commands for real logs:
`make analyze-traffic` (`projects.traffic.analyze`) and `make evaluate-requests`
(`projects.traffic.csic_eval`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from projects.core import paths
from projects.traffic.csic import simulate_csic
from projects.traffic.logformat import read_file
from projects.traffic.simulator import ABUSE_KINDS, NORMAL_KINDS, PAYLOAD_KINDS, write
from tests.repo_copy import registry, run_in

pytestmark = pytest.mark.e2e

MODEL = "request-pattern-analyzer"
OTHERS = ("spam", "recommend", "anomaly")
REFERENCE = paths.ROOT.parent / "shared" / "reference"
APACHE_ERRORS = REFERENCE / "loghub" / "Apache_2k.log"
REAL_ACCESS_LOG = REFERENCE / "access-logs" / "apache_combined_200.log"
SUMMARY = {"requests", "parsed", "clients", "flagged_clients", "flagged_requests"}
# lines real servers write that the simulator never does
QUIRKS = [
    '10.1.2.3 - - [11/Mar/2024:10:00:00 +0100] "-" 408 0 "-" "-"',
    '10.1.2.4 - - [11/Mar/2024:10:00:01 +0100] "\\x16\\x03\\x01\\x00\\xa5\\x01" 400 157 "-" "-"',
    '10.1.2.5 - - [11/Mar/2024:10:00:02 +0100] "GET /search?q=a b HTTP/1.1" 200 10 "-" "curl/8"',
    '10.1.2.6 - - [11/Mar/2024:10:00:03 +0100] "CONNECT example.com:443 HTTP/1.1" 400 0 "-" "-"',
    '10.1.2.7 - - [11/Mar/2024:10:00:04 +0100] "GET http://example.com/x?y=1 HTTP/1.1" 200 5 "-"'
    ' "proxy"',
    '2001:db8::1 - alice [11/Mar/2024:10:00:05 +0100] "HEAD / HTTP/2.0" 200 - "-" "Mozilla/5.0"',
    f'10.1.2.8 - - [11/Mar/2024:10:00:06 +0100] "GET /{"a" * 5000} HTTP/1.1" 414 0 "-" "x"',
    '10.1.2.9 - - [11/Mar/2024:10:00:08 +0100] "GET / HTTP/1.1" 200 20',  # Common Log Format
    '10.1.2.10 - - [11/Mar/2024:10:00:09 +0100] "GET /%ZZ?a=%E9&&=&b HTTP/1.1" 200 20 "-" "x"',
    '10.1.2.11 - - [11/Mar/2024:10:00:10 +0100] "GET / HTTP/1.1" 200 20 "-" "x" "-" 0.004',
]


def other_format_lines(n: int) -> list[str]:
    """`n` lines of an Apache error log: Loghub's real ones when they are beside us."""
    if APACHE_ERRORS.exists():
        return APACHE_ERRORS.read_text(encoding="utf-8").splitlines()[:n]
    return [
        f"[Sun Dec 04 04:47:{i % 60:02d} 2005] [error] mod_jk child in state {i}" for i in range(n)
    ]


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_repro_of_traffic_registers_a_champion_and_runs_nothing_else(repo) -> None:
    root, env = repo
    done = run_in(root, env, "dvc", "repro", "--downstream", "traffic-prepare")
    for other in OTHERS:
        assert f"Running stage '{other}-" not in done.stdout
    metrics = json.loads((root / "metrics/traffic.json").read_text())
    assert {"request", "client", "supervised", "mean_f1"} <= set(metrics)
    common = {"precision", "recall", "f1", "false_positive_rate", "roc_auc"}
    assert common | {"recall_at_0_5pct_fpr", "per_kind_recall"} <= set(metrics["request"])
    assert common | {"recall_at_1pct_fpr", "first_requests"} <= set(metrics["client"])
    assert set(metrics["request"]["per_kind_recall"]) == {*PAYLOAD_KINDS, "probe"}
    assert set(metrics["client"]["per_kind_recall"]) == set(ABUSE_KINDS)
    for level in ("request", "client"):
        assert set(metrics[level]["hard_negative_fpr"]) == set(NORMAL_KINDS)
        assert common <= set(metrics["supervised"][level])
        assert metrics[level]["roc_auc"] > 0.9
    client = registry(root)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    promotion = json.loads((root / "reports/traffic/promotion.json").read_text())
    assert (promotion["model"], promotion["promoted"]) == (MODEL, True)
    run = client.get_run(champion.run_id)
    assert run.data.metrics["mean_f1"] == pytest.approx(metrics["mean_f1"])
    assert run.data.metrics["request_roc_auc"] == pytest.approx(metrics["request"]["roc_auc"])
    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "plots")}
    assert {"plots/request_scores.png", "plots/client_scores.png"} <= artifacts
    assert (root / "data/reference/traffic").is_dir()


PYFUNC = """
import json, sys, pandas as pd
from projects.core import registry
from projects.traffic.logformat import read_lines
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
model = registry.load_pyfunc_model("models:/request-pattern-analyzer@champion")
print(model.predict(pd.DataFrame({"log_line": lines})).to_json(orient="records"))
try:  # the parsed columns, which the unwrapped model also takes (the signature is log_line's)
    parsed = read_lines(lines).frame
    print(model.unwrap_python_model().predict(None, parsed).to_json(orient="records"))
except Exception as exc:
    print(json.dumps(f"{type(exc).__name__}: {exc}"[:300]))
"""


@pytest.fixture(scope="module")
def pyfunc_answers(repo, tmp_path_factory) -> tuple[list[str], list[dict], object]:
    """Raw lines (20 normal ones of people, 3 of each payload kind, one that does not parse),
    and the champion pyfunc's answers on them as `log_line`s and as parsed columns."""
    root, env = repo
    raw = root / "data/raw/traffic"
    labels = pd.read_csv(raw / "labels.csv", usecols=["line", "client_kind", "request_kind"])
    normal = labels[(labels.client_kind == "human") & (labels.request_kind == "normal")]
    payloads = labels[labels.request_kind.isin(PAYLOAD_KINDS)].groupby("request_kind").head(3)
    log = (raw / "access.log").read_text(encoding="utf-8").splitlines()
    lines = [log[n - 1] for n in [*normal.line.iloc[::97][:20], *payloads.line]]
    lines.insert(10, "this is not an access-log line")  # input line 11: left out
    path = tmp_path_factory.mktemp("pyfunc") / "lines.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tracking = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    done = run_in(root, env | tracking, sys.executable, "-c", PYFUNC, str(path))
    as_lines, as_columns = done.stdout.strip().splitlines()[-2:]
    return lines, json.loads(as_lines), json.loads(as_columns)


def test_the_champion_loads_as_a_pyfunc_that_scores_raw_lines(pyfunc_answers) -> None:
    lines, rows, _ = pyfunc_answers
    assert [r["line"] for r in rows] == [*range(1, 11), *range(12, len(lines) + 1)]
    assert set(rows[0]) == {"line", "score", "threshold", "flagged", "reasons"}
    humans, attacks = rows[:20], rows[20:]
    assert len(attacks) == 3 * len(PAYLOAD_KINDS)
    assert sum(r["flagged"] for r in humans) <= 1, humans
    assert sum(r["flagged"] for r in attacks) >= 0.9 * len(attacks), attacks
    assert all(bool(r["reasons"]) == r["flagged"] == (r["score"] > r["threshold"]) for r in rows)


def test_the_unwrapped_champion_also_takes_parsed_columns(pyfunc_answers) -> None:
    _, rows, answer = pyfunc_answers
    assert answer == rows


def test_analyze_traffic_judges_access_logs_and_names_bad_lines(repo, tmp_path) -> None:
    root, env = repo
    log, _ = write(tmp_path / "small", clients=30, seed=5)
    good = len(log.read_text().splitlines())
    with log.open("a") as f:
        f.write("garbage\n" + other_format_lines(1)[0] + "\n")
    quirks = tmp_path / "quirks.log"
    quirks.write_text("\n".join(QUIRKS) + "\n")
    files = [log, quirks, *([REAL_ACCESS_LOG] if REAL_ACCESS_LOG.exists() else [])]
    command = [sys.executable, "-m", "projects.traffic.analyze"]
    for path in files:
        command += ["--log", str(path)]
    out = tmp_path / "report.json"
    done = run_in(root, env, *command, "--out", str(out))
    counts = _last_json(done.stdout)
    real = 200 if REAL_ACCESS_LOG.exists() else 0
    assert set(counts) == SUMMARY
    assert counts["requests"] == good + 2 + len(QUIRKS) + real
    assert counts["parsed"] == good + len(QUIRKS) + real
    clients = pd.concat([read_file(path).frame[["client_ip", "user_agent"]] for path in files])
    clients = clients.drop_duplicates()
    assert counts["clients"] == len(clients)
    assert 0 < counts["flagged_clients"] < counts["clients"]
    assert counts["flagged_requests"] > 0
    assert f"unparseable: {log}:{good + 1}: " in done.stderr
    assert f"unparseable: {log}:{good + 2}: another format" in done.stderr
    report = json.loads(out.read_text())
    assert report["summary"] == counts
    assert report["model_version"] == "1"
    assert [(u["source"], u["line"]) for u in report["unparsed"]] == [
        (str(log), good + 1),
        (str(log), good + 2),
    ]
    assert all(r["reasons"] for r in report["flagged_requests"])
    assert all(s["reasons"] for s in report["flagged_sessions"])
    assert {r["source"] for r in report["flagged_requests"]} <= set(map(str, files))


def test_analyze_traffic_without_a_log_reads_the_services_access_logs(repo, tmp_path) -> None:
    root, env = repo
    monitoring = tmp_path / "monitoring"
    env = env | {"MONITORING_DIR": str(monitoring)}
    command = [sys.executable, "-m", "projects.traffic.analyze", "--out", str(tmp_path / "r.json")]
    done = run_in(root, env, *command, ok=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no access log of the platform's services" in done.stderr
    for project, day in (("spam", "2024-03-11"), ("anomaly", "2024-03-12")):
        (monitoring / project / "access").mkdir(parents=True)
        (monitoring / project / "access" / f"{day}.log").write_text("\n".join(QUIRKS[:5]) + "\n")
    counts = _last_json(run_in(root, env, *command).stdout)
    assert (counts["requests"], counts["parsed"]) == (10, 10)


def _broken_logs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    other = tmp_path / "error.log"
    other.write_text("\n".join(other_format_lines(50)) + "\n")
    empty = tmp_path / "empty.log"
    empty.write_text("")
    return {
        "another format": (other, f"{other}:1: another format"),
        "empty": (empty, f"{empty}: empty, no line to analyse"),
        "missing": (tmp_path / "missing.log", f"{tmp_path / 'missing.log'}: no such file"),
    }


@pytest.mark.parametrize("case", ["another format", "empty", "missing"])
def test_analyze_traffic_refuses_what_is_not_an_access_log(repo, tmp_path, case: str) -> None:
    root, env = repo
    path, message = _broken_logs(tmp_path)[case]
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "projects.traffic.analyze", "--log", str(path)]
    done = run_in(root, env, *command, "--out", str(out), ok=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert message in done.stderr
    assert not out.exists()


def test_evaluate_requests_on_csic_format_files(repo, tmp_path) -> None:
    root, env = repo
    simulate_csic(tmp_path / "csic", n_normal_train=400, n_normal_test=200, n_anomalous=100, seed=2)
    command = [sys.executable, "-m", "projects.traffic.csic_eval", "--csic"]
    result = _last_json(run_in(root, env, *command, str(tmp_path / "csic")).stdout)
    assert set(result) == {"unsupervised", "supervised", "requests"}
    assert result["requests"] == 700
    for name in ("unsupervised", "supervised"):
        assert set(result[name]) == {"roc_auc", "tpr_at_1pct_fpr", "precision", "recall", "f1"}
        assert 0.5 < result[name]["roc_auc"] <= 1
    missing = tmp_path / "not-here"
    done = run_in(root, env, *command, str(missing), ok=False)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert f"{missing}: no such directory" in done.stderr


def test_the_make_targets_run_the_two_commands(repo) -> None:
    root, env = repo
    analyze = run_in(root, env, "make", "-n", "analyze-traffic", "LOG=a b.log", "OUT=r.json")
    assert 'python -m projects.traffic.analyze --log "a b.log" --out "r.json"' in analyze.stdout
    plain = run_in(root, env, "make", "-n", "analyze-traffic")
    assert "python -m projects.traffic.analyze" in plain.stdout and "--log" not in plain.stdout
    csic = run_in(root, env, "make", "-n", "evaluate-requests", "CSIC=data/csic")
    assert 'python -m projects.traffic.csic_eval --csic "data/csic"' in csic.stdout


def test_bad_labels_stop_at_validate_and_change_nothing(repo) -> None:
    root, env = repo
    labels = root / "data/raw/traffic/labels.csv"
    original = labels.read_bytes()
    recorded = (root / "data.dvc").read_text()
    client = registry(root)
    versions = len(client.search_model_versions(f"name='{MODEL}'"))
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    try:
        header, first, rest = original.decode().split("\n", 2)
        prefix, _kind, request_kind, is_attack = first.rsplit(",", 3)
        labels.write_text(f"{header}\n{prefix},robot,{request_kind},{is_attack}\n{rest}")
        done = run_in(root, env, "dvc", "repro", "--downstream", "traffic-prepare", ok=False)
        assert done.returncode != 0
        output = done.stdout + done.stderr
        assert "traffic-validate" in output and "Traceback" not in output
        assert "client_kind: expect_column_values_to_be_in_set" in output
        assert "Running stage 'traffic-train'" not in output
        assert (root / "data.dvc").read_text() == recorded
        assert len(client.search_model_versions(f"name='{MODEL}'")) == versions
        assert client.get_model_version_by_alias(MODEL, "champion").version == champion
    finally:
        labels.write_bytes(original)  # the other tests run the whole pipeline
