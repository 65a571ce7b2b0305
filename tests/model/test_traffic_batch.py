"""The traffic project's batch path without Spark (tests/e2e/test_batch.py runs Spark).

An analyzer is trained here on the normal clients of the raw log's first lines (no pipeline);
the example input comes from the same log, so many of its sessions sit exactly on a normal
reference session: where the last bits of a request score decide a session's reasons.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest

from batch import job
from batch.inputs import read_lines as file_lines
from projects.traffic import analyzer as analyzer_module
from projects.traffic import batch
from projects.traffic.analyze import read_logs
from projects.traffic.analyzer import Analyzer
from projects.traffic.clients import ClientModel
from projects.traffic.config import RAW_DIR
from projects.traffic.data import LABELS_FILE, LOG_FILE, normal_clients
from projects.traffic.logformat import read_lines
from projects.traffic.requests_model import RequestModel

TRAINING_LINES = 8000
EXAMPLE_LINES = 2400


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    """Both levels fitted on the normal clients of the raw log's first lines (~1 s)."""
    if not (RAW_DIR / LOG_FILE).exists():
        pytest.fail(f"{RAW_DIR} is missing: run `make setup` (make test does) first")
    with open(RAW_DIR / LOG_FILE, encoding="utf-8") as f:
        frame = read_lines(itertools.islice(f, TRAINING_LINES)).frame
    kinds = pd.read_csv(RAW_DIR / LABELS_FILE, nrows=TRAINING_LINES).set_index("line")
    normal = normal_clients(
        frame.assign(client_kind=kinds.loc[frame["line"], "client_kind"].values)
    )
    requests = RequestModel(fpr=0.01, seed=0).fit(normal)
    clients = ClientModel(fpr=0.02, request_threshold=requests.threshold_, idle=1800.0)
    return Analyzer(requests, clients.fit(normal, requests.score(normal)))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """The example input, in the order the job gives its files."""
    folder = tmp_path_factory.mktemp("traffic-batch") / "logs"
    batch.example(folder, EXAMPLE_LINES)
    return [Path(f) for f in job.input_files(str(folder))]


def test_the_example_spreads_clients_over_three_files_with_lines_of_other_formats(files) -> None:
    assert [f.name for f in files] == ["access-0.log", "access-1.log", "access-2.log.gz"]
    frame, bad = batch.read_requests(files)
    assert len(frame) == EXAMPLE_LINES
    spread = frame.groupby(["client_ip", "user_agent"])["file"].nunique()
    assert (spread == 3).sum() >= 5
    assert len(bad) == len(batch.OTHER_FORMATS)


def test_local_is_analyze_on_the_whole_input_as_make_analyze_traffic_reads_it(
    analyzer, files
) -> None:
    tables = batch.local(files, analyzer, "7")
    parsed = read_logs(files)
    reference = analyzer.analyze(parsed.frame)
    requests = tables["requests"]
    assert list(requests["file"]) == list(parsed.frame["source"])
    assert (requests["model_version"] == "7").all() and (
        tables["clients"]["model_version"] == "7"
    ).all()
    pd.testing.assert_frame_equal(
        requests.drop(columns=["file", "model_version"]), reference.requests, check_exact=True
    )
    pd.testing.assert_frame_equal(
        tables["clients"].drop(columns=["model_version"]), reference.clients, check_exact=True
    )
    assert requests["flagged"].any() and tables["clients"]["flagged"].any()
    assert requests.loc[requests["flagged"], "reasons"].map(len).gt(0).all()
    rejected = tables["rejected"]
    assert list(rejected.columns) == ["file", "text", "reason"]
    assert sorted(rejected["reason"]) == sorted(b.reason for b in parsed.bad)
    assert set(rejected["file"]) == {str(files[1])}


