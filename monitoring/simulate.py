"""Production traffic for the three services (`make simulate`): held-out data, drifted on demand,
and what production would leave behind: delayed labels and the cluster's own log.

A run is `--windows` windows of `--requests` predictions per project. With `--drift` the drift
strength of window i of W is i/W, so it ramps up over the windows and a single window is fully
drifted:

- spam: a share 0.6 s of the messages come from a new campaign (crypto airdrops, wallets, seed
  phrases: words the SMS collection never uses, and messages several times longer);
- recommend: a share 0.5 s of `/recommend` users are new (cold start), and `/similar_items`
  rises from `SIMILAR_ITEMS_SHARE` by 0.4 s, the extra ones on recent, little-rated movies;
- anomaly: the share of anomalous blocks rises towards 0.3, and a share 0.5 s of the blocks log a
  WARN line of a template the model has never seen.

After each window, the true labels of a random `--label-share` of that window's spam and anomaly
predictions are appended to `<project>/feedback/<UTC date>.jsonl`, and every line sent to the
anomaly service to `anomaly/cluster_logs/<UTC date>.log` (paths from `monitoring.config`). Each
window but the last is then closed by the monitoring job; the last is left for `make monitor`.

The requests of a window are a pure function of the held-out data, the size, the drift strength
and a generator seeded from (seed, window, project), so a run is reproducible and one project's
traffic does not depend on which others are simulated.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import pandas as pd
import typer

from monitoring import config
from projects.anomaly import config as anomaly_config
from projects.anomaly import data as anomaly_data
from projects.anomaly.parsing import LINE, blocks_in, content_of
from projects.core import cli
from projects.core.cli import StageError
from projects.recommend import config as recommend_config
from projects.recommend import data as recommend_data
from projects.recommend.reference import SIMILAR_ITEMS_SHARE, K
from projects.spam import config as spam_config
from projects.spam import data as spam_data

log = logging.getLogger(__name__)
app = cli.app()

# Drift at full strength (s = 1); each scales linearly with s.
CAMPAIGN_SHARE = 0.6
NEW_USER_SHARE = 0.5
EXTRA_SIMILAR_SHARE = 0.4
ANOMALY_SHARE = 0.3
NEW_TEMPLATE_SHARE = 0.5
# New users' ids are drawn from this many ids above the largest known one.
NEW_USER_RANGE = 100_000

SPAM_BATCH = 20
ANOMALY_BATCH = 20
# The services flush their request logs every second; wait a little longer than that.
FLUSH_WAIT = 1.5
TIMEOUT = 30.0

# --- spam: the new campaign ---------------------------------------------------------------------

CAMPAIGN_LENGTH = (250, 600)
CAMPAIGN_BRANDS = ("Zyntrex", "Kryvora", "Moonvexa", "Nexolith", "Quorbit", "Solvanta", "Xandora")
# The words that make the campaign new: none occurs in the SMS Spam Collection (a test checks).
CAMPAIGN_VOCABULARY = (
    "airdrop", "staking", "presale", "whitelist", "snapshot", "metamask", "ledger", "mainnet",
    "apy", "nft", "nfts", "ethereum", "solana", "polygon", "liquidity", "onchain", "validator",
    "web3", "hodlers", "tokens", "allocation", "allocations", "xyz", "lockup", "permissionless",
)  # fmt: skip
CAMPAIGN_SENTENCES = (
    "The {brand} airdrop is live: {amount} ${ticker} tokens are reserved for your address.",
    "Connect your MetaMask or Ledger wallet at {url} before the snapshot closes.",
    "Staking on the {brand} mainnet now pays {apy}% APY with no lockup and zero gas.",
    "Whitelist spots for the {brand} NFT presale are almost gone, mint yours at {url}.",
    "To sync your wallet, enter your 12-word seed phrase at {url} and confirm ownership.",
    "Holders of Ethereum, Solana or Polygon NFTs get a bonus allocation of ${ticker}.",
    "Gas is covered by the {brand} treasury for the first {hours} hours of the airdrop.",
    "Leftover ${ticker} allocations are burned when the liquidity unlocks at {hour}:00 UTC.",
    "Bridge your tokens to {brand} and earn validator yield onchain, fully permissionless.",
    "Web3 moves fast: hodlers who wait for the snapshot miss their ${ticker} allocation.",
)
CAMPAIGN_CLOSING = "Claim your ${ticker} airdrop now: {url}"


def campaign_message(rng: np.random.Generator) -> str:
    """One message of the new spam campaign, 250 to 600 characters long."""
    brand = str(rng.choice(CAMPAIGN_BRANDS))
    slots = {
        "brand": brand,
        "ticker": brand[:4].upper(),
        "url": f"https://claim-{brand.lower()}.xyz/{rng.integers(10_000, 99_999)}",
        "amount": f"{rng.integers(5, 500) * 100:,}",
        "apy": rng.integers(40, 400),
        "hours": rng.integers(12, 72),
        "hour": f"{rng.integers(0, 24):02d}",
    }
    target = rng.integers(CAMPAIGN_LENGTH[0], CAMPAIGN_LENGTH[1] + 1)
    sentences: list[str] = []
    closing = CAMPAIGN_CLOSING.format(**slots)
    for index in rng.permutation(len(CAMPAIGN_SENTENCES)):
        sentences.append(CAMPAIGN_SENTENCES[index].format(**slots))
        if len(" ".join([*sentences, closing])) >= target:
            break
    # past the longest length, the last sentence goes: what is left is still over the shortest,
    # since every sentence is far shorter than the gap between the two
    if len(" ".join([*sentences, closing])) > CAMPAIGN_LENGTH[1]:
        sentences.pop()
    return " ".join([*sentences, closing])


# --- the requests of a window (pure) ------------------------------------------------------------


def sample(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices into `range(size)`: without replacement while possible, then with."""
    if size == 0:
        raise ValueError("nothing to sample from")
    first = rng.permutation(size)[:n]
    return np.concatenate([first, rng.integers(0, size, n - len(first))])


