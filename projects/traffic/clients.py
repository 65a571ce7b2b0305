"""Client-level models: sessions of (address, user agent), their features, and abuse scores.

A client is `(client_ip, user_agent)`; its requests split into sessions after `IDLE` seconds
without a request. Each session becomes one row of behavioural features (rates, status mix,
distinct paths, sequential ids, timing regularity, how likely its endpoint transitions are under
normal navigation, login behaviour, its requests' anomaly scores, ...), computed with vectorised
NumPy over the whole frame at once.

The default model, `ClientModel`, is unsupervised and fitted on normal sessions only. Features
are standardised robustly (median, and the spread between the 10 % and 90 % quantiles of normal
sessions), clipped on each feature's harmless side, and every normal session is kept as a
reference: normal traffic is many populations (people, single-page apps, dashboards, crawlers,
the platform's own callers), so a session is compared with its nearest normal session, not with
the population as a whole. The distance counts only the features on which the session is more
suspicious than that reference ("dominance"), so a rare but normal kind of client is as normal
as its most similar normal example. The threshold flags at most `fpr` of normal sessions, each
scored with its own client left out. Verdicts on a session's first k requests compare it with
the beginnings of normal sessions, with a threshold of their own. A flag's reasons are the
features that make up most of the distance. The endpoint-transition likelihood comes from a
first-order Markov model (`Transitions`) learned on the same normal sessions.

`SupervisedClientModel` is a logistic regression over the same features, for comparison.
`first_flagged` and `how_early` measure how many requests a session needs before it is flagged.
All state is saved as plain arrays (npz) and JSON; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from projects.traffic.logformat import endpoint, params
from projects.traffic.requests_model import threshold_at

IDLE = 1800.0
"""Seconds without a request after which a client's next request starts a new session."""

# Shares of events that are rare in normal traffic are shrunk toward 0 by this many pseudo
# requests, so that one 404 in a session of two requests does not look like a scanner.
PSEUDO = 3.0
BURST_WINDOW = 10.0
"""Seconds of the sliding window whose largest request count is a session's burst."""

ASSET_EXTENSIONS = frozenset(
    ("css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp",
     "woff", "woff2", "ttf", "otf", "eot")
)  # fmt: skip
_ASSET = re.compile(r"\.(?:" + "|".join(sorted(ASSET_EXTENSIONS)) + r")$", re.IGNORECASE)
_ROBOTS = re.compile(r"^/robots\.txt$", re.IGNORECASE)
# a user agent that names a bot and a page about it, as polite crawlers do ("Googlebot/2.1;
# +http://www.google.com/bot.html"); browsers never read robots.txt, and scripts rarely say
# what they are
_DECLARED_BOT = re.compile(
    r"(?:bot|crawler|spider).*https?://|https?://.*(?:bot|crawler|spider)", re.IGNORECASE
)
_LOGIN = re.compile(r"(?:^|/)(?:log-?in|sign-?in|log-?on|auth(?:enticate)?|sessions?)(?:/|$|\.)")
_USER_KEYS = frozenset(
    ("username", "user", "user_name", "login", "email", "mail", "uname", "account", "userid")
)
# a numeric id in the path (the first one), or a paging parameter in the query string
_PATH_ID = re.compile(r"/(\d{1,15})(?=/|$)")
_PAGE = re.compile(r"(?:^|&)(?:page|p|pg|page_number|pagenumber)=(\d{1,15})(?=&|$)")

ID_COLUMNS = ["session", "client_ip", "user_agent", "start", "end"]


@dataclass(frozen=True, slots=True)
class Feature:
    """A session feature: its name, which side of normal is suspicious, and the least spread
    that its standardisation assumes (the unit below which differences are noise)."""

    name: str
    direction: str  # "high", "low", "both" or "none" (described, not scored)
    floor: float
    description: str


FEATURES: tuple[Feature, ...] = (
    Feature("requests", "none", 0.5, "log(1 + requests in the session)"),
    Feature("duration", "none", 0.5, "log(1 + seconds from first to last request)"),
    # rates within a factor of about two of a normal client's are noise: few dashboards are
    # seen in training, and one that polls four panels where they polled two is still one
    Feature("rate", "high", 0.6, "log of requests per second, over duration + 60 s"),
    Feature("burst", "high", 0.6, f"log(1 + most requests in any {BURST_WINDOW:g} s)"),
    Feature("timing_cv", "low", 0.1, "coefficient of variation of inter-arrival times"),
    Feature("status_2xx", "low", 0.05, "share of 2xx answers"),
    Feature("status_3xx", "high", 0.05, "share of 3xx answers (shrunk)"),
    Feature("status_401", "high", 0.05, "share of 401 answers (shrunk)"),
    Feature("status_403", "high", 0.05, "share of 403 answers (shrunk)"),
    Feature("status_404", "high", 0.05, "share of 404 answers (shrunk)"),
    Feature("status_4xx", "high", 0.05, "share of other 4xx answers (shrunk)"),
    Feature("status_5xx", "high", 0.05, "share of 5xx answers (shrunk)"),
    Feature("distinct_paths", "high", 0.05, "distinct paths / requests (shrunk)"),
    Feature("paths_per_endpoint", "high", 0.3, "log of distinct paths per distinct endpoint"),
    Feature("static_share", "low", 0.05, "share of static assets (styles, scripts, images)"),
    Feature("robots", "both", 0.25, "1 if it read /robots.txt (bots that do are the polite ones)"),
    # a scraper that reads robots.txt first is still not a crawler that names itself
    Feature("declared_bot", "both", 0.25, "1 if its user agent names a bot and a page about it"),
    Feature("sequential_ids", "high", 0.05, "share of id/page steps of +1 on one endpoint"),
    Feature(
        "transition_nll",
        "high",
        1.0,
        "-log P(endpoint | previous) under normal, each distinct step once, per request",
    ),
    Feature("unknown_endpoints", "high", 0.05, "share of failed requests to unseen endpoints"),
    Feature("login_attempts", "high", 0.5, "log(1 + POSTs to a login route)"),
    Feature("login_users", "high", 0.5, "log(1 + distinct user names tried on login)"),
    Feature("login_failures", "high", 0.05, "share of login attempts answered 401/403 (shrunk)"),
    Feature("login_last_failed", "high", 0.5, "1 if its last login attempt failed"),
    Feature("score_max", "high", 0.1, "log(1 + largest request anomaly score)"),
    Feature("score_mean", "high", 0.1, "log(1 + mean request score over distinct requests)"),
    Feature("score_over", "high", 0.05, "share of distinct requests over the threshold (shrunk)"),
    Feature("bytes", "both", 0.3, "mean log(1 + response bytes)"),
    Feature("method_post", "high", 0.05, "share of POST requests"),
    Feature("method_other", "high", 0.05, "share of methods other than GET and POST (shrunk)"),
    Feature("no_referrer", "high", 0.05, "share of requests without a referrer"),
)
FEATURE_NAMES = [f.name for f in FEATURES]


