"""The traffic simulator's pure parts on small synthetic data, and its sending against
`httpx.MockTransport` (no servers)."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import types

import httpx
import numpy as np
import pandas as pd
import pytest

from monitoring import config
from monitoring import simulate as sim
from projects.anomaly import config as anomaly_config
from projects.anomaly import production as anomaly_traffic
from projects.anomaly.parsing import LINE, UNKNOWN, Templates, blocks_in, content_of
from projects.core.cli import StageError
from projects.recommend import production as recommend_traffic
from projects.recommend.reference import SIMILAR_ITEMS_SHARE, K
from projects.spam import production as spam_traffic

# --- synthetic held-out data --------------------------------------------------------------------


@pytest.fixture
def messages() -> pd.DataFrame:
    ham = [("ham", f"see you at lunch {i}") for i in range(30)]
    spam = [("spam", f"WINNER claim your prize {i} now") for i in range(10)]
    return pd.DataFrame(ham + spam, columns=["label", "text"])


@pytest.fixture
def pool() -> recommend_traffic.RecommendPool:
    # items 1..10: 1..6 old and much rated, 7..10 recent; 9 and 10 little rated (the median is 6)
    items = pd.DataFrame({
        "item_id": range(1, 11),
        "year": pd.array([1990, 1991, 1992, 1993, 1994, 1995, 1997, 1998, 1997, 1998], "Int64"),
    })  # fmt: skip
    counts = {1: 9, 2: 8, 3: 7, 4: 6, 5: 5, 6: 5, 7: 6, 8: 6, 9: 1, 10: 0}
    train = pd.DataFrame(
        [(u, item) for item, count in counts.items() for u in range(1, count + 1)],
        columns=["user_id", "item_id"],
    )
    train.loc[len(train)] = (50, 1)  # the largest user id, known only from training
    # item 99 is not in the catalogue: it must never be asked for
    test = pd.DataFrame({"user_id": [1, 2, 2, 3, 4, 4], "item_id": [1, 1, 2, 3, 99, 4]})
    return recommend_traffic.recommend_pool(test, train, items)


def synthetic_log(n_blocks: int, anomalies: int) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Sessions and the lines of each block: four lines over a few minutes, the first two blocks
    sharing a line that names them both."""
    sessions, lines = [], []
    for b in range(n_blocks):
        block, minute = f"blk_{1000 + b}", 10 + b % 40
        sessions.append((block, "Anomaly" if b < anomalies else "Normal", "E1 E2 E3"))
        lines += [
            f"081109 20{minute}05 {100 + b} INFO dfs.FSNamesystem: BLOCK* NameSystem."
            f"allocateBlock: /user/root/part-{b:05d}. {block}",
            f"081109 20{minute}06 {200 + b} INFO dfs.DataNode$DataXceiver: Receiving block "
            f"{block} src: /10.0.0.1:5000 dest: /10.0.0.2:50010",
            "not a log line",
            f"081109 20{minute + 2}41 {300 + b} INFO dfs.DataNode$PacketResponder: Received block "
            f"{block} of size 67108864 from /10.0.0.1",
        ]
    lines.append("081109 205959 42 INFO dfs.FSNamesystem: BLOCK* ask 10.0.0.1:50010 to delete "
                 "blk_1000 blk_1001")  # fmt: skip
    frame = pd.DataFrame(sessions, columns=["BlockId", "Label", "Events"])
    return frame, anomaly_traffic.block_lines(lines, frame["BlockId"])


@pytest.fixture
def held_out_log() -> tuple[pd.DataFrame, dict[str, list[str]]]:
    return synthetic_log(50, 5)  # a base anomaly share of 0.1


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def new_lines(block: anomaly_traffic.Block) -> list[str]:
    return [line for line in block.lines if "Slow BlockReceiver" in line]


# --- sampling and sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "n"), [(5, 0), (5, 3), (5, 5), (5, 12)])
def test_sample_is_without_replacement_while_possible(size, n) -> None:
    chosen = sim.sample(size, n, rng())
    assert len(chosen) == n
    assert set(chosen.tolist()) <= set(range(size))
    assert len(set(chosen[:size].tolist())) == min(n, size)


@pytest.mark.parametrize("n", [1, 17, 60])
@pytest.mark.parametrize("s", [0.0, 0.5, 1.0])
def test_each_window_has_exactly_n_predictions(messages, pool, held_out_log, n, s) -> None:
    spam = spam_traffic.spam_requests(messages, n, s, rng())
    assert len(spam.texts) == len(spam.labels) == n
    assert len(recommend_traffic.recommend_requests(pool, n, s, rng())) == n
    requests = anomaly_traffic.anomaly_requests(*held_out_log, n, s, rng(), batch=7)
    assert sum(map(len, requests)) == n
    assert all(1 <= len(blocks) <= 7 for blocks in requests)