@dataclass(frozen=True)
class SpamWindow:
    """The texts of a window, their true labels, and how many come from the new campaign."""

    texts: list[str]
    labels: list[str]
    campaign: int


def spam_requests(messages: pd.DataFrame, n: int, s: float, rng: np.random.Generator) -> SpamWindow:
    """`n` held-out messages, a share 0.6 s of them replaced by the new campaign's (spam)."""
    chosen = sample(len(messages), n, rng)
    texts = messages["text"].to_numpy()[chosen].tolist()
    labels = messages["label"].to_numpy()[chosen].tolist()
    campaign = round(CAMPAIGN_SHARE * s * n)
    for i in rng.choice(n, campaign, replace=False):
        texts[i], labels[i] = campaign_message(rng), "spam"
    return SpamWindow(texts, labels, campaign)


@dataclass(frozen=True)
class RecommendPool:
    """What recommend's traffic is drawn from.

    Attributes:
        users: the users of the held-out split.
        max_user: the largest user id the data knows; new users are above it.
        items: the item of every held-out rating in the catalogue, so popular items recur.
        recent: recent, little-rated catalogue items, the drifted `/similar_items` traffic.
    """

    users: np.ndarray
    max_user: int
    items: np.ndarray
    recent: np.ndarray


def recommend_pool(test: pd.DataFrame, train: pd.DataFrame, items: pd.DataFrame) -> RecommendPool:
    """The pool of held-out ratings `test`, training ratings `train` and the catalogue `items`.

    Recent items are released in the catalogue's latest year or the one before, with fewer
    training ratings than the catalogue's median item (unrated items count 0).
    """
    catalogue = items["item_id"].to_numpy()
    counts = train["item_id"].value_counts().reindex(catalogue, fill_value=0).to_numpy()
    year = items["year"].astype("Float64")
    latest = year.max()
    is_recent = (year >= latest - 1).fillna(False).to_numpy(dtype=bool)
    return RecommendPool(
        users=np.unique(test["user_id"].to_numpy()),
        max_user=int(max(test["user_id"].max(), train["user_id"].max())),
        items=test["item_id"].to_numpy()[test["item_id"].isin(catalogue).to_numpy()],
        recent=catalogue[is_recent & (counts < np.median(counts))],
    )