def _spark_like(
    analyzer: Analyzer, files: list[Path], block_lines: int, batch_rows: int, partitions: int
) -> dict[str, pd.DataFrame]:
    """What `batch.spark` does, in pandas: files cut into blocks spread over partitions (in no
    particular order), each read in batches; then requests shuffled by client."""
    rng = np.random.default_rng(0)
    blocks = []
    for path in files:
        uri = "file:" + quote(str(path))  # as Spark names a file
        lines = list(file_lines(path))
        for start in range(0, len(lines), block_lines):
            part = lines[start : start + block_lines]
            blocks.append(pd.DataFrame({"file": uri, "block": start * 100, "value": part}))
    offsets = batch.block_offsets((b["file"][0], b["block"][0], len(b)) for b in blocks)
    ranks = {str(f): i for i, f in enumerate(files)}
    order = rng.permutation(len(blocks))
    parsed = []
    for p in range(partitions):
        rows = pd.concat([blocks[i] for i in order[p::partitions]], ignore_index=True)
        seen: dict[tuple[str, int], int] = {}
        for at in range(0, len(rows), batch_rows):
            chunk = rows.iloc[at : at + batch_rows].reset_index(drop=True)
            parsed += batch.parse_batch(analyzer, chunk, offsets, seen, ranks)
    rejected = [f for f in parsed if f["reason"].notna().all()]
    requests = pd.concat([f for f in parsed if f["reason"].isna().all()], ignore_index=True)
    requests = requests[batch.PARSED]
    pilot = batch.pilot_of(requests)
    chunks = np.array_split(rng.permutation(len(requests)), partitions)
    scored = pd.concat(
        [
            pd.concat(
                [
                    requests.iloc[c].reset_index(drop=True),
                    batch.score_requests(analyzer, requests.iloc[c], pilot),
                ],
                axis=1,
            )
            for c in chunks
        ],
        ignore_index=True,
    )
    flagged = scored[scored["flagged"]].sort_values(batch.ORDER)
    first = flagged.index[: analyzer_module.MAX_EXPLAINED]
    scored["explain"] = scored.index.isin(first)
    explain_pilot = batch.pilot_of(scored[scored["explain"]])
    scored["reasons"] = [
        r
        for c in np.array_split(np.arange(len(scored)), partitions)
        for r in batch.explain_batch(analyzer, scored.iloc[c], explain_pilot)
    ]
    clients = []
    owner = pd.util.hash_pandas_object(scored[batch.CLIENT], index=False) % partitions
    for p in range(partitions):
        part = scored[owner.to_numpy() == p].sort_values([*batch.CLIENT, *batch.ORDER])
        pieces = [part.iloc[at : at + batch_rows] for at in range(0, len(part), batch_rows)]
        for frame in batch.whole_clients(pieces):
            scores = frame["score"].to_numpy()
            clients.append(batch.client_verdicts(analyzer, frame[batch.COLUMNS], scores))
    return {
        "requests": scored,
        "clients": pd.concat(clients, ignore_index=True),
        "rejected": pd.concat(rejected)[["file", "text", "reason"]],
    }


@pytest.mark.parametrize("explained", [analyzer_module.MAX_EXPLAINED, 25])
def test_the_spark_jobs_steps_give_the_in_process_tables_bit_for_bit(
    analyzer, files, explained, monkeypatch
) -> None:
    monkeypatch.setattr(analyzer_module, "MAX_EXPLAINED", explained)
    expected = batch.local(files, analyzer, "1")
    got = _spark_like(analyzer, files, block_lines=300, batch_rows=170, partitions=3)
    key = ["file", "line"]
    want = expected["requests"].sort_values(key).reset_index(drop=True)
    have = got["requests"].sort_values(key).reset_index(drop=True)
    columns = [c for c in batch.REQUEST_COLUMNS if c != "model_version"]
    pd.testing.assert_frame_equal(have[columns], want[columns], check_exact=True)
    assert (want["reasons"].map(len) > 0).sum() == min(explained, int(want["flagged"].sum()))
    key = ["client_ip", "user_agent", "start"]
    want = expected["clients"].drop(columns=["model_version"]).sort_values(key)
    have = got["clients"].sort_values(key)
    pd.testing.assert_frame_equal(
        have.reset_index(drop=True), want.reset_index(drop=True), check_exact=True
    )
    assert sorted(got["rejected"]["reason"]) == sorted(expected["rejected"]["reason"])
    assert set(got["rejected"]["file"]) == set(expected["rejected"]["file"])