def test_the_same_seed_gives_the_same_requests(messages, pool, held_out_log) -> None:
    for build, data in [
        (spam_traffic.spam_requests, (messages,)),
        (recommend_traffic.recommend_requests, (pool,)),
        (anomaly_traffic.anomaly_requests, held_out_log),
    ]:
        assert build(*data, 40, 0.7, rng(3)) == build(*data, 40, 0.7, rng(3))
        assert build(*data, 40, 0.7, rng(3)) != build(*data, 40, 0.7, rng(4))


# --- spam ---------------------------------------------------------------------------------------


def test_spam_without_drift_is_held_out_messages_with_their_labels(messages) -> None:
    window = spam_traffic.spam_requests(messages, 60, 0.0, rng())
    truth = dict(zip(messages["text"], messages["label"], strict=True))
    assert window.campaign == 0
    assert [truth[text] for text in window.texts] == window.labels


@pytest.mark.parametrize(("s", "campaign"), [(0.5, 30), (1.0, 60)])
def test_spam_drift_replaces_a_share_by_long_campaign_spam(messages, s, campaign) -> None:
    window = spam_traffic.spam_requests(messages, 100, s, rng())
    new = [(t, label) for t, label in zip(window.texts, window.labels, strict=True)
           if t not in set(messages["text"])]  # fmt: skip
    assert window.campaign == len(new) == campaign
    assert {label for _, label in new} == {"spam"}
    assert all(250 <= len(text) <= 600 for text, _ in new)
    assert all(re.search(r"claim-\w+\.xyz", text) for text, _ in new)
    assert np.mean([len(t) for t, _ in new]) > 3 * messages["text"].str.len().mean()


def test_campaign_messages_keep_to_their_lengths_and_vocabulary() -> None:
    generator = rng()
    for _ in range(300):
        text = spam_traffic.campaign_message(generator)
        assert spam_traffic.CAMPAIGN_LENGTH[0] <= len(text) <= spam_traffic.CAMPAIGN_LENGTH[1]
        assert (
            len(set(re.findall(r"[a-z0-9]+", text.lower())) & set(spam_traffic.CAMPAIGN_VOCABULARY))
            >= 3
        )


def test_the_campaign_vocabulary_is_new_to_the_sms_collection(spam_messages) -> None:
    known = set(re.findall(r"[a-z0-9]+", " ".join(spam_messages["text"]).lower()))
    new = {
        *spam_traffic.CAMPAIGN_VOCABULARY,
        *(brand.lower() for brand in spam_traffic.CAMPAIGN_BRANDS),
    }
    assert not new & known


# --- recommend ----------------------------------------------------------------------------------


def test_the_pool_holds_held_out_users_catalogue_items_and_recent_little_rated_ones(pool) -> None:
    assert pool.users.tolist() == [1, 2, 3, 4]
    assert pool.max_user == 50
    assert sorted(pool.items.tolist()) == [1, 1, 2, 3, 4]  # by popularity; not item 99
    assert sorted(pool.recent.tolist()) == [9, 10]


def test_recommend_without_drift_is_the_reference_mix_of_known_users_and_items(pool) -> None:
    calls = recommend_traffic.recommend_requests(pool, 100, 0.0, rng())
    similar = [c.body["item_id"] for c in calls if c.route == "similar_items"]
    users = [c.body["user_id"] for c in calls if c.route == "recommend"]
    assert len(similar) == round(SIMILAR_ITEMS_SHARE * 100)
    assert set(similar) <= set(pool.items.tolist())
    assert set(users) <= set(pool.users.tolist())
    assert {c.body["k"] for c in calls} == {K}


def test_recommend_drift_brings_new_users_and_recent_items(pool) -> None:
    calls = recommend_traffic.recommend_requests(pool, 100, 1.0, rng())
    similar = [c.body["item_id"] for c in calls if c.route == "similar_items"]
    users = [c.body["user_id"] for c in calls if c.route == "recommend"]
    assert len(similar) == round(
        (SIMILAR_ITEMS_SHARE + recommend_traffic.EXTRA_SIMILAR_SHARE) * 100
    )
    assert sum(u > pool.max_user for u in users) == round(
        recommend_traffic.NEW_USER_SHARE * len(users)
    )
    assert set(users) - set(pool.users.tolist()) == {u for u in users if u > pool.max_user}
    assert sum(item in (9, 10) for item in similar) >= round(
        recommend_traffic.EXTRA_SIMILAR_SHARE * 100
    )
    assert max(u for u in users) <= 2**31 - 1


# --- anomaly ------------------------------------------------------------------------------------