@dataclass(frozen=True)
class Call:
    """One request to a route, with its JSON body."""

    route: str
    body: dict[str, int]


def recommend_requests(
    pool: RecommendPool, n: int, s: float, rng: np.random.Generator
) -> list[Call]:
    """`n` calls, `/recommend` for held-out users and `/similar_items` for held-out items in the
    reference's mix; drift adds new users and `/similar_items` on recent items."""
    similar = round(SIMILAR_ITEMS_SHARE * n)
    extra = min(round(EXTRA_SIMILAR_SHARE * s * n), n - similar)
    recommend = n - similar - extra
    new_users = round(NEW_USER_SHARE * s * recommend)
    users = np.concatenate([
        rng.choice(pool.users, recommend - new_users),
        pool.max_user + 1 + rng.integers(0, NEW_USER_RANGE, new_users),
    ])  # fmt: skip
    # without recent items in the catalogue, the extra calls fall back to held-out items
    recent = pool.recent if len(pool.recent) else pool.items
    items = np.concatenate([rng.choice(pool.items, similar), rng.choice(recent, extra)])
    calls = [Call("recommend", {"user_id": int(u), "k": K}) for u in users]
    calls += [Call("similar_items", {"item_id": int(i), "k": K}) for i in items]
    return [calls[i] for i in rng.permutation(len(calls))]


@dataclass(frozen=True)
class Block:
    """A block as sent: a fresh id, the held-out block it replays, its label and its lines."""

    block_id: str
    source: str
    label: str
    lines: tuple[str, ...]
    new_template: bool


# A run of block ids is one field of a line (see `projects.anomaly.parsing.MASKS`); a replayed
# line names only the block it is sent for, so no block outside the request gets scored.
BLOCK_RUN = re.compile(r"blk_-?\d+(?:\s+blk_-?\d+)*")
STAMP = "%y%m%d %H%M%S"
NEW_TEMPLATE = "Slow BlockReceiver write data to disk cost: {ms}ms (threshold=300ms) for {block}"
NEW_TEMPLATE_COMPONENT = "dfs.DataNode$PacketResponder"


def block_lines(lines: Iterable[str], blocks: Collection[str]) -> dict[str, list[str]]:
    """The lines of each of `blocks`, in log order; blocks with no line are left out."""
    wanted, grouped = set(blocks), {}
    for line in lines:
        content = content_of(line)
        for block in blocks_in(content) if content is not None else ():
            if block in wanted:
                grouped.setdefault(block, []).append(line)
    return grouped


def with_new_template(lines: Sequence[str], block_id: str, rng: np.random.Generator) -> list[str]:
    """`lines` with a WARN line of a template the model has never seen, at a random second of the
    block's time range, in log order."""
    stamped = []
    for index, line in enumerate(lines):
        found = LINE.match(line)
        if found:
            stamped.append((index, dt.datetime.strptime(f"{found['date']} {found['time']}", STAMP)))
    if not stamped:
        return list(lines)
    first, last = min(t for _, t in stamped), max(t for _, t in stamped)
    span = int((last - first).total_seconds())
    at = first + dt.timedelta(seconds=int(rng.integers(0, span + 1)))
    content = NEW_TEMPLATE.format(ms=rng.integers(301, 5000), block=block_id)
    new = f"{at:{STAMP}} {rng.integers(100, 30_000)} WARN {NEW_TEMPLATE_COMPONENT}: {content}"
    # right after the last line logged at or before that second, so the log stays in time order
    position = max(index + 1 for index, t in stamped if t <= at)
    return [*lines[:position], new, *lines[position:]]