def test_scores_with_the_inputs_pilot_are_the_whole_inputs_bit_for_bit(analyzer, files) -> None:
    frame, _ = batch.read_requests(files)
    whole = analyzer.request_scores(frame)
    pilot = batch.pilot_of(frame.assign(peak=batch.peaks(analyzer, frame)))
    for rows in np.array_split(np.arange(len(frame)), 7):
        part = batch.score_requests(analyzer, frame.iloc[rows], pilot)
        np.testing.assert_array_equal(part["score"].to_numpy(), whole[rows])


def test_parse_numbers_lines_and_rejects_bad_ones_with_logformats_reason(analyzer) -> None:
    good = (
        '10.0.0.1 - - [11/Mar/2024:01:00:32 +0100] "GET /search?q=x HTTP/1.1" 200 512 "-" '
        '"Mozilla/5.0"'
    )
    texts = [good, "", "x" * 500, good.replace("11/Mar", "31/Feb")]
    frames = batch.parse(
        analyzer, ["a.log"] * 4, np.array([11, 12, 13, 14]), np.zeros(4, np.int32), texts
    )
    requests, bad = frames
    assert list(requests.columns) == [*batch.PARSED, "text", "reason"]
    assert list(requests["line"]) == [11] and requests["reason"].isna().all()
    assert requests["peak"].notna().all()
    assert list(bad["line"]) == [13, 14] and list(bad["file"]) == ["a.log", "a.log"]
    assert bad["reason"].str.startswith(("too few fields", "bad timestamp")).all()
    assert len(bad["text"].iloc[0]) == batch.REJECTED_TEXT
    assert bad["client_ip"].isna().all() and bad["time"].map(lambda v: v is None).all()


@pytest.mark.parametrize(
    ("counts", "offsets"),
    [
        ([("f", 0, 10)], {("f", 0): 0}),
        (
            [("f", 200, 7), ("g", 0, 3), ("f", 0, 10), ("f", 100, 5)],
            {("f", 0): 0, ("f", 100): 10, ("f", 200): 15, ("g", 0): 0},
        ),
    ],
)
def test_block_offsets_count_the_lines_of_earlier_blocks(counts, offsets) -> None:
    assert batch.block_offsets(counts) == offsets


def test_line_numbers_go_on_across_batches_of_a_partition() -> None:
    offsets = {("f", 0): 0, ("f", 100): 10, ("g", 0): 0}
    seen: dict[tuple[str, int], int] = {}
    first = batch.line_numbers([("f", 100), ("f", 100), ("g", 0)], offsets, seen)
    second = batch.line_numbers([("g", 0), ("f", 0)], offsets, seen)
    assert list(first) == [11, 12, 1] and list(second) == [2, 1]


def test_whole_clients_never_cut_a_client() -> None:
    ips = ["a", "a", "b", "b", "b", "c", "d", "d"]
    frame = pd.DataFrame({"client_ip": ips, "user_agent": "x", "line": range(len(ips))})
    for size in (1, 2, 3, 8):
        pieces = [frame.iloc[at : at + size] for at in range(0, len(frame), size)]
        out = list(batch.whole_clients([*pieces, frame.iloc[:0]]))
        assert list(pd.concat(out)["line"]) == list(range(len(ips)))
        owners = [set(o["client_ip"]) for o in out]
        assert all(a.isdisjoint(b) for a, b in itertools.combinations(owners, 2))
    assert list(batch.whole_clients([])) == []


def test_every_column_has_a_spark_type() -> None:
    for columns in (batch.PARSED, batch.SCORED, batch.REQUEST_COLUMNS, batch.CLIENT_COLUMNS):
        assert batch.schema(columns).count("`") == 2 * len(columns)