def test_block_lines_keeps_log_order_and_skips_what_is_not_a_log_line(held_out_log) -> None:
    _, lines = held_out_log
    assert len(lines) == 50
    assert [line.split()[1] for line in lines["blk_1003"]] == ["201305", "201306", "201541"]
    assert "blk_1000 blk_1001" in lines["blk_1000"][-1]
    assert lines["blk_1001"][-1] == lines["blk_1000"][-1]


def test_anomaly_without_drift_replays_held_out_blocks_at_the_base_share(held_out_log) -> None:
    sessions, lines = held_out_log
    blocks = [
        b
        for request in anomaly_traffic.anomaly_requests(sessions, lines, 40, 0.0, rng())
        for b in request
    ]
    labels = dict(zip(sessions["BlockId"], sessions["Label"], strict=True))
    assert sum(b.label == "Anomaly" for b in blocks) == round(0.1 * 40)
    assert len({b.source for b in blocks}) == 40  # without replacement
    for block in blocks:
        assert block.label == labels[block.source]
        assert not block.new_template and not new_lines(block)
        assert [line.replace(block.block_id, "B") for line in block.lines] == [
            anomaly_traffic.BLOCK_RUN.sub("B", line) for line in lines[block.source]
        ]


def test_anomaly_drift_raises_the_anomaly_share_and_adds_a_new_template(held_out_log) -> None:
    blocks = [
        b for r in anomaly_traffic.anomaly_requests(*held_out_log, 200, 1.0, rng()) for b in r
    ]
    assert sum(b.label == "Anomaly" for b in blocks) == round(anomaly_traffic.ANOMALY_SHARE * 200)
    assert sum(b.new_template for b in blocks) == round(anomaly_traffic.NEW_TEMPLATE_SHARE * 200)
    for block in blocks:
        assert len(new_lines(block)) == int(block.new_template)
        stamps = [LINE.match(line)["time"] for line in block.lines]
        assert stamps == sorted(stamps)  # the new line falls inside the range, in order


def test_every_line_of_a_request_names_its_block_and_no_block_repeats(held_out_log) -> None:
    requests = anomaly_traffic.anomaly_requests(*held_out_log, 300, 1.0, rng(), batch=20)
    ids = [b.block_id for request in requests for b in request]
    assert len(set(ids)) == len(ids) == 300  # so none repeats within a request either
    assert not set(ids) & set(held_out_log[1])
    for request in requests:
        for block in request:
            assert {tuple(blocks_in(content_of(line))) for line in block.lines} == {
                (block.block_id,)
            }


def test_the_id_generator_changes_only_the_block_ids(held_out_log) -> None:
    first, second = (
        [
            b
            for r in anomaly_traffic.anomaly_requests(
                *held_out_log, 60, 1.0, rng(1), id_rng=rng(seed)
            )
            for b in r
        ]
        for seed in (5, 6)
    )
    assert not {b.block_id for b in first} & {b.block_id for b in second}
    for one, other in zip(first, second, strict=True):
        assert (one.source, one.label, one.new_template) == (
            other.source, other.label, other.new_template,
        )  # fmt: skip
        assert [line.replace(one.block_id, "B") for line in one.lines] == [
            line.replace(other.block_id, "B") for line in other.lines
        ]


def test_the_new_line_is_an_hdfs_line_inside_the_block_of_no_known_template() -> None:
    lines = [
        "081109 203615 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_7 src: "
        "/10.0.0.1:1 dest: /10.0.0.2:50010",
        "081109 204655 2 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_7 "
        "terminating",
    ]
    for seed in range(20):
        out = anomaly_traffic.with_new_template(lines, "blk_7", rng(seed))
        (new,) = set(out) - set(lines)
        found = LINE.match(new)
        assert found["level"] == "WARN"
        assert "203615" <= found["time"] <= "204655"
        assert blocks_in(found["content"]) == ["blk_7"]
    templates = anomaly_config.PREPARED_DIR / "templates.json"
    if templates.exists():  # the champion's templates, after `make run`
        assert Templates.from_json(templates.read_text()).match(found["content"]) == UNKNOWN


# --- feedback -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("share", "count"), [(0.0, 0), (0.5, 5), (0.25, 2), (1.0, 10)])
def test_feedback_labels_a_share_of_the_predictions(share, count) -> None:
    predictions = [(f"r-{i}", "spam" if i % 3 else "ham") for i in range(10)]
    records = sim.feedback_records(predictions, share, rng(), "2024-01-01T00:00:00.000+00:00")
    assert len(records) == count
    for record in records:
        assert set(record) == {"prediction_id", "label", "timestamp"}
        assert (record["prediction_id"], record["label"]) in predictions
        assert dt.datetime.fromisoformat(record["timestamp"]).tzinfo is not None


# --- sending, against a mock transport ----------------------------------------------------------