def fresh_ids(n: int, taken: Collection[str], rng: np.random.Generator) -> list[str]:
    """`n` distinct HDFS block ids (signed 64-bit numbers) that are not in `taken`."""
    info, ids = np.iinfo(np.int64), {}
    while len(ids) < n:
        for number in rng.integers(info.min, info.max, n - len(ids), dtype=np.int64).tolist():
            if f"blk_{number}" not in taken:
                ids[f"blk_{number}"] = None
    return list(ids)[:n]


def anomaly_requests(
    sessions: pd.DataFrame,
    lines: Mapping[str, Sequence[str]],
    n: int,
    s: float,
    rng: np.random.Generator,
    batch: int = ANOMALY_BATCH,
    id_rng: np.random.Generator | None = None,
) -> list[list[Block]]:
    """`n` held-out blocks in requests of up to `batch` blocks.

    Anomalous blocks make up the held-out share, raised a share s of the way to 0.3; a share 0.5 s
    of the blocks log a new WARN line. Each block is sent under a fresh id, its lines rewritten to
    name it, so that a block id is one block in the cluster's log (and never one of the raw
    data's) however often a held-out block is replayed.

    Args:
        id_rng: draws the fresh ids; `rng` when None. The command passes an unseeded one, so that
            two runs with the same seed send the same blocks under different ids.
    """
    sessions = sessions[sessions["BlockId"].isin(lines)]
    if sessions.empty:
        raise ValueError("no held-out block has lines in the log")
    anomalous = sessions["Label"].to_numpy() == "Anomaly"
    base = anomalous.mean()
    n_anomalous = round((base + (ANOMALY_SHARE - base) * s) * n)
    # a split with one label only can give only that label
    if not anomalous.any():
        n_anomalous = 0
    elif anomalous.all():
        n_anomalous = n
    pools = [np.flatnonzero(anomalous), np.flatnonzero(~anomalous)]
    chosen = np.concatenate([
        pool[sample(len(pool), count, rng)] if count else np.empty(0, dtype=int)
        for pool, count in zip(pools, (n_anomalous, n - n_anomalous), strict=True)
    ])[rng.permutation(n)]  # fmt: skip
    new_template = np.zeros(n, dtype=bool)
    new_template[rng.choice(n, round(NEW_TEMPLATE_SHARE * s * n), replace=False)] = True
    blocks = []
    ids = fresh_ids(n, lines, rng if id_rng is None else id_rng)
    for row, block_id, new in zip(chosen.tolist(), ids, new_template.tolist(), strict=True):
        source, label = sessions["BlockId"].iat[row], sessions["Label"].iat[row]
        sent = [BLOCK_RUN.sub(block_id, line) for line in lines[source]]
        if new:
            sent = with_new_template(sent, block_id, rng)
        blocks.append(Block(block_id, source, label, tuple(sent), new))
    return list(batches(blocks, batch))