# ---------------------------------------------------------------------------------------------
# Sessions


def _client_codes(frame: pd.DataFrame) -> np.ndarray:
    """One integer per (client_ip, user_agent), numbered in order of first appearance."""
    grouped = frame.groupby(["client_ip", "user_agent"], sort=False, dropna=False)
    return grouped.ngroup().to_numpy(np.int64)


def _session_order(frame: pd.DataFrame, idle: float) -> tuple[np.ndarray, np.ndarray]:
    """Row positions sorted by client then time, and the session id of each sorted row."""
    n = len(frame)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    client = _client_codes(frame)
    time = frame["time"].to_numpy(np.float64)
    order = np.lexsort((time, client))  # stable: equal times keep the log's order
    c, t = client[order], time[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (np.diff(t) > idle)
    return order, np.cumsum(new) - 1


def sessions(frame: pd.DataFrame, idle: float = IDLE) -> np.ndarray:
    """Each request's session id (0, 1, ...), aligned with the frame's rows.

    A client is `(client_ip, user_agent)`; a gap of more than `idle` seconds between two of its
    requests starts a new session. Ids are numbered by client (in order of first appearance),
    then by time.
    """
    order, sorted_ids = _session_order(frame, idle)
    ids = np.empty(len(frame), np.int64)
    ids[order] = sorted_ids
    return ids


def first_requests(frame: pd.DataFrame, n: int, idle: float = IDLE) -> np.ndarray:
    """A boolean mask of the rows that are among the first `n` requests of their session."""
    order, sorted_ids = _session_order(frame, idle)
    keep = np.zeros(len(frame), dtype=bool)
    keep[order[_rank(sorted_ids) < n]] = True
    return keep


def _rank(sorted_ids: np.ndarray) -> np.ndarray:
    """Position of each row within its session (rows sorted by session)."""
    if len(sorted_ids) == 0:
        return sorted_ids
    starts = _starts(sorted_ids)
    lengths = np.diff(np.r_[starts, len(sorted_ids)])
    return np.arange(len(sorted_ids)) - np.repeat(starts, lengths)


def _starts(sorted_ids: np.ndarray) -> np.ndarray:
    if len(sorted_ids) == 0:
        return np.zeros(0, np.int64)
    return np.r_[0, np.flatnonzero(np.diff(sorted_ids)) + 1]


# ---------------------------------------------------------------------------------------------
# Per-request attributes, computed once per distinct value


def _codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the values, and the distinct values (as `pd.factorize`)."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _endpoints(
    method: np.ndarray, path_codes: np.ndarray, paths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's endpoint template, and whether it is a login attempt (a POST to a login route).

    `logformat.endpoint` runs once per distinct (method, path), not once per row.
    """
    method_codes, methods = _codes(method)
    width = max(len(paths), 1)
    codes, pairs = pd.factorize(method_codes * width + path_codes)
    templates, login = [], []
    for pair in pairs:
        m, p = methods[pair // width], paths[pair % width]
        templates.append(endpoint(m, p))
        login.append(m == "POST" and _LOGIN.search(p.lower()) is not None)
    return np.asarray(templates, dtype=object)[codes], np.asarray(login, dtype=bool)[codes]


def _number(uniques: np.ndarray, pattern: re.Pattern[str]) -> np.ndarray:
    """The first group of `pattern` in each distinct value as a float (NaN when absent)."""
    found = pd.Series(uniques, dtype=object).str.extract(pattern, expand=False)
    return pd.to_numeric(found, errors="coerce").to_numpy(np.float64)


def _matches(uniques: np.ndarray, pattern: re.Pattern[str]) -> np.ndarray:
    """Whether each distinct value matches `pattern`."""
    hits = pd.Series(uniques, dtype=object).str.contains(pattern, regex=True, na=False)
    return hits.to_numpy(bool)


def _user_name(method: str, path: str, query: str, body: str, user: str) -> str:
    """The user name a login attempt tried: a user-like parameter, else the `%u` field."""
    for key, value in params(method, path, query, body):
        if key.rsplit(".", 1)[-1].lower() in _USER_KEYS and value:
            return value
    return "" if user == "-" else user


# ---------------------------------------------------------------------------------------------
# The endpoint-transition model


class Transitions:
    """A first-order Markov model of endpoint -> next endpoint, learned on normal sessions.

    States are a session's start, the endpoints seen in training and one state for any unseen
    endpoint. P(next | previous) interpolates the observed transition share with how common
    `next` is at all (Jelinek-Mercer): `weight * c(prev, next) / c(prev) + (1 - weight) *
    P(next)`, where P(next) = (c(next) + alpha) / (N + alpha * (endpoints + 1)). So a known
    endpoint reached by an unusual path costs a little, an endpoint normal clients never used
    costs a lot (it gets only the smoothing mass), and a previous state never seen falls back
    to P(next). Endpoints used in fewer than `min_sessions` sessions count as unseen, so that
    the unseen state's probability is learned from them (as Good-Turing estimates it), and one
    request's surprisal is capped at `max_surprisal` nats: a client that keeps calling one route
    nobody else uses (a new monitoring job) is unusual, not infinitely so. Pair counts are kept
    sparse, so many endpoints cost no dense matrix.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        weight: float = 0.5,
        min_sessions: int = 2,
        max_surprisal: float = 6.0,
    ) -> None:
        self.alpha = alpha
        self.weight = weight
        self.min_sessions = min_sessions
        self.max_surprisal = max_surprisal

    def codes(self, endpoints: np.ndarray) -> np.ndarray:
        """State codes: 1..V for known endpoints, V + 1 for unseen ones (0 is the start)."""
        index = pd.Index(self.vocabulary_).get_indexer(endpoints)
        return np.where(index < 0, len(self.vocabulary_) + 1, index + 1).astype(np.int64)

    def _pairs(self, codes: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        previous = np.empty_like(codes)
        previous[1:] = codes[:-1]
        previous[starts] = 0
        return previous, previous * (len(self.vocabulary_) + 2) + codes

    def fit(self, endpoints: np.ndarray, starts: np.ndarray) -> Transitions:
        """Learn from endpoints in session order; `starts` are the first position of each
        session.

        Endpoints used in fewer than `min_sessions` sessions are not learned one by one: they
        become the unseen state, so that its probability (how often normal clients use a route
        almost nobody uses) is estimated from them, as Good-Turing estimates the unseen.
        """
        session = np.cumsum(np.isin(np.arange(len(endpoints)), starts)) - 1
        codes, uniques = pd.factorize(pd.Series(endpoints, dtype=object))
        pairs = np.unique(session * max(len(uniques), 1) + codes)
        used = np.bincount(pairs % max(len(uniques), 1), minlength=len(uniques))
        self.vocabulary_ = np.asarray(sorted(uniques[used >= self.min_sessions]), dtype=str)
        codes = self.codes(endpoints)
        previous, keys = self._pairs(codes, starts)
        self.keys_, counts = np.unique(keys, return_counts=True)
        self.counts_ = counts.astype(np.float64)
        self.totals_ = np.bincount(previous, minlength=len(self.vocabulary_) + 2).astype(float)
        self.unigram_ = np.bincount(codes, minlength=len(self.vocabulary_) + 2).astype(float)
        return self

    def nll(self, endpoints: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """-log P(endpoint | previous endpoint) of each request (session order)."""
        codes = self.codes(endpoints)
        previous, keys = self._pairs(codes, starts)
        count = np.zeros(len(keys))
        if len(self.keys_):
            at = np.minimum(np.searchsorted(self.keys_, keys), len(self.keys_) - 1)
            count = np.where(self.keys_[at] == keys, self.counts_[at], 0.0)
        states = len(self.vocabulary_) + 1
        common = (self.unigram_[codes] + self.alpha) / (self.unigram_.sum() + self.alpha * states)
        total = self.totals_[previous]
        seen = count / np.maximum(total, 1.0)
        p = np.where(total > 0, self.weight * seen + (1 - self.weight) * common, common)
        return np.minimum(-np.log(p), self.max_surprisal)

    def state(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays."""
        return {
            "transitions_vocabulary": self.vocabulary_,
            "transitions_keys": self.keys_,
            "transitions_counts": self.counts_,
            "transitions_totals": self.totals_,
            "transitions_unigram": self.unigram_,
            "transitions_settings": np.array(
                [self.alpha, self.weight, self.min_sessions, self.max_surprisal]
            ),
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> Transitions:
        """The model `state()` describes."""
        alpha, weight, min_sessions, cap = (float(v) for v in arrays["transitions_settings"])
        model = cls(alpha, weight, int(min_sessions), cap)
        model.vocabulary_ = np.asarray(arrays["transitions_vocabulary"], dtype=str)
        model.keys_ = np.asarray(arrays["transitions_keys"], dtype=np.int64)
        model.counts_ = np.asarray(arrays["transitions_counts"], dtype=np.float64)
        model.totals_ = np.asarray(arrays["transitions_totals"], dtype=np.float64)
        model.unigram_ = np.asarray(arrays["transitions_unigram"], dtype=np.float64)
        return model


# ---------------------------------------------------------------------------------------------
# Session features


@dataclass
class _Sorted:
    """Requests sorted by session then time, with what the features need."""

    order: np.ndarray  # frame row position of each sorted request
    session: np.ndarray  # session of each sorted request, numbered 0, 1, ... here
    starts: np.ndarray  # position of each session's first request
    endpoint: np.ndarray  # endpoint template of each sorted request
    login: np.ndarray  # whether each sorted request is a login attempt
    ids: np.ndarray  # each session's id in the whole frame (`sessions`)
    path: np.ndarray  # code of each sorted request's path in `paths`
    paths: np.ndarray  # the distinct paths


def _sorted_requests(frame: pd.DataFrame, idle: float, first: int | None) -> _Sorted:
    order, session = _session_order(frame, idle)
    if first is not None:
        keep = _rank(session) < first
        order, session = order[keep], session[keep]
    path, paths = _codes(frame["path"].to_numpy()[order])
    templates, login = _endpoints(frame["method"].to_numpy()[order], path, paths)
    starts = _starts(session)
    return _Sorted(order, session, starts, templates, login, np.arange(len(starts)), path, paths)


def _shrunk(count: np.ndarray, n: np.ndarray) -> np.ndarray:
    return count / (n + PSEUDO)


def _distinct_per_session(session: np.ndarray, values: np.ndarray, sessions: int) -> np.ndarray:
    """How many distinct `values` (integer codes) each session has."""
    if len(values) == 0:
        return np.zeros(sessions)
    pairs = np.unique(session * (int(values.max()) + 1) + values)
    return np.bincount(pairs // (int(values.max()) + 1), minlength=sessions).astype(float)


def _timing(t: np.ndarray, s: _Sorted, n: np.ndarray) -> dict[str, np.ndarray]:
    """Duration, rate, burst and the coefficient of variation of inter-arrival times."""
    sessions = len(s.starts)
    gap = np.diff(t, prepend=t[:1])
    gap[s.starts] = 0.0
    duration = np.add.reduceat(gap, s.starts)
    gaps = n - 1
    mean = duration / np.maximum(gaps, 1)
    variance = np.add.reduceat(gap**2, s.starts) / np.maximum(gaps, 1) - mean**2
    cv = np.sqrt(np.maximum(variance, 0.0)) / np.where(mean > 0, mean, np.nan)
    cv = np.where(gaps >= 2, cv, np.nan)  # undefined on fewer than two gaps
    # requests in the window (t - BURST_WINDOW, t], counted within the session
    relative = t - np.repeat(t[s.starts], n.astype(np.int64))
    span = float(relative.max()) + 2 * BURST_WINDOW + 1 if len(t) else 1.0
    key = s.session * span + relative
    inside = np.arange(len(t)) - np.searchsorted(key, key - BURST_WINDOW, side="right") + 1
    burst = np.maximum.reduceat(inside, s.starts) if sessions else np.zeros(0)
    return {
        "duration": np.log1p(duration),
        "rate": np.log(n / (duration + 60.0)),
        "burst": np.log1p(burst),
        "timing_cv": cv,
    }


def _status_mix(status: np.ndarray, s: _Sorted, n: np.ndarray) -> dict[str, np.ndarray]:
    counts = {
        "status_2xx": (status >= 200) & (status < 300),
        "status_3xx": (status >= 300) & (status < 400),
        "status_401": status == 401,
        "status_403": status == 403,
        "status_404": status == 404,
        "status_4xx": (status >= 400) & (status < 500) & ~np.isin(status, (401, 403, 404)),
        "status_5xx": status >= 500,
    }
    out = {k: np.add.reduceat(v.astype(float), s.starts) for k, v in counts.items()}
    return {k: v / n if k == "status_2xx" else _shrunk(v, n) for k, v in out.items()}


def _sequential(s: _Sorted, ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per session: the largest share, over its sequence keys (an endpoint's id, or its paging),
    of steps of +1 between consecutive values, shrunk by `PSEUDO` steps.

    Taking the largest share keeps a walk visible when other requests dilute it: a scraper
    that pages through a listing and fetches random products in between.
    """
    sessions = len(s.starts)
    out = np.zeros(sessions)
    has = np.flatnonzero(~np.isnan(ids))
    if len(has) < 2:
        return out
    order = has[np.lexsort((has, keys[has], s.session[has]))]
    owner, key = s.session[order], keys[order]
    same = (owner[1:] == owner[:-1]) & (key[1:] == key[:-1])
    plus_one = same & (np.diff(ids[order]) == 1)
    pair = owner[1:] * (int(keys.max()) + 1) + key[1:]
    codes, unique = pd.factorize(pair[same])
    steps = np.bincount(codes, minlength=len(unique)).astype(float)
    hits = np.bincount(codes, weights=plus_one[same], minlength=len(unique))
    np.maximum.at(out, unique // (int(keys.max()) + 1), hits / (steps + PSEUDO))
    return out


def _distinct_transitions_nll(transitions: Transitions, s: _Sorted, n: np.ndarray) -> np.ndarray:
    """Per session: the surprisal of its endpoint transitions, each distinct transition counted
    once, per request.

    A poller that cycles through panels no normal client polled in that order makes the same few
    unseen transitions hundreds of times: one odd habit, not hundreds of odd steps (as a
    repeated request counts once in the score features). A person's walk, whose steps are
    mostly distinct, costs what it did.
    """
    nll = transitions.nll(s.endpoint, s.starts)
    # the endpoints themselves, not the model's states: every unseen endpoint is one state, and
    # a scanner walking many of them takes many distinct steps
    codes, uniques = _codes(s.endpoint)
    width = len(uniques) + 1
    previous = np.r_[-1, codes[:-1]] + 1
    previous[s.starts] = 0
    key = (s.session * width + previous) * width + codes
    first = np.zeros(len(key), dtype=bool)
    first[np.unique(key, return_index=True)[1]] = True
    return np.add.reduceat(np.where(first, nll, 0.0), s.starts) / n


def _login(frame: pd.DataFrame, s: _Sorted) -> dict[str, np.ndarray]:
    """Login attempts, distinct user names tried and the share that failed, per session."""
    sessions = len(s.starts)
    rows = np.flatnonzero(s.login)
    attempts = np.bincount(s.session[rows], minlength=sessions).astype(float)
    picked = frame.iloc[s.order[rows]]
    names = [
        _user_name(m, p, q, b, u)
        for m, p, q, b, u in zip(
            picked["method"], picked["path"], picked["query"], picked["body"], picked["user"],
            strict=True,
        )
    ]  # fmt: skip
    codes, _ = pd.factorize(pd.Series(names, dtype=object))
    named = np.asarray([bool(name) for name in names], dtype=bool)
    users = _distinct_per_session(s.session[rows][named], codes[named], sessions)
    status = frame["status"].to_numpy()[s.order[rows]]
    failed = np.bincount(
        s.session[rows][(status == 401) | (status == 403)], minlength=sessions
    ).astype(float)
    # rows are in session then time order: the last login row of a session is its last attempt
    last = np.zeros(sessions)
    if len(rows):
        ends = np.r_[np.flatnonzero(np.diff(s.session[rows])), len(rows) - 1]
        last[s.session[rows][ends]] = ((status[ends] == 401) | (status[ends] == 403)).astype(float)
    return {
        "login_attempts": np.log1p(attempts),
        "login_users": np.log1p(users),
        "login_failures": _shrunk(failed, attempts),
        "login_last_failed": last,
    }


def _request_scores(
    rows: pd.DataFrame, s: _Sorted, scores: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """The session's request scores, each distinct request (method, path, query, body) counted
    once: a poller that repeats one odd request is one odd request, not hundreds."""
    # a 64-bit hash of the request's text: factorizing the long strings themselves is slow
    text = rows[["method", "path", "query", "body"]]
    codes, _ = pd.factorize(pd.util.hash_pandas_object(text, index=False).to_numpy())
    pair = s.session * (int(codes.max(initial=0)) + 1) + codes
    _, first = np.unique(pair, return_index=True)  # sorted by session: stays grouped
    first = np.sort(first)
    owner, distinct = s.session[first], scores[first]
    sessions = len(s.starts)
    count = np.bincount(owner, minlength=sessions).astype(float)
    over = np.bincount(owner, weights=distinct > threshold, minlength=sessions)
    # logs: the request model's scale is its own; a session is judged by orders of magnitude
    mean = np.bincount(owner, weights=np.maximum(distinct, 0.0), minlength=sessions) / count
    return {
        "score_max": np.log1p(np.maximum(np.maximum.reduceat(scores, s.starts), 0.0)),
        "score_mean": np.log1p(mean),
        "score_over": _shrunk(over, count),
    }


def client_features(
    frame: pd.DataFrame,
    request_scores: np.ndarray,
    request_threshold: float = math.inf,
    transitions: Transitions | None = None,
    idle: float = IDLE,
    first: int | None = None,
) -> pd.DataFrame:
    """One row of features per client session (see `FEATURES`), plus `ID_COLUMNS`.

    Args:
        frame: parsed requests (the `logformat` frame columns).
        request_scores: the request model's score of each row (higher is more anomalous).
        request_threshold: the request model's threshold (for `score_over`).
        transitions: the normal-navigation model; without one, `transition_nll` is NaN and
            every endpoint counts as known.
        idle: seconds of inactivity that end a session.
        first: only each session's first `first` requests (how early a verdict is possible).

    Returns:
        Sessions in id order; the `session` column matches `sessions(frame, idle)`.
    """
    scores = np.asarray(request_scores, dtype=np.float64)
    if len(scores) != len(frame):
        raise ValueError(f"{len(scores)} request scores for {len(frame)} requests")
    if len(frame) == 0:
        return pd.DataFrame(columns=[*ID_COLUMNS, *FEATURE_NAMES])
    s = _sorted_requests(frame, idle, first)
    return _features(frame, scores[s.order], request_threshold, transitions, s)


def _features(
    frame: pd.DataFrame,
    scores: np.ndarray,
    request_threshold: float,
    transitions: Transitions | None,
    s: _Sorted,
) -> pd.DataFrame:
    at = s.starts
    n = np.diff(np.r_[at, len(s.order)]).astype(float)
    rows = frame.iloc[s.order]
    t = rows["time"].to_numpy(np.float64)
    method = rows["method"].to_numpy()
    endpoint_codes, _ = _codes(s.endpoint)
    query_codes, queries = _codes(rows["query"].to_numpy())
    ids = _number(s.paths, _PATH_ID)[s.path]
    pages = _number(queries, _PAGE)[query_codes]
    paged = np.isnan(ids) & ~np.isnan(pages)
    # a paging walk is a sequence of its own, apart from the endpoint's id path
    sequence_keys = np.where(paged, endpoint_codes + endpoint_codes.max() + 1, endpoint_codes)
    distinct = _distinct_per_session(s.session, s.path, len(at))
    endpoints = _distinct_per_session(s.session, endpoint_codes, len(at))

    def total(mask: np.ndarray) -> np.ndarray:
        return np.add.reduceat(mask.astype(float), at)

    out: dict[str, np.ndarray] = {
        "session": s.ids,
        "client_ip": rows["client_ip"].to_numpy()[at],
        "user_agent": rows["user_agent"].to_numpy()[at],
        "start": t[at],
        "end": np.maximum.reduceat(t, at),
        "requests": np.log1p(n),
    }
    out |= _timing(t, s, n)
    status = rows["status"].to_numpy()
    out |= _status_mix(status, s, n)
    out["distinct_paths"] = _shrunk(distinct, n)
    out["paths_per_endpoint"] = np.log(distinct / np.maximum(endpoints, 1))
    out["static_share"] = total(_matches(s.paths, _ASSET)[s.path]) / n
    out["robots"] = (total(_matches(s.paths, _ROBOTS)[s.path]) > 0).astype(float)
    agent_codes, agents = _codes(out["user_agent"])
    out["declared_bot"] = _matches(agents, _DECLARED_BOT)[agent_codes].astype(float)
    out["sequential_ids"] = _sequential(s, np.where(paged, pages, ids), sequence_keys)
    if transitions is None:
        out["transition_nll"] = np.full(len(at), np.nan)
        out["unknown_endpoints"] = np.zeros(len(at))
    else:
        out["transition_nll"] = _distinct_transitions_nll(transitions, s, n)
        # a route normal clients never used but that answers fine is a rare route, not a probe
        unknown = transitions.codes(s.endpoint) == len(transitions.vocabulary_) + 1
        out["unknown_endpoints"] = _shrunk(total(unknown & (status >= 400)), n)
    out |= _login(frame, s)
    out |= _request_scores(rows, s, scores, request_threshold)
    out["bytes"] = np.add.reduceat(np.log1p(rows["bytes"].to_numpy(np.float64)), at) / n
    out["method_post"] = total(method == "POST") / n
    out["method_other"] = _shrunk(total((method != "GET") & (method != "POST")), n)
    out["no_referrer"] = total(rows["referrer"].to_numpy() == "-") / n
    return pd.DataFrame(out, columns=[*ID_COLUMNS, *FEATURE_NAMES])


# ---------------------------------------------------------------------------------------------
# The unsupervised model


@dataclass(frozen=True, slots=True)
class Reason:
    """One feature's part in a session's score: its value, the normal median, its z-score."""

    feature: str
    value: float
    typical: float
    z: float

    def __str__(self) -> str:
        side = "above" if self.value >= self.typical else "below"
        return f"{self.feature}={self.value:.3g} ({side} normal {self.typical:.3g}, z={self.z:.1f})"


def _matrix(table: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    return table.loc[:, list(names)].to_numpy(np.float64)


# the 10 % and 90 % quantiles of a normal distribution lie this many sigmas apart
_SIGMAS_10_90 = 2.5631031310892007


class ClientModel:
    """Sessions scored against normal sessions in a robustly standardised feature space.

    Every feature is centred on its normal median and divided by a robust spread (the distance
    between its 10 % and 90 % normal quantiles, in sigmas; at least the feature's floor). Values
    on a feature's harmless side are clipped to the median (`Feature.direction`), so being
    cleaner than normal never counts; NaN counts as the median; |z| is capped at `cap`.

    Normal traffic is many populations (people, apps, dashboards, crawlers, probes), so a
    session is compared with the normal sessions one by one, not with the population as a whole.
    `combine="dominance"` (the default): the score is the distance to the nearest normal session
    counting only the features on which the session is the more suspicious of the two; a
    session is as normal as a normal session that is at least as odd in every respect, and
    being a rare kind of normal client is not suspicious in itself. Since a reference vouches
    for everything less odd than itself, the normal sessions that are outliers among the others
    (see `fit`) are left out of the references. `"knn"`: the plain
    Euclidean distance to the nearest normal sessions. `"max"`: the largest |z| (one population,
    a baseline). Scores of `neighbours` nearest normal sessions are averaged.

    Verdicts on the first k requests of a session (`early=True`) compare it with the beginnings
    of normal sessions (their first `prefixes` requests) and use their own threshold: a full
    normal session is a poor yardstick for two requests.

    A flag's reasons are the features that make up most of the distance to the nearest normal
    session (`Reason.typical` is that session's value), or the largest z-scores (`max`).

    Args:
        fpr: the share of normal sessions the threshold may flag (held out, see `fit`).
        early_fpr: the share of normal sessions that an early verdict may flag at any of their
            beginnings (the early threshold's); `fpr` when not given.
        combine: "dominance", "knn" or "max".
        neighbours: how many nearest normal sessions a score averages over.
        cap: the largest |z| a feature can reach, so that one feature cannot be all of a score.
        alpha: smoothing of the endpoint-transition model.
        mix: the transition model's weight on observed transitions (vs. endpoint frequency).
        prefixes: the lengths at which normal sessions are cut to learn normal beginnings.
        calibration_rows: held-out scores of at most about this many reference rows set a
            threshold (a sample of sessions).
        request_threshold: the request model's threshold, for the `score_over` feature.
        idle: seconds of inactivity that end a session.
    """

    def __init__(
        self,
        fpr: float = 0.01,
        early_fpr: float | None = None,
        combine: str = "dominance",
        neighbours: int = 1,
        cap: float = 30.0,
        alpha: float = 0.1,
        mix: float = 0.5,
        prefixes: Sequence[int] = (1, 2, 3, 5, 8, 13, 21, 34),
        calibration_rows: int = 5000,
        request_threshold: float = math.inf,
        idle: float = IDLE,
    ) -> None:
        self.fpr = fpr
        self.early_fpr = fpr if early_fpr is None else early_fpr
        self.combine = combine
        self.neighbours = neighbours
        self.cap = cap
        self.alpha = alpha
        self.mix = mix
        self.prefixes = prefixes
        self.calibration_rows = calibration_rows
        self.request_threshold = request_threshold
        self.idle = idle

    # -- fitting ----------------------------------------------------------------------------

    def fit(
        self,
        frame: pd.DataFrame,
        request_scores: np.ndarray,
        validation: tuple[pd.DataFrame, np.ndarray] | None = None,
    ) -> ClientModel:
        """Fit on the requests of normal clients and set the thresholds.

        The normal sessions, of `frame` and of `validation` (more normal clients' requests and
        scores) when given, are scored against the sessions of the *other* clients only
        (leave-one-client-out), so every session is held out from its own score while rare
        kinds of normal client keep all their examples as references. The at most `fpr` of
        them that this flags are not references; the others are, and the threshold is the
        score that at most `fpr` of all of them reach against those references.

        Request scores should be out-of-sample (cross-fitted on the training requests), or
        normal sessions' score features look cleaner here than they will in use.
        """
        scores = np.asarray(request_scores, dtype=np.float64)
        if validation is not None:
            frame = pd.concat([frame, validation[0]], ignore_index=True)
            scores = np.r_[scores, np.asarray(validation[1], dtype=np.float64)]
        s = _sorted_requests(frame, self.idle, None)
        if len(s.order) == 0:
            raise ValueError("no normal requests to fit the client model on")
        self.transitions_ = Transitions(self.alpha, self.mix).fit(s.endpoint, s.starts)
        table = _features(frame, scores[s.order], self.request_threshold, self.transitions_, s)
        self.fit_features(table)
        ids, clients = table["session"].to_numpy(), _clients(table)
        # the normal sessions that the threshold flags against the other clients' are not
        # references: under `dominance` a reference vouches for everything less odd than
        # itself, and one stray normal session whose requests all scored high (a client calling
        # routes no other client called) would vouch for every payload session
        z = self.reference_  # every normal session, before the outliers are left out
        held = self._held_out(z, clients, ids, sample=False)
        kept = (held < threshold_at(held, self.fpr))[np.searchsorted(np.unique(ids), ids)]
        if not kept.any():  # one client: no other to hold it out against, and no outlier
            kept[:] = True
        self.reference_ = z[kept]
        self.threshold_ = threshold_at(self._held_out(z, clients, ids, kept), self.fpr)
        # normal beginnings: each session cut at every prefix length shorter than itself
        lengths = np.diff(np.r_[s.starts, len(s.order)])
        tables = [table]
        for k in self.prefixes:
            cut = _prefix(s, k)
            part = _features(
                frame, scores[cut.order], self.request_threshold, self.transitions_, cut
            )
            tables.append(part[lengths > k])
        early = pd.concat(tables, ignore_index=True)
        early_ids = early["session"].to_numpy()
        early_kept = np.isin(early_ids, ids[kept])  # the beginnings of the kept sessions
        early_z = self.z_scores(early)
        self.early_reference_ = early_z[early_kept]
        # a normal session flagged at any of its beginnings is a false positive: the early
        # threshold bounds the share of sessions with one, not the share of beginnings
        self.early_threshold_ = threshold_at(
            self._held_out(early_z, _clients(early), early_ids, early_kept), self.early_fpr
        )
        return self

    def fit_features(self, table: pd.DataFrame) -> ClientModel:
        """Learn the standardisation and the normal reference sessions from normal sessions'
        features (the thresholds are left for `calibrate`; early verdicts use the same
        references)."""
        self.features_ = list(FEATURE_NAMES)
        floors = np.array([f.floor for f in FEATURES])
        x = _matrix(table, self.features_)
        with np.errstate(all="ignore"):
            center = np.nanmedian(x, axis=0)
            q10, q90 = np.nanquantile(x, [0.1, 0.9], axis=0)
        self.center_ = np.nan_to_num(center)
        self.scale_ = np.maximum(np.nan_to_num((q90 - q10) / _SIGMAS_10_90), floors)
        self.direction_ = np.array([f.direction for f in FEATURES], dtype=str)
        self.reference_ = self.early_reference_ = self.z_scores(table)
        self.threshold_ = self.early_threshold_ = math.inf
        return self

    def calibrate(self, normal: pd.DataFrame, early: bool = False) -> ClientModel:
        """Set the threshold so that at most `fpr` of these normal sessions are flagged (or the
        early one: at most `early_fpr` of these beginnings of sessions)."""
        threshold = threshold_at(self.score(normal, early), self.early_fpr if early else self.fpr)
        if early:
            self.early_threshold_ = threshold
        else:
            self.threshold_ = threshold
        return self

    def _held_out(
        self,
        z: np.ndarray,
        clients: np.ndarray,
        sessions: np.ndarray,
        against: np.ndarray | None = None,
        sample: bool = True,
    ) -> np.ndarray:
        """Each normal session's held-out score: the largest score of its rows (the session
        itself, or its beginnings) against the rows of other clients only (those where
        `against` is true, when given), in the order of the sorted session ids. With `sample`,
        sessions are an evenly spaced sample when there are more than `calibration_rows` rows
        (a quantile needs no more)."""
        chosen = np.unique(sessions)
        if sample and len(z) > self.calibration_rows:
            m = max(1, len(chosen) * self.calibration_rows // len(z))
            chosen = chosen[np.linspace(0, len(chosen) - 1, m).round().astype(int)]
        rows = np.flatnonzero(np.isin(sessions, chosen))
        if self.combine == "max":
            scores = np.abs(z[rows]).max(axis=1)
        else:
            columns = np.arange(len(z)) if against is None else np.flatnonzero(against)
            reference, owners = z[columns], clients[columns]
            k = max(1, min(self.neighbours, len(reference) - 1))
            step = self._step(reference)
            parts = []
            for chunk in range(0, len(rows), step):
                at = rows[chunk : chunk + step]
                d2 = self._squared(z[at], reference)
                d2[clients[at, None] == owners[None, :]] = np.inf
                parts.append(np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k]).mean(axis=1))
            scores = np.concatenate(parts) if parts else np.zeros(0)
        return pd.Series(scores).groupby(sessions[rows]).max().to_numpy()

    # -- scoring ----------------------------------------------------------------------------

    def features(
        self, frame: pd.DataFrame, request_scores: np.ndarray, first: int | None = None
    ) -> pd.DataFrame:
        """The session features this model reads (`client_features` with its own settings)."""
        return client_features(
            frame, request_scores, self.request_threshold, self.transitions_, self.idle, first
        )

    def z_scores(self, table: pd.DataFrame) -> np.ndarray:
        """Robust z-scores, sessions x features, clipped to 0 on each feature's harmless side
        (both sides of a `none` feature, which only describes) and to +-`cap`."""
        z = (_matrix(table, self.features_) - self.center_) / self.scale_
        z = np.where(np.isin(self.direction_, ("high", "both")), z, np.minimum(z, 0.0))
        z = np.where(np.isin(self.direction_, ("low", "both")), z, np.maximum(z, 0.0))
        return np.clip(np.nan_to_num(z), -self.cap, self.cap)

    def _gap(self, q: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Per-feature differences of queries from references (arrays that broadcast): with
        `dominance`, only where the query is the more suspicious one, signed by direction
        (positive: higher than the reference on a `high` feature)."""
        gap = q - reference
        if self.combine != "dominance":
            return gap
        high = np.isin(self.direction_, ("high", "both"))
        low = np.isin(self.direction_, ("low", "both"))
        return np.where(high, np.maximum(gap, 0.0), 0.0) + np.where(low, np.minimum(gap, 0.0), 0.0)

    def _squared(self, q: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Squared distances, queries x references (see `_gap`)."""
        if self.combine != "dominance":  # Euclidean: the matrix-product form
            d2 = np.einsum("ij,ij->i", q, q)[:, None] + np.einsum("ij,ij->i", reference, reference)
            return np.maximum(d2 - 2.0 * q @ reference.T, 0.0)
        # one feature at a time, in float32: 2-d temporaries stay in cache, and a feature on
        # which no query is off its median (z = 0) cannot add anything and is skipped
        queries, columns = q.astype(np.float32), np.ascontiguousarray(reference.T, np.float32)
        out = np.zeros((len(q), len(reference)), np.float32)
        gap = np.empty_like(out)
        for j, direction in enumerate(self.direction_):
            if direction == "none" or (direction != "both" and not queries[:, j].any()):
                continue
            np.subtract(queries[:, j, None], columns[j][None, :], out=gap)
            if direction == "high":
                np.maximum(gap, 0.0, out=gap)
            elif direction == "low":
                np.minimum(gap, 0.0, out=gap)
            np.square(gap, out=gap)
            out += gap
        return out.astype(np.float64)

    @staticmethod
    def _step(reference: np.ndarray) -> int:
        """Queries per chunk, so that a chunk's arrays stay around 16-32 MB."""
        return max(1, 2**22 // max(len(reference), 1))

    def _nearest(self, z: np.ndarray, early: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Distances to, and indices of, the nearest reference rows (ascending)."""
        reference = self.early_reference_ if early else self.reference_
        k = min(self.neighbours, len(reference))
        step = self._step(reference)
        distances, indices = [], []
        for chunk in range(0, len(z), step):  # bounded memory
            d2 = self._squared(z[chunk : chunk + step], reference)
            idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
            part = np.take_along_axis(d2, idx, axis=1)
            order = np.lexsort((idx, part), axis=1)  # ties broken by index: deterministic
            distances.append(np.sqrt(np.take_along_axis(part, order, axis=1)))
            indices.append(np.take_along_axis(idx, order, axis=1))
        return np.concatenate(distances), np.concatenate(indices)

    def score(self, table: pd.DataFrame, early: bool = False) -> np.ndarray:
        """Each session's anomaly score (higher is more abusive); `early`: against normal
        beginnings, for verdicts on a session's first requests."""
        z = self.z_scores(table)
        if len(z) == 0:
            return np.zeros(0)
        if self.combine == "max":
            return np.abs(z).max(axis=1)
        return self._nearest(z, early)[0].mean(axis=1)

    def flagged(self, table: pd.DataFrame, early: bool = False) -> np.ndarray:
        """Whether each session's score reaches the threshold (the early one if `early`)."""
        return self.score(table, early) >= (self.early_threshold_ if early else self.threshold_)

    def explain(self, table: pd.DataFrame, top: int = 3, early: bool = False) -> list[list[Reason]]:
        """For each session, the `top` features that set it furthest apart from normal.

        A feature's weight is its part of the distance to the nearest normal session, and
        `Reason.typical` is that session's value; with `max`, the weight is |z| and `typical`
        the normal median.
        """
        z = self.z_scores(table)
        x = _matrix(table, self.features_)
        if len(z) == 0:
            return []
        if self.combine == "max":
            gap, typical = z, np.broadcast_to(self.center_, z.shape)
        else:
            reference = self.early_reference_ if early else self.reference_
            nearest = reference[self._nearest(z, early)[1][:, 0]]
            gap, typical = self._gap(z, nearest), self.center_ + nearest * self.scale_
        order = np.argsort(-np.abs(gap), axis=1, kind="stable")[:, :top]
        return [
            [
                Reason(self.features_[j], float(x[i, j]), float(typical[i, j]), float(gap[i, j]))
                for j in order[i]
                if gap[i, j] != 0
            ]
            for i in range(len(z))
        ]

    def verdicts(
        self,
        frame: pd.DataFrame,
        request_scores: np.ndarray,
        first: int | None = None,
        top: int = 3,
    ) -> pd.DataFrame:
        """Per session: who, when, how many requests, score, flag and reasons (strings); with
        `first`, the early verdict on each session's first `first` requests."""
        early = first is not None
        table = self.features(frame, request_scores, first)
        score = self.score(table, early)
        out = table[ID_COLUMNS].copy()
        out["requests"] = np.rint(np.expm1(table["requests"].to_numpy(float))).astype(int)
        out["score"] = score
        out["flagged"] = score >= (self.early_threshold_ if early else self.threshold_)
        out["reasons"] = [[str(r) for r in rs] for rs in self.explain(table, top, early)]
        return out

    # -- state ------------------------------------------------------------------------------

    def _settings(self) -> dict[str, object]:
        return {
            "fpr": self.fpr,
            "early_fpr": self.early_fpr,
            "combine": self.combine,
            "neighbours": self.neighbours,
            "cap": self.cap,
            "alpha": self.alpha,
            "mix": self.mix,
            "prefixes": list(self.prefixes),
            "calibration_rows": self.calibration_rows,
            "request_threshold": _json_float(self.request_threshold),
            "idle": self.idle,
        }

    def save(self, path: Path) -> None:
        """Write the model as one `.npz` of plain arrays and JSON (no pickle)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(
                f,
                settings=np.array(json.dumps(self._settings())),
                features=np.array(self.features_, dtype=str),
                direction=self.direction_,
                center=self.center_,
                scale=self.scale_,
                reference=self.reference_,
                threshold=np.array(self.threshold_),
                early_reference=self.early_reference_,
                early_threshold=np.array(self.early_threshold_),
                **self.transitions_.state(),
            )

    @classmethod
    def load(cls, path: Path) -> ClientModel:
        """Read a model `save` wrote; no pickled objects are accepted."""
        with np.load(path, allow_pickle=False) as arrays:
            settings = json.loads(str(arrays["settings"]))
            settings["request_threshold"] = float(settings["request_threshold"])
            settings["prefixes"] = tuple(settings["prefixes"])
            model = cls(**settings)
            model.features_ = [str(v) for v in arrays["features"]]
            model.direction_ = arrays["direction"]
            model.center_, model.scale_ = arrays["center"], arrays["scale"]
            model.reference_ = arrays["reference"]
            model.threshold_ = float(arrays["threshold"])
            model.early_reference_ = arrays["early_reference"]
            model.early_threshold_ = float(arrays["early_threshold"])
            model.transitions_ = Transitions.from_state(dict(arrays))
        return model


def _clients(table: pd.DataFrame) -> np.ndarray:
    """One integer per client (address, agent) of a feature table's sessions."""
    return table.groupby(["client_ip", "user_agent"], sort=False).ngroup().to_numpy()


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


# ---------------------------------------------------------------------------------------------
# The supervised comparison


class SupervisedClientModel:
    """Logistic regression on the same session features, robustly scaled, for comparison.

    NaN features are replaced by the training median. The threshold is set at `fpr` on held-out
    normal sessions, as the unsupervised model's is. A flag's reasons are the features whose
    coefficient times scaled value pushed the score up most.
    """

    def __init__(self, C: float = 1.0, fpr: float = 0.01) -> None:  # noqa: N803 (sklearn's name)
        self.C = C
        self.fpr = fpr

    def _scaled(self, table: pd.DataFrame) -> np.ndarray:
        x = _matrix(table, FEATURE_NAMES)
        x = np.where(np.isnan(x), self.center_, x)
        return (x - self.center_) / self.scale_

    def fit(self, table: pd.DataFrame, is_abuse: np.ndarray) -> SupervisedClientModel:
        """Fit on labelled sessions' features."""
        from sklearn.linear_model import LogisticRegression

        x = _matrix(table, FEATURE_NAMES)
        with np.errstate(all="ignore"):
            self.center_ = np.nan_to_num(np.nanmedian(x, axis=0))
            q75, q25 = np.nanquantile(x, [0.75, 0.25], axis=0)
        floors = np.array([f.floor for f in FEATURES])
        self.scale_ = np.maximum(np.nan_to_num(q75 - q25), floors)
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        model.fit(self._scaled(table), np.asarray(is_abuse, dtype=int))
        self.coef_ = model.coef_[0].astype(np.float64)
        self.intercept_ = float(model.intercept_[0])
        self.threshold_ = 0.0
        return self

    def calibrate(self, normal: pd.DataFrame) -> SupervisedClientModel:
        """Set the threshold so that at most `fpr` of these normal sessions are flagged."""
        self.threshold_ = threshold_at(self.score(normal), self.fpr)
        return self

    def score(self, table: pd.DataFrame) -> np.ndarray:
        """The log-odds of abuse of each session."""
        return self._scaled(table) @ self.coef_ + self.intercept_

    def explain(self, table: pd.DataFrame, top: int = 3) -> list[list[Reason]]:
        """For each session, the `top` features that pushed its log-odds up most."""
        parts = self._scaled(table) * self.coef_
        x = _matrix(table, FEATURE_NAMES)
        order = np.argsort(-parts, axis=1, kind="stable")[:, :top]
        return [
            [
                Reason(FEATURE_NAMES[j], float(x[i, j]), float(self.center_[j]), float(parts[i, j]))
                for j in order[i]
                if parts[i, j] > 0
            ]
            for i in range(len(parts))
        ]

    def save(self, path: Path) -> None:
        """Write the model as one `.npz` of plain arrays (no pickle)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(
                f,
                settings=np.array(json.dumps({"C": self.C, "fpr": self.fpr})),
                features=np.array(FEATURE_NAMES, dtype=str),
                center=self.center_,
                scale=self.scale_,
                coef=self.coef_,
                intercept=np.array(self.intercept_),
                threshold=np.array(self.threshold_),
            )

    @classmethod
    def load(cls, path: Path) -> SupervisedClientModel:
        """Read a model `save` wrote; refuse one written for other features."""
        with np.load(path, allow_pickle=False) as arrays:
            if [str(v) for v in arrays["features"]] != FEATURE_NAMES:
                raise ValueError(f"{path} was saved for other client features")
            model = cls(**json.loads(str(arrays["settings"])))
            model.center_, model.scale_ = arrays["center"], arrays["scale"]
            model.coef_, model.intercept_ = arrays["coef"], float(arrays["intercept"])
            model.threshold_ = float(arrays["threshold"])
        return model


# ---------------------------------------------------------------------------------------------
# How early a verdict is possible


def _prefix(s: _Sorted, k: int, sessions: np.ndarray | None = None) -> _Sorted:
    """The first `k` requests of each session (of `sessions` only, a mask by session id)."""
    keep = _rank(s.session) < k
    if sessions is not None:
        keep &= sessions[s.session]
    session = s.session[keep]
    starts = _starts(session)
    local = np.zeros(len(session), np.int64)
    if len(session):
        local[starts[1:]] = 1
    return _Sorted(
        s.order[keep],
        np.cumsum(local),
        starts,
        s.endpoint[keep],
        s.login[keep],
        s.ids[session[starts]],
        s.path[keep],
        s.paths,
    )


def first_flagged(
    model: ClientModel,
    frame: pd.DataFrame,
    request_scores: np.ndarray,
    ks: Iterable[int] = range(1, 51),
) -> np.ndarray:
    """For each session (in id order), the least k in `ks` whose first k requests get an early
    flag (a session shorter than k: its length); NaN when none does."""
    scores = np.asarray(request_scores, dtype=np.float64)
    full = _sorted_requests(frame, model.idle, None)
    found = np.full(len(full.starts), np.nan)
    lengths = np.diff(np.r_[full.starts, len(full.order)])
    previous = 0
    for k in sorted(ks):
        # sessions not flagged yet and longer than the previous prefix: the rest are decided
        active = np.isnan(found) & (lengths > previous)
        previous = k
        if not active.any():
            continue
        s = _prefix(full, k, active)
        table = _features(frame, scores[s.order], model.request_threshold, model.transitions_, s)
        ids = table["session"].to_numpy(np.int64)
        hit = ids[model.flagged(table, early=True)]
        found[hit] = np.minimum(k, lengths[hit])
    return found


def how_early(first: np.ndarray, kinds: Sequence[str] | np.ndarray) -> pd.DataFrame:
    """Per kind: sessions, the median k at which they are first flagged (NaN when more than half
    never are), and the shares flagged within 20 and within 50 requests."""
    table = pd.DataFrame({"kind": np.asarray(kinds), "k": np.where(np.isnan(first), np.inf, first)})
    grouped = table.groupby("kind")["k"]
    out = pd.DataFrame(
        {
            "sessions": grouped.size(),
            "median_k": grouped.median().replace(np.inf, np.nan),
            "within_20": grouped.apply(lambda k: float((k <= 20).mean())),
            "within_50": grouped.apply(lambda k: float((k <= 50).mean())),
        }
    )
    return out