def service(project: str, handler) -> sim.Service:
    client = httpx.Client(base_url="http://test:1", transport=httpx.MockTransport(handler))
    return sim.Service(project, "http://test:1", client)


@pytest.mark.parametrize(
    ("project", "status", "fails"),
    [("recommend", 404, False), ("spam", 404, True), ("anomaly", 422, True), ("spam", 500, True)],
)
def test_errors_name_the_project_route_status_and_body(project, status, fails) -> None:
    broken = service(project, lambda request: httpx.Response(status, json={"error": "nope"}))
    if not fails:
        assert broken.post("similar_items", {"item_id": 99999, "k": K}, missing_ok=True) is None
        return
    with pytest.raises(StageError, match=rf"{project} .*{status}.*POST /route.*nope"):
        broken.post("route", {})


def test_a_service_that_does_not_answer_is_a_stage_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for call in (lambda s: s.check(), lambda s: s.post("classify", {"texts": ["hi"]})):
        with pytest.raises(StageError, match=r"spam service is not answering.*make serve"):
            call(service("spam", refuse))


def fake_anomaly(request: httpx.Request) -> httpx.Response:
    """Scores each block the lines name: anomalous when it logs a WARN line."""
    grouped: dict[str, list[str]] = {}
    for line in json.loads(request.content)["lines"]:
        for block in blocks_in(content_of(line)):
            grouped.setdefault(block, []).append(line)
    verdicts = [
        {"prediction_id": f"r{i}-{block}", "block_id": block, "unknown_events": 0,
         "is_anomaly": any(" WARN " in line for line in found)}
        for i, (block, found) in enumerate(grouped.items())
    ]  # fmt: skip
    return httpx.Response(200, json={"sessions": verdicts})


def fake_spam(request: httpx.Request) -> httpx.Response:
    texts = json.loads(request.content)["texts"]
    results = [{"prediction_id": f"{t}-{i}", "label": "spam"} for i, t in enumerate(texts)]
    return httpx.Response(200, json={"results": results})


def fake_recommend(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body.get("item_id") == 10:
        return httpx.Response(404, json={"error": "item_id 10 is not in the catalogue"})
    return httpx.Response(200, json={"prediction_id": "p", "cold_start": body.get("user_id") == 99})


def test_anomaly_predictions_carry_their_blocks_true_labels(held_out_log, tmp_path) -> None:
    requests = anomaly_traffic.anomaly_requests(*held_out_log, 30, 1.0, rng())
    log = tmp_path / "cluster.log"
    predictions, stats = anomaly_traffic.send_anomaly(
        service("anomaly", fake_anomaly), requests, log
    )
    labels = {b.block_id: b.label for request in requests for b in request}
    assert [(p, label) for p, label in predictions] == [
        (p, labels[p.split("-", 1)[1]]) for p, _ in predictions
    ]
    assert stats["predictions"] == 30 and stats["requests"] == len(requests)
    assert log.read_text().splitlines() == [
        line for request in requests for b in request for line in b.lines
    ]


def test_simulate_sends_every_window_writes_labels_and_monitors_all_but_the_last(
    messages, pool, held_out_log, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MONITORING_DIR", str(tmp_path))
    monkeypatch.setattr(sim, "FLUSH_WAIT", 0)
    monitored = []
    monkeypatch.setattr(sim, "run_monitoring", monitored.append)
    held_out = {
        "spam": messages,
        "recommend": pool,
        "anomaly": anomaly_traffic.AnomalyHeldOut(*held_out_log),
    }
    handlers = {"spam": fake_spam, "recommend": fake_recommend, "anomaly": fake_anomaly}
    services = {project: service(project, handlers[project]) for project in held_out}
    totals = sim.simulate(held_out, services, 20, 3, True, 0, 0.5)
    assert totals["spam"]["predictions"] == totals["anomaly"]["predictions"] == 60
    recommend = totals["recommend"]
    assert recommend["predictions"] + recommend["unknown items skipped"] == 60
    assert monitored == [list(held_out)] * 2
    for project in ("spam", "anomaly"):
        (feedback,) = config.feedback_dir(project).glob("*.jsonl")
        assert len(feedback.read_text().splitlines()) == 30
    (cluster_log,) = anomaly_traffic.cluster_log_dir().glob("*.log")
    assert len(cluster_log.read_text().splitlines()) == totals["anomaly"]["lines"]


# --- the command line's helpers -----------------------------------------------------------------


def test_a_closed_window_is_monitored(monkeypatch) -> None:
    calls = []
    monkeypatch.setitem(
        sys.modules, "monitoring.monitor", types.SimpleNamespace(run_job=calls.append)
    )
    sim.run_monitoring(("spam",))
    assert calls == [["spam"]]