def batches(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """`items` in consecutive lists of up to `size`."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def feedback_records(
    predictions: Sequence[tuple[str, str]], share: float, rng: np.random.Generator, timestamp: str
) -> list[dict[str, str]]:
    """The delayed labels of a random `share` of `(prediction id, true label)` pairs."""
    chosen = np.sort(rng.choice(len(predictions), round(share * len(predictions)), replace=False))
    return [
        {"prediction_id": predictions[i][0], "label": predictions[i][1], "timestamp": timestamp}
        for i in chosen.tolist()
    ]


# --- held-out data ------------------------------------------------------------------------------


def _require(*paths: Path) -> None:
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise StageError(f"missing {', '.join(missing)}: run `make run` first")


def load_spam() -> pd.DataFrame:
    """Spam's held-out messages."""
    path = spam_config.PREPARED_DIR / "test.csv"
    _require(path)
    messages = spam_data.read_messages(path)
    if messages.empty:
        raise StageError(f"{path} holds no messages: run `make run`")
    return messages


def load_recommend() -> RecommendPool:
    """Recommend's pool, from its held-out and training ratings and the catalogue."""
    folder = recommend_config.PREPARED_DIR
    splits = [folder / name for name in ("test.csv", "fit.csv", "validation.csv")]
    items = recommend_config.RAW_DIR / recommend_data.ITEMS_FILE
    _require(*splits, items)
    test, fit, validation = (recommend_data.read_ratings(path) for path in splits)
    if test.empty:
        raise StageError(f"{splits[0]} holds no ratings: run `make run`")
    return recommend_pool(test, pd.concat([fit, validation]), recommend_data.read_items(items))


@dataclass(frozen=True)
class AnomalyHeldOut:
    """Anomaly's held-out sessions and the raw lines of each of their blocks."""

    sessions: pd.DataFrame
    lines: dict[str, list[str]]


def load_anomaly() -> AnomalyHeldOut:
    """Anomaly's held-out sessions, with their lines from the raw log."""
    sessions_path = anomaly_config.PREPARED_DIR / "test.csv"
    log_path = anomaly_config.RAW_DIR / anomaly_data.LOG_FILE
    _require(sessions_path, log_path)
    sessions = anomaly_data.read_sessions(sessions_path)
    lines = block_lines(anomaly_data.read_lines(log_path), sessions["BlockId"])
    if not lines:
        raise StageError(f"no block of {sessions_path} has lines in {log_path}: run `make run`")
    return AnomalyHeldOut(sessions, lines)


LOADERS = {"spam": load_spam, "recommend": load_recommend, "anomaly": load_anomaly}


# --- sending ------------------------------------------------------------------------------------


@dataclass
class Service:
    """One project's service over HTTP."""

    project: str
    url: str
    client: httpx.Client

    def _not_answering(self) -> StageError:
        return StageError(
            f"the {self.project} service is not answering at {self.url}: "
            "start the services with `make serve`"
        )

    def check(self) -> None:
        """Raise `StageError` unless the service is up and ready."""
        try:
            response = self.client.get("/readyz")
        except httpx.TransportError:
            raise self._not_answering() from None
        if response.status_code != 200:
            raise StageError(
                f"the {self.project} service at {self.url} is not ready "
                f"({response.status_code}): wait for `make serve` to finish starting"
            )

    def post(self, route: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON answer to `POST /<route>`; None for recommend's 404 (an item the model lacks).

        Raises:
            StageError: the service does not answer, or answers with another 4xx or 5xx.
        """
        try:
            response = self.client.post(f"/{route}", json=body)
        except httpx.TransportError:
            raise self._not_answering() from None
        if response.status_code == 404 and self.project == "recommend":
            log.warning("recommend: %s %s: %s", route, body, response.text[:200])
            return None
        if response.status_code >= 400:
            raise StageError(
                f"the {self.project} service answered {response.status_code} to POST /{route}: "
                f"{response.text[:500]}"
            )
        return response.json()


def counts(*names: str) -> Counter[str]:
    """A counter of `names`, each at 0, in that order (the order reports show them in)."""
    return Counter(dict.fromkeys(names, 0))


def send_spam(service: Service, window: SpamWindow) -> tuple[list[tuple[str, str]], Counter[str]]:
    """Classify the window's texts in batches; the (prediction id, true label) of each text."""
    predictions = []
    stats = counts("predictions", "requests", "campaign texts", "predicted spam")
    for texts, labels in zip(
        batches(window.texts, SPAM_BATCH), batches(window.labels, SPAM_BATCH), strict=True
    ):
        answer = service.post("classify", {"texts": texts})
        for result, label in zip(answer["results"], labels, strict=True):
            predictions.append((result["prediction_id"], label))
            stats["predicted spam"] += result["label"] == "spam"
        stats["requests"] += 1
    stats["predictions"], stats["campaign texts"] = len(predictions), window.campaign
    return predictions, stats


def send_recommend(service: Service, calls: Sequence[Call]) -> Counter[str]:
    """Send each call; count the lists served, cold starts and unknown items."""
    stats = counts(
        "predictions", "recommend", "cold start", "similar_items", "unknown items skipped"
    )
    for call in calls:
        answer = service.post(call.route, call.body)
        if answer is None:
            stats["unknown items skipped"] += 1
            continue
        stats["predictions"] += 1
        stats[call.route] += 1
        stats["cold start"] += bool(answer.get("cold_start"))
    return stats


def send_anomaly(
    service: Service, requests: Sequence[Sequence[Block]], cluster_log: Path
) -> tuple[list[tuple[str, str]], Counter[str]]:
    """Score each request's lines, and append them to the cluster's log once scored; the
    (prediction id, true label) of each block."""
    predictions = []
    stats = counts(
        "predictions", "requests", "lines", "anomalous blocks", "new-template blocks",
        "unknown events", "predicted anomalies",
    )  # fmt: skip
    cluster_log.parent.mkdir(parents=True, exist_ok=True)
    with cluster_log.open("a", encoding="utf-8") as shipped:
        for blocks in requests:
            lines = [line for block in blocks for line in block.lines]
            answer = service.post("score_lines", {"lines": lines})
            shipped.write("".join(f"{line}\n" for line in lines))
            labels = {block.block_id: block.label for block in blocks}
            for verdict in answer["sessions"]:
                if verdict["block_id"] in labels:
                    predictions.append((verdict["prediction_id"], labels[verdict["block_id"]]))
                    stats["predicted anomalies"] += verdict["is_anomaly"]
                    stats["unknown events"] += verdict["unknown_events"]
            stats["requests"] += 1
            stats["lines"] += len(lines)
            stats["anomalous blocks"] += sum(block.label == "Anomaly" for block in blocks)
            stats["new-template blocks"] += sum(block.new_template for block in blocks)
    stats["predictions"] = len(predictions)
    return predictions, stats


def utc_now() -> dt.datetime:
    """Now, in UTC: the files are named by the UTC date, as the services' request logs are."""
    return dt.datetime.now(dt.UTC)


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records to a JSON-lines file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(record, separators=(",", ":")) + "\n" for record in records)


def write_feedback(
    project: str, predictions: Sequence[tuple[str, str]], share: float, rng: np.random.Generator
) -> int:
    """Append the delayed labels of a random `share` of predictions; how many were written."""
    now = utc_now()
    records = feedback_records(predictions, share, rng, now.isoformat(timespec="milliseconds"))
    append_jsonl(config.feedback_dir(project) / f"{now:%Y-%m-%d}.jsonl", records)
    return len(records)


# --- windows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """What one project's window needs besides its held-out data and service."""

    n: int
    s: float
    rng: np.random.Generator
    feedback_rng: np.random.Generator
    label_share: float
    # block ids must differ between runs, like the ids the services give predictions
    id_rng: np.random.Generator = field(default_factory=np.random.default_rng)


def spam_window(messages: pd.DataFrame, service: Service, window: Window) -> Counter[str]:
    """Send one window of spam traffic and write its delayed labels."""
    requests = spam_requests(messages, window.n, window.s, window.rng)
    predictions, stats = send_spam(service, requests)
    stats["labels written"] = write_feedback(
        "spam", predictions, window.label_share, window.feedback_rng
    )
    return stats


def recommend_window(pool: RecommendPool, service: Service, window: Window) -> Counter[str]:
    """Send one window of recommend traffic (it has no labels to deliver)."""
    return send_recommend(service, recommend_requests(pool, window.n, window.s, window.rng))


def anomaly_window(held_out: AnomalyHeldOut, service: Service, window: Window) -> Counter[str]:
    """Send one window of log lines, ship them to the cluster log, and write delayed labels."""
    requests = anomaly_requests(
        held_out.sessions, held_out.lines, window.n, window.s, window.rng, id_rng=window.id_rng
    )
    cluster_log = config.cluster_log_dir() / f"{utc_now():%Y-%m-%d}.log"
    predictions, stats = send_anomaly(service, requests, cluster_log)
    stats["labels written"] = write_feedback(
        "anomaly", predictions, window.label_share, window.feedback_rng
    )
    return stats


WINDOWS = {"spam": spam_window, "recommend": recommend_window, "anomaly": anomaly_window}


def describe(stats: Counter[str]) -> str:
    """Counts as `3 predictions, 1 requests`, in the order they were first counted."""
    return ", ".join(f"{count} {name}" for name, count in stats.items())


def run_monitoring(projects: Sequence[str]) -> None:
    """Close the window with the monitoring job, as a scheduler would."""
    from monitoring.monitor import run_job  # Evidently loads slowly: only when a window closes

    run_job(list(projects))


def simulate(
    held_out: Mapping[str, Any],
    services: Mapping[str, Service],
    requests: int,
    windows: int,
    drift: bool,
    seed: int,
    label_share: float,
) -> dict[str, Counter[str]]:
    """Send every window to every project in `held_out`; the totals of each project."""
    totals = {project: Counter() for project in held_out}
    for number in range(1, windows + 1):
        s = number / windows if drift else 0.0
        for project, data in held_out.items():
            started = time.perf_counter()
            # one stream per (seed, window, project): a project's traffic is the same whichever
            # other projects run
            key = [seed, number, config.PROJECTS.index(project)]
            window = Window(
                requests,
                s,
                np.random.default_rng([*key, 0]),
                np.random.default_rng([*key, 1]),
                label_share,
            )
            stats = WINDOWS[project](data, services[project], window)
            log.info(
                "window %d/%d, %s, drift %.2f: %s (%.1f s)",
                number, windows, project, s, describe(stats), time.perf_counter() - started,
            )  # fmt: skip
            totals[project].update(stats)
        time.sleep(FLUSH_WAIT)  # so the services' request logs hold the whole window
        if number < windows:
            run_monitoring(list(held_out))
    return totals


def chosen_projects(projects: Sequence[str] | None) -> list[str]:
    """The projects asked for, in order and once each; all of them by default."""
    if not projects:
        return list(config.PROJECTS)
    unknown = sorted(set(projects) - set(config.PROJECTS))
    if unknown:
        raise typer.BadParameter(
            f"unknown project(s) {', '.join(unknown)}; choose from {', '.join(config.PROJECTS)}",
            param_hint="--projects",
        )
    return list(dict.fromkeys(projects))


@app.command()
def main(
    requests: Annotated[
        int, typer.Option(min=1, help="Predictions per project per window.")
    ] = 1000,
    windows: Annotated[
        int, typer.Option(min=1, help="Windows to send; each but the last is then monitored.")
    ] = 1,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift/--no-drift",
            help="Drift the traffic, at strength i/W in window i of W (full in a single one).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the traffic and the labels.")] = 0,
    host: Annotated[str, typer.Option(help="Host the services listen on.")] = "127.0.0.1",
    spam_port: Annotated[int, typer.Option(help="Port of the spam service.")] = 3001,
    recommend_port: Annotated[int, typer.Option(help="Port of the recommend service.")] = 3002,
    anomaly_port: Annotated[int, typer.Option(help="Port of the anomaly service.")] = 3003,
    projects: Annotated[
        list[str] | None,
        typer.Option(
            "--projects",
            metavar="PROJECT",
            help=f"One of {', '.join(config.PROJECTS)}; repeat for several (default: all).",
        ),
    ] = None,
    label_share: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Share of spam and anomaly predictions whose true label arrives."
        ),
    ] = 0.5,
) -> None:
    """Send held-out (optionally drifted) traffic to the running services, then write the
    delayed labels and the cluster log that production would produce."""
    chosen = chosen_projects(projects)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    ports = {"spam": spam_port, "recommend": recommend_port, "anomaly": anomaly_port}
    held_out = {project: LOADERS[project]() for project in chosen}
    clients = {project: httpx.Client(base_url=f"http://{host}:{ports[project]}", timeout=TIMEOUT)
               for project in chosen}  # fmt: skip
    try:
        services = {p: Service(p, str(c.base_url).rstrip("/"), c) for p, c in clients.items()}
        for service in services.values():
            service.check()
        totals = simulate(held_out, services, requests, windows, drift, seed, label_share)
    finally:
        for client in clients.values():
            client.close()
    for project, stats in totals.items():
        typer.echo(f"{project}: {describe(stats)} in {windows} window(s)")


if __name__ == "__main__":
    cli.run(app)
