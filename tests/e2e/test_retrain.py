"""`python -m monitoring.retrain` in the shared copy of the repository: labelled production texts
become a new data version and a new model the gate judges; data that validation rejects, and a
project without ground truth, change nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from monitoring.retrain import data_version
from projects.spam.data import read_messages
from tests.repo_copy import registry, run_in

pytestmark = pytest.mark.e2e

RAW = "data/raw/spam/sms_spam.csv"
MODEL = "spam-classifier"
RETRAIN = (sys.executable, "-m", "monitoring.retrain", "--project")
PRIZES = ("£1000 cash", "Caribbean cruise", "new iPhone", "£500 voucher", "weekend in Paris")
NAMES = ("Sam", "Priya", "Tom", "Aisha", "Leo", "Mia", "Joe", "Nina", "Raj", "Kate")
PLANS = ("football", "the cinema", "dinner at Rosa's", "the gym", "band practice")


@pytest.fixture(scope="module")
def spam_repo(repo) -> tuple[Path, dict[str, str]]:
    """The shared copy with its pipelines run. Retraining adds model versions and may move
    @champion, so tests/conftest.py runs this file after every other test."""
    root, env = repo
    run_in(root, env, "make", "--no-print-directory", "repro")
    return root, env


def campaign(n: int, spam_share: float, batch: str) -> list[tuple[str, str]]:
    """`n` new messages (label, text), `spam_share` of them spam, unlike any in the collection."""
    every = round(1 / spam_share) if spam_share < 1 else 1
    messages = []
    for i in range(n):
        if i % every == 0:
            text = (
                f"URGENT! Your number has won a {PRIZES[i % len(PRIZES)]} in our {batch} draw. "
                f"Call 09066{i:06d} now to claim, code {batch.upper()}{i}. T&C apply, 18+ only"
            )
            messages.append(("spam", text))
        else:
            text = (
                f"Hi {NAMES[i % len(NAMES)]}, still on for {PLANS[i % len(PLANS)]} tonight? "
                f"Meet you by locker {i} at {6 + i % 4}:{i % 60:02d}, I'll bring the {batch} stuff"
            )
            messages.append(("ham", text))
    return messages


def write_logs(monitoring: Path, messages: list[tuple[str, str]]) -> None:
    """The spam service's request log of the messages over two days, with feedback for each
    (by a user, and in a different order), and in every file a line that a crash cut short."""
    half = len(messages) // 2
    for day, part in (("2025-03-01", messages[:half]), ("2025-03-02", messages[half:])):
        requests, feedback = [], []
        for i, (label, text) in enumerate(part):
            prediction = f"{day}-{i // 10}-{i % 10}"
            requests.append({
                "timestamp": f"{day}T10:00:00.000+00:00", "request_id": f"{day}-{i // 10}",
                "route": "classify", "model_version": "1", "latency_ms": 1.5,
                "prediction_id": prediction, "text": text, "text_length": len(text),
                "label": "ham", "spam_probability": 0.2,
            })  # fmt: skip
            feedback.append({"prediction_id": prediction, "label": label, "timestamp": "later"})
        requests.append({"prediction_id": f"{day}-unlabelled", "text": "no feedback for me"})
        for kind, records in (("requests", requests), ("feedback", feedback[::-1])):
            path = monitoring / "spam" / kind / f"{day}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [json.dumps(record) for record in records] + ['{"prediction_id": "cut']
            path.write_text("\n".join(lines) + "\n")


def snapshot(root: Path) -> dict[str, bytes]:
    """The bytes that a retrain that stops must leave as they were."""
    return {name: (root / name).read_bytes() for name in (RAW, "data.dvc", "dvc.lock")}


def champion(root: Path) -> str:
    return str(registry(root).get_model_version_by_alias(MODEL, "champion").version)


def versions(root: Path) -> int:
    return len(registry(root).search_model_versions(f"name='{MODEL}'"))


def test_retrain_records_a_new_data_version_and_the_gate_decides(spam_repo, tmp_path) -> None:
    root, env = spam_repo
    raw = read_messages(root / RAW)
    old_version = data_version((root / "data.dvc").read_text())
    promotion = (root / "reports/spam/promotion.json").read_bytes()
    before = versions(root)
    messages = campaign(200, 0.5, "spring")
    texts = {text for _, text in messages}
    assert len(texts) == len(messages) and not texts & set(raw["text"])
    monitoring = tmp_path / "monitoring"
    # the collection's first message comes back labelled too; it is not added again
    write_logs(monitoring, [*messages, (raw["label"][0], raw["text"][0])])
    env = env | {"MONITORING_DIR": str(monitoring)}

    done = run_in(root, env, *RETRAIN, "spam")

    output = done.stdout + done.stderr
    after = read_messages(root / RAW)
    pd.testing.assert_frame_equal(after.iloc[: len(raw)], raw)  # the original rows, unchanged
    added = sorted(after.iloc[len(raw) :].itertuples(index=False, name=None))
    assert added == sorted(messages)
    new_version = data_version((root / "data.dvc").read_text())
    assert new_version != old_version
    assert f"{old_version} -> {new_version}" in output
    status = run_in(root, env, "dvc", "status", "--cloud", "--json", "data.dvc")
    assert json.loads(status.stdout) == {}  # recorded, cached and pushed
    assert versions(root) > before
    assert (root / "reports/spam/promotion.json").read_bytes() != promotion
    report = json.loads((root / "reports/spam/promotion.json").read_text())
    assert report["candidate_version"] == str(versions(root))
    assert f"promotion: {MODEL} v{report['candidate_version']} is @" in output
    assert report["reason"] in output
    assert "200 labelled messages (100 spam, 100 ham)" in output
    # the cut-short lines are named, and the logs are left as they were
    assert "skipped 2 request-log lines that are not JSON objects" in output
    assert f"{monitoring / 'spam/feedback/2025-03-01.jsonl'}:101" in output
    assert (monitoring / "spam/feedback/2025-03-01.jsonl").read_text().endswith('"cut\n')

    again = run_in(root, env, *RETRAIN, "spam", ok=False)
    assert again.returncode == 1
    assert "no labelled production data for spam that is not already in data/raw/spam" in (
        again.stderr
    )
    assert data_version((root / "data.dvc").read_text()) == new_version


def test_recommend_has_no_ground_truth_and_changes_nothing(spam_repo) -> None:
    root, env = spam_repo
    recorded = snapshot(root)
    done = run_in(root, env, *RETRAIN, "recommend", ok=False)
    assert done.returncode == 1
    assert "no ground truth arrives for recommendations" in done.stderr
    assert "make data-record" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(root) == recorded


def test_data_that_validation_rejects_is_put_back(spam_repo, tmp_path) -> None:
    root, env = spam_repo
    recorded, champion_before, before = snapshot(root), champion(root), versions(root)
    monitoring = tmp_path / "monitoring"
    # a thousand spam messages take the spam share over params.yaml's max_spam_share
    write_logs(monitoring, campaign(1000, 1.0, "summer"))
    env = env | {"MONITORING_DIR": str(monitoring)}

    done = run_in(root, env, *RETRAIN, "spam", ok=False)

    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "error: the retrained pipeline stopped, so nothing was recorded" in done.stderr
    assert "spam-validate failed: data validation failed" in done.stderr
    assert "is_spam: expect_column_mean_to_be_between" in done.stderr
    assert "Traceback" not in output
    assert snapshot(root) == recorded  # raw file, data.dvc and dvc.lock, byte for byte
    status = run_in(root, env, "dvc", "status", "--json", "--with-deps", "spam-promote")
    assert json.loads(status.stdout) == {}  # the pipeline's outputs match its data again
    assert champion(root) == champion_before
    assert versions(root) == before
