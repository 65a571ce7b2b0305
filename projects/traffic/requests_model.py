"""Request-level anomaly models: is this one HTTP request unlike the normal ones?

`RequestModel` (the default, unsupervised) learns normal requests only, in the spirit of Kruegel &
Vigna (2003, "Anomaly detection of web-based attacks"). Requests are grouped by endpoint
(`logformat.endpoint`); each endpoint's parameters (`logformat.params`) get a model of their
values: length (Chebyshev, and the exact lengths seen), character distribution (the idealized
character distribution's chi-square test), the characters and character 3-grams seen in them
(also on a "shape" alphabet where every letter is `a`/`A` and every digit `0`, and 3-grams seen
in no value at all), a structural type (the set of character classes in the value, plus its
JSON type: int, float, e-mail, token, text ...), numeric range, and the values themselves (an
enumeration shows up as a parameter that hardly ever takes a new value). The request itself
adds: unknown endpoint, method or path; the path's own characters and 3-grams (the path is
scored as one more value); traversal-like paths; which parameters are present, unknown or
repeated, and their order; and the body size.

Every feature gives a surprisal in nats, about -log P(what is seen | normal traffic). "New"
events (a value, character, 3-gram, length, parameter or endpoint never seen) are priced with
Good-Turing estimates: a parameter whose training values were often new (free text, names) makes
new 3-grams cheap; an enumeration makes them dear. A plain integer in a numeric parameter is
judged by its range, length, type and shape only: its digits carry no more. The count of new
characters or 3-grams in a value is priced by its binomial tail, so a long free-text value is not
punished for its length. The continuous features are then calibrated by cross-fitting: per
parameter, a feature counts only above the 99th percentile it reaches on normal values that its
model did not see, which absorbs what the textbook bounds get wrong (correlated 3-grams, short
values in the chi-square test). Values of a parameter never seen on an endpoint are judged by
what the parameter name took on other endpoints, or by all values.

A request's score is its request-level surprisals plus its values' surprisals weighted by a
softmax over its values (about the worst value's, so that a long form with many slightly new
values does not add up to an attack). Each part's share of the score is exact, and `explain`
names the largest. The threshold is the (1 - `fpr`) quantile of the scores of held-out normal
requests (whole clients held out, or blocks of neighbouring requests).

Scoring is vectorised: the parameters of a batch are exploded into one row per value, every
value's characters go into one code array, and each look-up is a binary search (small batches)
or a hash look-up (large ones) into int64 codes. The state is plain arrays and JSON
(`save`/`load`, one `.npz`), nothing pickled.

`SupervisedRequestModel` is the labelled comparison: TF-IDF of character 1-3-grams of the
request's text (method, decoded path, decoded parameters) and a logistic regression, saved with
skops.

Workaround noted for the data helper's contract: `logformat.params` returns every value as text,
so `"quantity": "1"` and `"quantity": 1` look the same; `_json_kinds` re-reads a JSON body to
recover each leaf's JSON type (in `params`' order) for the structural type.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd
from scipy import special

from projects.traffic.logformat import endpoint as endpoint_of
from projects.traffic.logformat import params as params_of

log = logging.getLogger(__name__)

# the character alphabet: Latin-1 code points, one code for anything above, one for a boundary
OTHER = 256
BOUNDARY = 257
CHAR_BITS = 9
GRAM_BITS = 3 * CHAR_BITS
MASK_BITS = 13  # 11 character classes and 2 bits of JSON type
LENGTH_BITS = 16  # lengths from 2**16 - 1 up count as one
# key names: an endpoint's parameter, a parameter name on any endpoint, any value, the path
SEP = "\x1f"
ANY = "*"
PATH_KEY = "<path>"
PATH_FEATURE = "path"
# a path segment that is an id: digits, a UUID, or long hex with a digit (as `logformat` does)
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{16,}"
)
# traversal and encoding tricks in a raw path: dot-dot segments, encoded dots, NULs, backslashes,
# double encoding
_TRAVERSAL = re.compile(r"(^|[/\\])\.\.([/\\]|$)|%(2e|00|5c|25|c0|c1)|\\|\x00", re.IGNORECASE)
FLOOR = 1e-300
RAW_CAP = -math.log(FLOOR)  # the largest surprisal a feature can report


def _char_tables() -> tuple[np.ndarray, np.ndarray]:
    """Each code's class bit (for a value's structural type) and its shape code."""
    classes = np.zeros(BOUNDARY + 1, dtype=np.int64)
    shape = np.arange(BOUNDARY + 1, dtype=np.int64)
    for code in range(OTHER + 1):
        char = chr(code) if code < OTHER else "\u0100"
        if char.isdigit() and code < 128:
            classes[code], shape[code] = 0, ord("0")
        elif "a" <= char <= "z":
            classes[code], shape[code] = 1, ord("a")
        elif "A" <= char <= "Z":
            classes[code], shape[code] = 2, ord("A")
        elif char == " ":
            classes[code] = 3
        elif char == ".":
            classes[code] = 4
        elif char in "-_":
            classes[code] = 5
        elif char == "@":
            classes[code] = 6
        elif char.isalpha():  # Latin-1 letters (ñ, é) and any other script
            classes[code], shape[code] = 7, ord("a")
        elif code < 32 or code == 127:
            classes[code] = 9
        elif char in "+,:/=":
            classes[code] = 10
        else:
            classes[code] = 8  # the rest of punctuation: quotes, brackets, ;, <, >, ...
    return classes, shape


CHAR_CLASS, SHAPE = _char_tables()
CLASS_NAMES = [
    "digits",
    "lower case",
    "upper case",
    "spaces",
    "dots",
    "dashes",
    "@",
    "accented letters",
    "punctuation",
    "control characters",
    "separators",
]


@dataclass(frozen=True, slots=True)
class Reason:
    """One thing that moved a request's score: which parameter or feature, what was wrong with
    it, and its share of the score (the shares of all reasons sum to 1)."""

    feature: str
    problem: str
    share: float


# ---------------------------------------------------------------------------- exploding


@dataclass
class _Batch:
    """A batch of requests: per request columns, and one row per parameter value."""

    n: int
    method: np.ndarray  # str per request
    endpoint: np.ndarray  # str per request
    route: np.ndarray  # str per request: the endpoint without its method
    path_key: np.ndarray  # str per request: the path with id segments as {id}
    path: np.ndarray  # str per request: the percent-decoded path
    body_len: np.ndarray  # int per request
    group: np.ndarray  # int per request: its client, or its block of neighbouring requests
    names_set: np.ndarray  # str per request: its parameter names, sorted, without repeats
    names_order: np.ndarray  # str per request: its parameter names in order
    req: np.ndarray  # per parameter row: its request
    name: np.ndarray  # per parameter row: the parameter's name
    value: list[str]  # per parameter row
    kind: np.ndarray  # per parameter row: 0 text, or a JSON leaf's type (see `_json_kinds`)

    def take(self, keep: np.ndarray) -> _Batch:
        """The requests where `keep` is true, renumbered."""
        new = np.cumsum(keep) - 1
        rows = keep[self.req]
        return _Batch(
            n=int(keep.sum()),
            method=self.method[keep],
            endpoint=self.endpoint[keep],
            route=self.route[keep],
            path_key=self.path_key[keep],
            path=self.path[keep],
            body_len=self.body_len[keep],
            group=self.group[keep],
            names_set=self.names_set[keep],
            names_order=self.names_order[keep],
            req=new[self.req[rows]],
            name=self.name[rows],
            value=[v for v, k in zip(self.value, rows, strict=True) if k],
            kind=self.kind[rows],
        )


def _decode_path(path: str) -> str:
    try:
        return unquote(path, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return unquote(path, encoding="latin-1")


def _path_key(path: str) -> str:
    return "/".join("{id}" if _ID_SEGMENT.fullmatch(s) else s for s in path.split("/"))


def _column(frame: pd.DataFrame, name: str) -> list[str]:
    if name not in frame.columns:
        return [""] * len(frame)
    return ["" if v is None or v != v else str(v) for v in frame[name].tolist()]


def explode(frame: pd.DataFrame, groups: bool = False) -> _Batch:
    """Parse a frame of requests (columns `method`, `path`, `query`, `body`) into a batch;
    `groups` also finds each request's client (or block) for splits."""
    methods, paths = _column(frame, "method"), _column(frame, "path")
    queries, bodies = _column(frame, "query"), _column(frame, "body")
    per_path: dict[tuple[str, str], tuple[str, str, str]] = {}
    endpoints, routes, keys, decoded = [], [], [], []
    req: list[int] = []
    names: list[str] = []
    values: list[str] = []
    kinds: list[int] = []
    sets = [""] * len(frame)
    orders = [""] * len(frame)
    for i, (method, path, query, body) in enumerate(
        zip(methods, paths, queries, bodies, strict=True)
    ):
        known = per_path.get((method, path))
        if known is None:
            known = (endpoint_of(method, path), _path_key(path), _decode_path(path))
            per_path[(method, path)] = known
        endpoints.append(known[0])
        keys.append(known[1])
        decoded.append(known[2])
        if query or body:
            pairs = params_of(method, path, query, body)
            req.extend([i] * len(pairs))
            for name, value in pairs:
                names.append(name)
                values.append(value)
            kinds.extend(_json_kinds(query, body, len(pairs)))
            request_names = [name for name, _ in pairs]
            orders[i] = SEP.join(request_names)
            sets[i] = SEP.join(sorted(set(request_names)))
    for e in endpoints:
        routes.append(e.partition(" ")[2])
    return _Batch(
        n=len(frame),
        method=np.array(methods, dtype=object),
        endpoint=np.array(endpoints, dtype=object),
        route=np.array(routes, dtype=object),
        path_key=np.array(keys, dtype=object),
        path=np.array(decoded, dtype=object),
        body_len=np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies)),
        group=_groups(frame) if groups else np.zeros(len(frame), dtype=np.int64),
        names_set=np.array(sets, dtype=object),
        names_order=np.array(orders, dtype=object),
        req=np.array(req, dtype=np.int64),
        name=np.array(names, dtype=object),
        value=values,
        kind=np.array(kinds, dtype=np.int64),
    )


def _json_kinds(query: str, body: str, count: int) -> list[int]:
    """The JSON type of each parameter (0 for query and form values; 1 string, 2 number,
    3 true/false/null), in `params` order: `params` returns every value as text, so a number
    sent as a string ("quantity": "1") would otherwise look like the number."""
    text = body.strip()
    if not text or text[0] not in "{[":
        return [0] * count
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        return [0] * count
    leaves: list[int] = []
    _leaf_kinds(document, leaves)
    head = count - len(leaves)  # the query's pairs come first
    if head < 0 or (head > 0 and not query):
        return [0] * count
    return [0] * head + leaves


def _leaf_kinds(value: object, out: list[int]) -> None:
    """Leaves in the order `logformat` flattens a JSON document."""
    if isinstance(value, dict):
        for item in value.values():
            _leaf_kinds(item, out)
    elif isinstance(value, list):
        for item in value:
            _leaf_kinds(item, out)
    elif isinstance(value, str):
        out.append(1)
    elif isinstance(value, bool) or value is None:
        out.append(3)
    else:
        out.append(2)


# ---------------------------------------------------------------------------- characters


@dataclass
class _Chars:
    """The characters of many values in one array: codes, the value each belongs to, lengths,
    and the 3-grams (raw and shape) over each value padded with boundaries (one per char)."""

    codes: np.ndarray
    owner: np.ndarray
    lengths: np.ndarray
    grams: np.ndarray
    shapes: np.ndarray


def _encode(values: Sequence[str]) -> _Chars:
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    text = "".join(values)
    raw = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    codes = np.minimum(raw, OTHER).astype(np.int64)
    n = len(values)
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    starts = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(lengths[:-1], out=starts[1:])
    within = np.arange(len(codes), dtype=np.int64) - starts[owner]
    # value i occupies padded[starts[i] + 2 * i : ... + lengths[i] + 2] as B c0 ... cL-1 B
    segment = starts + 2 * np.arange(n, dtype=np.int64)
    position = segment[owner] + within
    padded = np.full(len(codes) + 2 * n, BOUNDARY, dtype=np.int64)
    padded[position + 1] = codes
    shaped = SHAPE[padded]
    return _Chars(
        codes=codes,
        owner=owner,
        lengths=lengths,
        grams=_trigrams(padded, position),
        shapes=_trigrams(shaped, position),
    )


def _length_code(lengths: np.ndarray) -> np.ndarray:
    return np.minimum(lengths, (1 << LENGTH_BITS) - 1)


def _trigrams(padded: np.ndarray, position: np.ndarray) -> np.ndarray:
    return (
        (padded[position] << (2 * CHAR_BITS))
        | (padded[position + 1] << CHAR_BITS)
        | padded[position + 2]
    )


HASHED_LOOKUPS = 4096  # look-ups of more codes than this go through a hash table


class _Table:
    """Counts of int64 codes, sorted for vectorised look-ups."""

    def __init__(self, codes: np.ndarray, counts: np.ndarray) -> None:
        self.codes = codes.astype(np.int64)
        self.counts = counts.astype(np.int64)
        self._hashed: pd.Index | None = None

    @classmethod
    def of(cls, codes: np.ndarray) -> _Table:
        unique, counts = np.unique(codes, return_counts=True)
        return cls(unique, counts)

    def get(self, codes: np.ndarray) -> np.ndarray:
        """The count of each code (0 when never seen)."""
        if not len(self.codes):
            return np.zeros(len(codes), dtype=np.int64)
        if len(codes) > HASHED_LOOKUPS:
            # a hash table beats binary search on big batches; it is built once, on first use
            if self._hashed is None:
                self._hashed = pd.Index(self.codes)
            at = self._hashed.get_indexer(codes)
            return np.where(at >= 0, self.counts[at], 0)
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        return np.where(self.codes[at] == codes, self.counts[at], 0)

    def per_key(self, bits: int, keys: int) -> tuple[np.ndarray, np.ndarray]:
        """Per key (the code's high bits): total count and count of codes seen exactly once."""
        key = self.codes >> bits
        total = np.bincount(key, weights=self.counts, minlength=keys)
        once = np.bincount(key[self.counts == 1], minlength=keys).astype(float)
        return total, once


def _new_rate(once: np.ndarray, total: np.ndarray, prior: float) -> np.ndarray:
    """Good-Turing: the chance the next event is new is about the share of events seen once;
    smoothed toward `prior` by one pseudo-event."""
    return np.clip((once + prior) / (total + 1.0), 1e-9, 1.0)


def _tail(new: np.ndarray, total: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """-log P(at least `new` new events out of `total`), each new with chance `rate`."""
    out = np.zeros(len(new))
    some = new > 0
    if some.any():
        k, n = new[some], np.maximum(total[some], new[some])
        # P(Binomial(n, rate) >= k) is the regularised incomplete beta I_rate(k, n - k + 1)
        p = special.betainc(k, n - k + 1.0, rate[some])
        out[some] = -np.log(np.maximum(p, FLOOR))
    return out


def _chebyshev(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """-log of Chebyshev's bound on P(|X - mean| >= |x - mean|), 0 inside one deviation."""
    # numbers can be absurd (a thousand nines): stay finite
    gap = (np.minimum(np.maximum(x, -1e150), 1e150) - mean) ** 2
    return np.log(np.maximum(gap / np.maximum(var, 1e-12), 1.0))


ICD_BINS = np.array([0, 1, 4, 7, 12, 16])  # Kruegel & Vigna's bins of the sorted frequencies


def _icd(chars: _Chars, n: int) -> np.ndarray:
    """Each value's idealized character distribution: the share of its characters held by its
    most frequent character, by the 2nd-4th, 5th-7th, 8th-12th, 13th-16th and the rest."""
    out = np.zeros((n, len(ICD_BINS)))
    if not len(chars.codes):
        return out
    pair = chars.owner * (BOUNDARY + 1) + chars.codes
    unique, counts = np.unique(pair, return_counts=True)
    owner = unique // (BOUNDARY + 1)
    order = np.lexsort((-counts, owner))
    owner, counts = owner[order], counts[order]
    first = np.searchsorted(owner, owner, side="left")
    rank = np.arange(len(owner)) - first
    bins = np.searchsorted(ICD_BINS, rank, side="right") - 1
    width = len(ICD_BINS)
    out = np.bincount(owner * width + bins, weights=counts, minlength=n * width).reshape(n, width)
    return out / np.maximum(chars.lengths, 1)[:, None]


# ---------------------------------------------------------------------------- the model


@dataclass
class _Scored:
    """Surprisals of a batch: per request and feature, per value row and feature, and each
    row's request, parameter name, key and weight in its request's score."""

    request: np.ndarray
    rows: np.ndarray
    req: np.ndarray
    name: np.ndarray
    key: np.ndarray
    weight: np.ndarray | None = None


PARAM_TERMS = {
    "unknown": "parameter never seen on this endpoint",
    "repeated": "parameter repeated",
    "value": "value never seen",
    "type": "type",
    "length": "length",
    "new_length": "a length never seen",
    "number": "number",
    "chars": "characters",
    "grams": "character sequences",
    "shapes": "character patterns",
    "global": "character sequences never seen in any value",
    "distribution": "character distribution",
}
REQUEST_TERMS = {
    "endpoint": "endpoint never seen",
    "method": "method never seen on this route",
    "path": "path never seen",
    "traversal": "traversal-like path",
    "presence": "parameters missing or unusual",
    "order": "parameters in an order never seen",
    "body": "body size",
}


# binary "never seen" terms are priced by Good-Turing already; the others are calibrated
CALIBRATED_PARAM = ["length", "number", "chars", "grams", "shapes", "global", "distribution"]
CALIBRATED_REQUEST = ["presence", "body"]
SHRINK = 20.0  # pseudo-values of the global offset in a key's offset


class RequestModel:
    """Unsupervised request anomaly scores, fitted on normal requests only.

    Args:
        fpr: the share of held-out normal requests allowed above the threshold.
        holdout: the share of normal requests held out of fitting to choose the threshold (whole
            clients when the frame has `client_ip` and `user_agent`, else blocks of neighbours).
        folds: cross-fitting folds that calibrate the features: each feature counts only above
            the `quantile` of its values on normal requests its model did not see.
        quantile: see `folds`.
        temperature: how a request's parameters combine: each one's surprisal is weighted by a
            softmax of the surprisals at this temperature (near 0: the worst parameter alone;
            large: the mean).
        seed: seed of the hold-out and fold splits.
        max_term: the cap of any one feature's surprisal (nats).
        weights: a multiplier per feature (keys of `PARAM_TERMS` and `REQUEST_TERMS`); 1 if
            absent.
    """

    def __init__(
        self,
        fpr: float = 0.005,
        holdout: float = 0.2,
        folds: int = 2,
        quantile: float = 0.99,
        temperature: float = 2.0,
        seed: int = 0,
        max_term: float = 30.0,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.fpr = fpr
        self.holdout = holdout
        self.folds = folds
        self.quantile = quantile
        self.temperature = temperature
        self.seed = seed
        self.max_term = max_term
        self.weights = weights

    # -- fitting

    def fit(self, frame: pd.DataFrame) -> RequestModel:
        """Fit on normal requests; hold out `holdout` of them to set the threshold at `fpr`."""
        if len(frame) < 2:
            raise ValueError("at least two normal requests are needed to fit")
        batch = explode(frame, groups=True)
        held = _split(batch.group, self.holdout, self.seed)
        train = batch.take(~held)
        self._fit_stats(train)
        self._calibrate(train)
        self.threshold_ = float("inf")
        if held.any():
            self.threshold_ = threshold_at(self._score(batch.take(held)), self.fpr)
        return self

    def set_threshold(self, normal: pd.DataFrame, fpr: float | None = None) -> RequestModel:
        """Set the threshold so that a share `fpr` of these normal requests scores above it."""
        self.threshold_ = threshold_at(self.score(normal), self.fpr if fpr is None else fpr)
        return self

    def _fit_stats(self, batch: _Batch) -> RequestModel:
        """Learn every feature's model from normal requests (no calibration, no threshold)."""
        self._fit_keys(batch)
        self._fit_requests(batch)
        self._fit_values(batch)
        self.param_offset_ = np.zeros((len(self.keys_), len(PARAM_TERMS)))
        self.request_offset_ = np.zeros(len(REQUEST_TERMS))
        return self

    def _calibrate(self, batch: _Batch) -> None:
        """Per key and feature, the `quantile` of the feature on normal values that a model
        fitted without them gives (cross-fitting); a feature counts only above it."""
        folds = np.random.default_rng(self.seed + 1).integers(
            self.folds, size=int(batch.group.max()) + 1 if batch.n else 0
        )[batch.group]
        keys, params, requests = [], [], []
        for fold in range(self.folds):
            inside = folds == fold
            if inside.all() or not inside.any():
                continue
            part = RequestModel(temperature=self.temperature)._fit_stats(batch.take(~inside))
            held = batch.take(inside)
            scored = part._raw(held)
            specific = np.concatenate(
                [held.endpoint[held.req] + SEP + held.name, np.full(held.n, PATH_KEY, object)]
            )
            keys.append(self._index.get_indexer(specific))
            params.append(scored.rows)
            requests.append(scored.request)
        if not keys:
            return
        key, values = np.concatenate(keys), np.vstack(params)
        overall = np.quantile(values, self.quantile, axis=0) if len(values) else 0
        frame = pd.DataFrame(values, columns=list(PARAM_TERMS))
        frame["key"] = key
        frame = frame[frame["key"] >= 0]
        per_key = frame.groupby("key").quantile(self.quantile)
        count = frame.groupby("key").size().reindex(per_key.index).to_numpy(float)[:, None]
        offset = np.tile(overall, (len(self.keys_), 1))
        offset[per_key.index.to_numpy()] = (count * per_key.to_numpy() + SHRINK * overall) / (
            count + SHRINK
        )
        calibrated = np.isin(list(PARAM_TERMS), CALIBRATED_PARAM)
        self.param_offset_ = np.where(calibrated, offset, 0.0)
        request = np.quantile(np.vstack(requests), self.quantile, axis=0)
        self.request_offset_ = np.where(
            np.isin(list(REQUEST_TERMS), CALIBRATED_REQUEST), request, 0
        )

    def _fit_keys(self, batch: _Batch) -> None:
        specific = batch.endpoint[batch.req] + SEP + batch.name
        general = ANY + SEP + batch.name
        names = pd.unique(
            np.concatenate([[PATH_KEY, ANY + SEP + ANY], pd.unique(general), pd.unique(specific)])
        )
        self.keys_ = [str(k) for k in names]
        self._index = _Lookup(self.keys_)

    def _fit_requests(self, batch: _Batch) -> None:
        n = max(batch.n, 1)
        endpoints, counts = np.unique(batch.endpoint, return_counts=True)
        self.endpoints_ = [str(e) for e in endpoints]
        self.endpoint_counts_ = counts.astype(np.int64)
        self._endpoint_index = _Lookup(self.endpoints_)
        self.endpoint_new_ = float(_new_rate(np.sum(counts == 1), n, 1.0))
        routes = self.routes_ = [str(r) for r in pd.unique(batch.route)]
        self._route_index = _Lookup(self.routes_)
        # a new method on a known route: Good-Turing over the route's requests by method
        route_of = self._route_index.get_indexer([e.partition(" ")[2] for e in self.endpoints_])
        route_n = np.bincount(route_of, weights=counts, minlength=len(routes))
        once = np.bincount(route_of[counts == 1], minlength=len(routes)).astype(float)
        self.method_new_ = _new_rate(once, route_n, 1.0)
        # paths: exact (ids templated) per endpoint, and how often a new one comes up
        e_id = self._endpoint_index.get_indexer(batch.endpoint)
        pair = pd.Series(batch.endpoint + SEP + batch.path_key)
        seen = pair.value_counts()
        self.paths_ = [str(p) for p in seen.index]
        self._path_index = _Lookup(self.paths_)
        path_endpoint = self._endpoint_index.get_indexer([p.split(SEP)[0] for p in self.paths_])
        once = np.bincount(path_endpoint[seen.to_numpy() == 1], minlength=len(endpoints))
        self.path_new_ = _new_rate(once.astype(float), counts.astype(float), 0.5)
        traversal = np.fromiter(
            (bool(_TRAVERSAL.search(p)) for p in batch.path_key), dtype=bool, count=batch.n
        )
        self.traversal_rate_ = float((traversal.sum() + 0.5) / (n + 1.0))
        # body size per endpoint (mean, variance), and over all requests
        size = batch.body_len.astype(float)
        total = np.bincount(e_id, weights=size, minlength=len(endpoints))
        square = np.bincount(e_id, weights=size**2, minlength=len(endpoints))
        self.body_mean_ = total / counts
        self.body_var_ = np.maximum(square / counts - self.body_mean_**2, 0.0)
        self.body_all_ = np.array([size.mean() if batch.n else 0.0, size.var() if batch.n else 0])
        self._fit_presence(batch, e_id, counts)

    def _fit_presence(self, batch: _Batch, e_id: np.ndarray, counts: np.ndarray) -> None:
        """Per endpoint: how often each parameter is present, the parameter sets and orders seen,
        and how often a new parameter name comes up."""
        key = self._index.get_indexer(batch.endpoint[batch.req] + SEP + batch.name)
        first = _first(batch.req, key)
        in_requests = np.bincount(key[first], minlength=len(self.keys_)).astype(float)
        again = ~first
        multiple = key[again][_first(batch.req[again], key[again])]
        self.repeat_rate_ = (np.bincount(multiple, minlength=len(self.keys_)) + 0.5) / (
            in_requests + 1.0
        )
        key_endpoint = np.full(len(self.keys_), -1, dtype=np.int64)
        specific = np.array([not k.startswith((ANY + SEP, PATH_KEY)) for k in self.keys_])
        key_endpoint[specific] = self._endpoint_index.get_indexer(
            [k.split(SEP)[0] for k in np.array(self.keys_)[specific]]
        )
        self.key_endpoint_ = key_endpoint
        n_endpoint = np.where(key_endpoint >= 0, counts[np.maximum(key_endpoint, 0)], 0)
        present = np.clip((in_requests + 0.5) / (n_endpoint + 1.0), 1e-9, 1 - 1e-9)
        cost_present, cost_absent = -np.log(present), -np.log1p(-present)
        least = np.minimum(cost_present, cost_absent)
        self.presence_weight_ = np.where(specific, cost_present - cost_absent, 0.0)
        self.presence_base_ = np.bincount(
            key_endpoint[specific],
            weights=(cost_absent - least)[specific],
            minlength=len(counts),
        )
        once = np.bincount(key_endpoint[specific & (in_requests == 1)], minlength=len(counts))
        self.param_new_ = _new_rate(once.astype(float), counts.astype(float), 1.0)
        sets, orders = batch.names_set, batch.names_order
        self.sets_ = sorted(set((batch.endpoint + SEP + sets).tolist()))
        order_keys = pd.Series(batch.endpoint + SEP + orders).value_counts()
        self.orders_ = [str(o) for o in order_keys.index]
        order_endpoint = self._endpoint_index.get_indexer([o.split(SEP)[0] for o in self.orders_])
        once = np.bincount(order_endpoint[order_keys.to_numpy() == 1], minlength=len(counts))
        self.order_new_ = _new_rate(once.astype(float), counts.astype(float), 0.5)
        self._sets = _Lookup(self.sets_)
        self._orders = _Lookup(self.orders_)

    def _fit_values(self, batch: _Batch) -> None:
        """Per key (endpoint's parameter, parameter name anywhere, anything, the path): the
        models of its values."""
        n_rows = len(batch.value)
        specific = self._index.get_indexer(batch.endpoint[batch.req] + SEP + batch.name)
        general = self._index.get_indexer(ANY + SEP + batch.name)
        path_key = np.zeros(batch.n, dtype=np.int64)  # key 0 is the path
        anywhere = np.ones(n_rows, dtype=np.int64)  # key 1 is any value
        keys = np.concatenate([specific, general, anywhere, path_key])
        values = batch.value * 3 + list(batch.path)
        chars = _encode(values)
        k = len(self.keys_)
        self.n_ = np.bincount(keys, minlength=k).astype(float)
        # lengths
        length = chars.lengths.astype(float)
        self.len_mean_ = np.bincount(keys, weights=length, minlength=k) / np.maximum(self.n_, 1)
        square = np.bincount(keys, weights=length**2, minlength=k) / np.maximum(self.n_, 1)
        self.len_var_ = np.maximum(square - self.len_mean_**2, 0.0) + 1.0
        # the exact lengths seen: a fixed-length field (a postal code) one character short is
        # within Chebyshev's bound but has a length it never had
        self.lengths_ = _Table.of((keys << LENGTH_BITS) | _length_code(chars.lengths))
        total, once = self.lengths_.per_key(LENGTH_BITS, k)
        self.length_new_ = _new_rate(once, total, 0.5)
        # values themselves (with their key), and how often a key takes a new one
        codes, unique = pd.factorize(np.array(_key_values(keys, values), dtype=object))
        counts = np.bincount(codes)
        first = np.full(len(unique), len(codes))
        np.minimum.at(first, codes, np.arange(len(codes)))
        owner = keys[first]
        distinct_once = np.bincount(owner[counts == 1], minlength=k).astype(float)
        self.value_new_ = _new_rate(distinct_once, self.n_, 1.0)
        # keep only the values of keys where a new value is a surprise, for a small state
        keep = self.value_new_[owner] < 0.5
        self.values_ = sorted(str(v) for v in unique[keep])
        self._values = set(self.values_)
        # characters and 3-grams
        char_owner = keys[chars.owner]
        self.chars_ = _Table.of((char_owner << CHAR_BITS) | chars.codes)
        self.grams_ = _Table.of((char_owner << GRAM_BITS) | chars.grams)
        self.shapes_ = _Table.of((char_owner << GRAM_BITS) | chars.shapes)
        self.char_new_ = self._rates(self.chars_, CHAR_BITS, k)
        self.gram_new_ = self._rates(self.grams_, GRAM_BITS, k)
        self.shape_new_ = self._rates(self.shapes_, GRAM_BITS, k)
        # 3-grams seen in no value at all (each value counted once: the "any value" copy and the
        # paths); a key's share of grams seen only once anywhere prices a new one in that key
        counted = np.repeat(keys <= 1, chars.lengths)
        self.global_grams_ = _Table.of(chars.grams[counted])
        single = self.global_grams_.get(chars.grams) == 1
        lone = np.bincount(char_owner[single], minlength=k).astype(float)
        self.global_new_ = _new_rate(lone, np.bincount(char_owner, minlength=k).astype(float), 0.5)
        # structural type: the set of character classes in a value
        kinds = np.concatenate([batch.kind, batch.kind, batch.kind, np.zeros(batch.n, np.int64)])
        masks = _masks(chars, len(values)) | (kinds << len(CLASS_NAMES))
        self.masks_ = _Table.of((keys << MASK_BITS) | masks)
        total, once = self.masks_.per_key(MASK_BITS, k)
        self.mask_new_ = _new_rate(once, total, 1.0)
        # numbers: for keys whose values are nearly all numbers
        number = _numbers(values, masks)
        is_number = ~np.isnan(number)
        share = np.bincount(keys, weights=is_number, minlength=k) / np.maximum(self.n_, 1)
        x = np.where(is_number, number, 0.0)
        count = np.maximum(np.bincount(keys, weights=is_number, minlength=k), 1)
        mean = np.bincount(keys, weights=x, minlength=k) / count
        var = np.bincount(keys, weights=x**2, minlength=k) / count - mean**2
        self.numeric_ = share >= 0.95
        self.num_mean_ = mean
        self.num_var_ = np.maximum(var, 0.0) + np.maximum(np.abs(mean) * 0.05, 1.0) ** 2
        # idealized character distribution (mean of the values' sorted frequencies)
        icd = _icd(chars, len(values))
        self.icd_ = np.zeros((k, len(ICD_BINS)))
        for b in range(len(ICD_BINS)):
            self.icd_[:, b] = np.bincount(keys, weights=icd[:, b], minlength=k)
        self.icd_ /= np.maximum(self.n_, 1)[:, None]

    def _rates(self, table: _Table, bits: int, keys: int) -> np.ndarray:
        total, once = table.per_key(bits, keys)
        return _new_rate(once, total, 0.5)

    # -- scoring

    def terms(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Every feature's calibrated surprisal: per request (`REQUEST_TERMS`, arrays of the
        frame's length) and per value row (`PARAM_TERMS`, with each row's request `req`,
        parameter `name` and `weight` in the request's score)."""
        scored = self._terms(explode(frame))
        request = {name: scored.request[:, j] for j, name in enumerate(REQUEST_TERMS)}
        rows = {name: scored.rows[:, j] for j, name in enumerate(PARAM_TERMS)}
        rows.update(req=scored.req, name=scored.name, weight=scored.weight)
        return request, rows

    def _raw(self, batch: _Batch) -> _Scored:
        """Uncalibrated surprisals, finite (a tail probability can underflow to 0)."""
        request, rows = self._request_terms(batch), self._value_terms(batch)
        # fmin also turns NaN into the cap
        stack = [request[name] for name in REQUEST_TERMS]
        request_matrix = np.fmax(np.fmin(np.column_stack(stack), RAW_CAP), 0.0)
        stack = [rows[name] for name in PARAM_TERMS]
        row_matrix = np.fmax(np.fmin(np.column_stack(stack), RAW_CAP), 0.0)
        return _Scored(request_matrix, row_matrix, rows["req"], rows["name"], rows["key"])

    def _terms(self, batch: _Batch) -> _Scored:
        scored = self._raw(batch)
        weights = self.weights or {}
        request_weight = np.array([weights.get(name, 1.0) for name in REQUEST_TERMS])
        param_weight = np.array([weights.get(name, 1.0) for name in PARAM_TERMS])
        request = np.maximum(scored.request - self.request_offset_, 0.0)
        scored.request = np.minimum(request, self.max_term) * request_weight
        rows = np.maximum(scored.rows - self.param_offset_[scored.key], 0.0)
        scored.rows = np.minimum(rows, self.max_term) * param_weight
        scored.weight = _softmax_weights(
            scored.rows.sum(axis=1), scored.req, batch.n, self.temperature
        )
        return scored

    def _score(self, batch: _Batch) -> np.ndarray:
        scored = self._terms(batch)
        per_row = scored.rows.sum(axis=1) * scored.weight
        return scored.request.sum(axis=1) + np.bincount(
            scored.req, weights=per_row, minlength=batch.n
        )

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The anomaly score of each request (nats of surprise; higher is more anomalous)."""
        return self._score(explode(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """True where a request scores at or above the threshold."""
        return self.score(frame) >= self.threshold_

    def _request_terms(self, batch: _Batch) -> dict[str, np.ndarray]:
        e_id = self._endpoint_index.get_indexer(batch.endpoint)
        known = e_id >= 0
        e = np.maximum(e_id, 0)
        route = self._route_index.get_indexer(batch.route)
        route_known = route >= 0
        n = batch.n
        out = {name: np.zeros(n) for name in REQUEST_TERMS}
        out["endpoint"] = np.where(~known & ~route_known, -math.log(self.endpoint_new_), 0.0)
        r = np.maximum(route, 0)
        out["method"] = np.where(~known & route_known, -np.log(self.method_new_[r]), 0.0)
        path_seen = self._path_index.get_indexer(batch.endpoint + SEP + batch.path_key) >= 0
        out["path"] = np.where(known & ~path_seen, -np.log(self.path_new_[e]), 0.0)
        traversal = np.fromiter(
            (bool(_TRAVERSAL.search(p)) for p in batch.path_key), dtype=bool, count=n
        )
        out["traversal"] = np.where(traversal, -math.log(self.traversal_rate_), 0.0)
        size = batch.body_len.astype(float)
        mean = np.where(known, self.body_mean_[e], self.body_all_[0])
        var = np.where(known, self.body_var_[e], self.body_all_[1]) + np.maximum(mean * 0.1, 4) ** 2
        out["body"] = _chebyshev(size, mean, var)
        out["presence"], out["order"] = self._presence_terms(batch, e_id)
        return out

    def _presence_terms(self, batch: _Batch, e_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = batch.n
        known = e_id >= 0
        key = self._index.get_indexer(batch.endpoint[batch.req] + SEP + batch.name)
        useful = _first(batch.req, key) & (key >= 0)
        weight = np.bincount(
            batch.req[useful], weights=self.presence_weight_[key[useful]], minlength=n
        )
        presence = np.where(known, self.presence_base_[np.maximum(e_id, 0)] + weight, 0.0)
        sets, orders = batch.names_set, batch.names_order
        set_seen = self._sets.get_indexer(batch.endpoint + SEP + sets) >= 0
        presence = np.where(set_seen, 0.0, np.maximum(presence, 0.0))
        order_seen = self._orders.get_indexer(batch.endpoint + SEP + orders) >= 0
        order = np.where(
            known & set_seen & ~order_seen, -np.log(self.order_new_[np.maximum(e_id, 0)]), 0.0
        )
        return presence, order

    def _value_terms(self, batch: _Batch) -> dict[str, Any]:
        """Per value row (the parameters, then one row per request for its path)."""
        n_rows = len(batch.value)
        e_id = self._endpoint_index.get_indexer(batch.endpoint)
        specific = self._index.get_indexer(batch.endpoint[batch.req] + SEP + batch.name)
        general = self._index.get_indexer(ANY + SEP + batch.name)
        key = np.where(specific >= 0, specific, np.where(general >= 0, general, 1))
        endpoint_known = e_id[batch.req] >= 0 if n_rows else np.zeros(0, dtype=bool)
        unknown = (specific < 0) & endpoint_known
        keys = np.concatenate([key, np.zeros(batch.n, dtype=np.int64)])
        values = list(batch.value) + list(batch.path)
        req = np.concatenate([batch.req, np.arange(batch.n, dtype=np.int64)])
        names = np.concatenate([batch.name, np.full(batch.n, PATH_FEATURE, dtype=object)])
        out: dict[str, Any] = {"req": req, "name": names, "key": keys}
        # a parameter never seen on its (known) endpoint, and a repeated one (counted once)
        first = _first(batch.req, _factorize(batch.name))
        unknown_cost = -np.log(self.param_new_[np.maximum(e_id[batch.req], 0)]) if n_rows else 0
        out["unknown"] = _pad(np.where(unknown & first, unknown_cost, 0.0), batch.n)
        repeated = ~first & (specific >= 0)
        repeat_cost = -np.log(self.repeat_rate_[np.maximum(specific, 0)])
        out["repeated"] = _pad(np.where(repeated, repeat_cost, 0.0), batch.n)
        kinds = np.concatenate([batch.kind, np.zeros(batch.n, dtype=np.int64)])
        out.update(self._content_terms(keys, values, kinds))
        return out

    def _content_terms(
        self, keys: np.ndarray, values: list[str], kinds: np.ndarray
    ) -> dict[str, np.ndarray]:
        chars = _encode(values)
        length = chars.lengths.astype(float)
        out: dict[str, np.ndarray] = {}
        known = self._values
        seen = np.fromiter(
            (v in known for v in _key_values(keys, values)), dtype=bool, count=len(values)
        )
        out["value"] = np.where(seen, 0.0, -np.log(self.value_new_[keys]))
        out["length"] = _chebyshev(length, self.len_mean_[keys], self.len_var_[keys])
        seen = self.lengths_.get((keys << LENGTH_BITS) | _length_code(chars.lengths)) > 0
        out["new_length"] = np.where(seen, 0.0, -np.log(self.length_new_[keys]))
        owner_key = keys[chars.owner]
        n = len(values)
        masks = _masks(chars, n) | (kinds << len(CLASS_NAMES))
        # a plain integer in a numeric parameter is judged as a number (range, length, type):
        # which digits it holds says nothing more, and a timestamp or an id from another hour
        # than training's is full of digit 3-grams never seen there
        plain = self.numeric_[keys] & ((masks & ((1 << len(CLASS_NAMES)) - 1)) == 1)
        for name, table, codes, bits, rate in (
            ("chars", self.chars_, chars.codes, CHAR_BITS, self.char_new_),
            ("grams", self.grams_, chars.grams, GRAM_BITS, self.gram_new_),
            ("shapes", self.shapes_, chars.shapes, GRAM_BITS, self.shape_new_),
        ):
            new = table.get((owner_key << bits) | codes) == 0
            count = np.bincount(chars.owner, weights=new, minlength=n)
            out[name] = _tail(count, length, rate[keys])
        new = self.global_grams_.get(chars.grams) == 0
        count = np.bincount(chars.owner, weights=new, minlength=n)
        out["global"] = _tail(count, length, self.global_new_[keys])
        for name in ("chars", "grams", "global"):
            out[name] = np.where(plain, 0.0, out[name])
        mask_count = self.masks_.get((keys << MASK_BITS) | masks).astype(float)
        known_total = np.maximum(self.n_[keys], 1.0)
        p = np.where(mask_count > 0, mask_count / (known_total + 1.0), self.mask_new_[keys])
        best = np.clip(1.0 - self.mask_new_[keys], 1e-9, 1.0)
        out["type"] = np.maximum(-np.log(p) + np.log(best), 0.0)
        number = _numbers(values, masks)
        numeric = self.numeric_[keys] & ~np.isnan(number)
        out["number"] = np.where(
            numeric,
            _chebyshev(np.where(numeric, number, 0.0), self.num_mean_[keys], self.num_var_[keys]),
            0.0,
        )
        out["distribution"] = self._distribution(chars, keys, n)
        return out

    def _distribution(self, chars: _Chars, keys: np.ndarray, n: int) -> np.ndarray:
        """Kruegel & Vigna's chi-square test of a value's sorted character frequencies against
        its key's idealized character distribution."""
        observed = _icd(chars, n) * chars.lengths[:, None]
        expected = self.icd_[keys] * chars.lengths[:, None]
        # at least one character's worth expected per bin: a short value's few characters
        # would otherwise divide by (nearly) zero
        stat = np.sum((observed - expected) ** 2 / np.maximum(expected, 1.0), axis=1)
        stat = np.where(chars.lengths > 0, stat, 0.0)
        tail = special.chdtrc(len(ICD_BINS) - 1, stat)
        return -np.log(np.maximum(tail, FLOOR))

    # -- explaining

    def explain(self, frame: pd.DataFrame, top: int = 3) -> list[list[Reason]]:
        """The `top` parameters or features that moved each request's score most.

        A request's score is a sum of its request-level surprisals and of its parameters'
        surprisals times their softmax weights, so each part's share of it is exact; parts
        under a millionth of the score are left out.
        """
        batch = explode(frame)
        scored = self._terms(batch)
        values = [*batch.value, *batch.path]
        kinds = np.concatenate([batch.kind, np.zeros(batch.n, dtype=np.int64)])
        found: list[dict[tuple[str, str], tuple[float, int]]] = [{} for _ in range(batch.n)]
        for j, term in enumerate(REQUEST_TERMS):
            for i in np.flatnonzero(scored.request[:, j] > 0):
                found[i][(_request_feature(term), term)] = (float(scored.request[i, j]), int(i))
        shares = scored.rows * scored.weight[:, None]
        for row, j in zip(*np.nonzero(shares > 0), strict=True):
            i, slot = int(scored.req[row]), (str(scored.name[row]), list(PARAM_TERMS)[j])
            before = found[i].get(slot, (0.0, int(row)))[0]
            found[i][slot] = (before + float(shares[row, j]), int(row))
        out = []
        for i in range(batch.n):
            total = sum(v for v, _ in found[i].values())
            ranked = sorted(found[i].items(), key=lambda item: -item[1][0])[:top]
            reasons = []
            for (feature, term), (value, at) in ranked:
                if value < 1e-6 * total:
                    continue
                if term in REQUEST_TERMS:
                    problem = _request_problem(self, term, batch, i)
                else:
                    key = int(scored.key[at])
                    problem = _value_problem(self, term, key, values[at], int(kinds[at]))
                reasons.append(Reason(feature, problem, round(value / total, 6)))
            out.append(reasons)
        return out

    # -- state

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The model as JSON-able settings and named arrays (what `save` writes)."""
        settings = {
            "fpr": self.fpr,
            "holdout": self.holdout,
            "seed": self.seed,
            "max_term": self.max_term,
            "weights": self.weights,
            "folds": self.folds,
            "quantile": self.quantile,
            "temperature": self.temperature,
            "threshold": self.threshold_,
            "endpoint_new": self.endpoint_new_,
            "traversal_rate": self.traversal_rate_,
        }
        arrays: dict[str, np.ndarray] = {}
        for name in _STRING_LISTS:
            # one JSON string: a fixed-width array would be as wide as the longest string
            arrays[name] = np.array(json.dumps(getattr(self, name + "_")))
        for name in _ARRAYS:
            arrays[name] = np.asarray(getattr(self, name + "_"))
        for name in _TABLES:
            table = getattr(self, name + "_")
            arrays[name + "_codes"], arrays[name + "_counts"] = table.codes, table.counts
        return settings, arrays

    @classmethod
    def from_state(cls, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> RequestModel:
        """The model `to_state` described."""
        model = cls(
            fpr=settings["fpr"],
            holdout=settings["holdout"],
            seed=settings["seed"],
            max_term=settings["max_term"],
            weights=settings["weights"],
            folds=settings["folds"],
            quantile=settings["quantile"],
            temperature=settings["temperature"],
        )
        model.threshold_ = float(settings["threshold"])
        model.endpoint_new_ = float(settings["endpoint_new"])
        model.traversal_rate_ = float(settings["traversal_rate"])
        for name in _STRING_LISTS:
            setattr(model, name + "_", [str(s) for s in json.loads(str(arrays[name]))])
        for name in _ARRAYS:
            setattr(model, name + "_", np.asarray(arrays[name]))
        for name in _TABLES:
            setattr(model, name + "_", _Table(arrays[name + "_codes"], arrays[name + "_counts"]))
        model._index = _Lookup(model.keys_)
        model._endpoint_index = _Lookup(model.endpoints_)
        model._route_index = _Lookup(model.routes_)
        model._path_index = _Lookup(model.paths_)
        model._sets = _Lookup(model.sets_)
        model._orders = _Lookup(model.orders_)
        model._values = set(model.values_)
        return model

    def save(self, path: Path) -> None:
        """Write the model as one `.npz` of plain arrays and a JSON string (no pickle)."""
        settings, arrays = self.to_state()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, settings=np.array(json.dumps(settings)), **arrays)

    @classmethod
    def load(cls, path: Path) -> RequestModel:
        """Read a model `save` wrote; no pickled objects are accepted."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name != "settings"}
            return cls.from_state(json.loads(str(data["settings"])), arrays)


_STRING_LISTS = ("keys", "endpoints", "routes", "paths", "sets", "orders", "values")
_ARRAYS = (
    "endpoint_counts",
    "method_new",
    "path_new",
    "body_mean",
    "body_var",
    "body_all",
    "repeat_rate",
    "key_endpoint",
    "presence_weight",
    "presence_base",
    "param_new",
    "order_new",
    "n",
    "len_mean",
    "len_var",
    "length_new",
    "value_new",
    "char_new",
    "gram_new",
    "global_new",
    "shape_new",
    "mask_new",
    "numeric",
    "num_mean",
    "num_var",
    "icd",
    "param_offset",
    "request_offset",
)
_TABLES = ("chars", "grams", "shapes", "global_grams", "masks", "lengths")


# ---------------------------------------------------------------------------- helpers


def threshold_at(normal_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold (score >= threshold flags) that flags at most `fpr` of
    `normal_scores`; both levels' models set theirs with it."""
    scores = np.sort(np.asarray(normal_scores, dtype=np.float64))
    allowed = math.floor(fpr * len(scores))
    if allowed >= len(scores):
        return float(scores[0]) if len(scores) else math.inf
    return float(np.nextafter(scores[len(scores) - 1 - allowed], math.inf))


def _softmax_weights(total: np.ndarray, req: np.ndarray, n: int, temperature: float) -> np.ndarray:
    """Each row's weight in its request: a softmax of the rows' surprisals per request."""
    if not len(total):
        return total
    # one shift for all rows: surprisals are capped, so no request's exponentials all vanish
    scaled = np.exp((total - total.max()) / max(temperature, 1e-6))
    return scaled / np.bincount(req, weights=scaled, minlength=n)[req]


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    """Parameter-row values followed by zeros for the path rows."""
    return np.concatenate([np.asarray(values, dtype=float), np.zeros(n)])


def _key_values(keys: np.ndarray, values: Sequence[str]) -> list[str]:
    """`"<key id> <value>"` strings: a value as the set of known values holds it."""
    return [f"{k}{SEP}{v}" for k, v in zip(keys.tolist(), values, strict=True)]


def _masks(chars: _Chars, n: int) -> np.ndarray:
    """Each value's structural type: the bit set of the character classes it contains."""
    classes = len(CLASS_NAMES)
    if not len(chars.codes):
        return np.zeros(n, dtype=np.int64)
    present = np.bincount(chars.owner * classes + CHAR_CLASS[chars.codes], minlength=n * classes)
    return (present.reshape(n, classes) > 0) @ (1 << np.arange(classes, dtype=np.int64))


def _numbers(values: Sequence[str], masks: np.ndarray) -> np.ndarray:
    """The value as a number where it looks like one (digits, dots, dashes only), else NaN."""
    digits = 1 << 0
    allowed = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 10)
    classes = masks & ((1 << len(CLASS_NAMES)) - 1)
    candidate = ((classes & digits) > 0) & ((classes & ~allowed) == 0)
    out = np.full(len(values), np.nan)
    index = np.flatnonzero(candidate)
    if len(index):
        out[index] = [_number(values[i]) for i in index.tolist()]
    return out


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "1-2", "1/2", "1,5"
        return math.nan


class _Lookup:
    """The position of each string in a list, -1 when absent (a dict: cheaper than a pandas
    index for the small batches of serving)."""

    def __init__(self, items: Sequence[str]) -> None:
        self.position: dict[str, int] = {}
        for i, item in enumerate(items):
            self.position.setdefault(item, i)

    def get_indexer(self, items: Sequence[str]) -> np.ndarray:
        get = self.position.get
        return np.array([get(x, -1) for x in items], dtype=np.int64)

    def __contains__(self, item: str) -> bool:
        return item in self.position

    def __len__(self) -> int:
        return len(self.position)


def _factorize(items: Sequence[str]) -> np.ndarray:
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(x, len(codes)) for x in items], dtype=np.int64)


def _first(req: np.ndarray, label: np.ndarray) -> np.ndarray:
    """True for the first row of each (request, label) pair."""
    if len(req) <= 64:  # a request or two: a set is cheaper than a sort
        seen: set[tuple[int, int]] = set()
        firsts = []
        for pair in zip(req.tolist(), label.tolist(), strict=True):
            firsts.append(pair not in seen)
            seen.add(pair)
        return np.array(firsts, dtype=bool)
    out = np.zeros(len(req), dtype=bool)
    code = req * (int(label.max()) + 2) + label + 1
    out[np.unique(code, return_index=True)[1]] = True
    return out


BLOCK = 100  # without clients, neighbouring requests (a GET and its POST twin) stay together


def _groups(frame: pd.DataFrame) -> np.ndarray:
    """A group per request for splits: its client (address + user agent) when the frame has
    enough of them, else its block of `BLOCK` neighbouring rows."""
    n = len(frame)
    if {"client_ip", "user_agent"} <= set(frame.columns):
        clients = frame["client_ip"].astype(str) + SEP + frame["user_agent"].astype(str)
        codes, uniques = pd.factorize(clients)
        if len(uniques) >= 20:
            return codes.astype(np.int64)
    return np.arange(n, dtype=np.int64) // BLOCK


def _split(groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """True for the requests of a random `share` of the groups (never all of them)."""
    if share <= 0 or not len(groups):
        return np.zeros(len(groups), dtype=bool)
    codes, uniques = pd.factorize(groups)
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(uniques)) < share
    if chosen.all():
        chosen[0] = False
    if not chosen.any() and len(uniques) > 1:
        chosen[rng.integers(len(uniques))] = True
    return chosen[codes]


def _request_feature(term: str) -> str:
    return {"presence": "parameters", "order": "parameters", "body": "body"}.get(term, term)


def _request_problem(model: RequestModel, term: str, batch: _Batch, i: int) -> str:
    e = str(batch.endpoint[i])
    if term == "endpoint":
        return f"endpoint {e} never seen"
    if term == "method":
        return f"method {batch.method[i]} never seen on {batch.route[i]}"
    if term == "path":
        return f"path {batch.path_key[i]} never seen on {e}"
    if term == "traversal":
        return "path has dot-dot segments, encoded dots or slashes, NULs or backslashes"
    if term == "presence":
        return "parameters missing or unusual: " + _presence_detail(model, batch, i)
    if term == "order":
        return "parameters in an order never seen: " + str(batch.names_order[i]).replace(SEP, ", ")
    e_id = model._endpoint_index.get_indexer([e])[0]
    mean = model.body_mean_[e_id] if e_id >= 0 else model.body_all_[0]
    return f"body of {batch.body_len[i]} characters, usually {mean:.0f}"


def _presence_detail(model: RequestModel, batch: _Batch, i: int) -> str:
    e = str(batch.endpoint[i])
    present = set(str(batch.names_set[i]).split(SEP))
    e_id = model._endpoint_index.get_indexer([e])[0]
    missing = [
        key.split(SEP, 1)[1]
        for j, key in enumerate(model.keys_)
        if model.key_endpoint_[j] == e_id
        and model.presence_weight_[j] < 0
        and key.split(SEP, 1)[1] not in present
    ]
    return "missing " + ", ".join(missing[:5]) if missing else "a set of parameters never seen"


JSON_KINDS = ["", "JSON string", "JSON number", "JSON true/false/null"]


def _describe_mask(mask: int) -> str:
    classes = [name for bit, name in enumerate(CLASS_NAMES) if mask >> bit & 1]
    kind = JSON_KINDS[mask >> len(CLASS_NAMES) & 3]
    text = ", ".join(classes) or "empty"
    return f"{kind} of {text}" if kind else text


def _value_problem(model: RequestModel, term: str, key: int, value: str, kind: int) -> str:
    """What was wrong with one value, in words (computed for explanations only)."""
    if term == "unknown":
        return "parameter never seen on this endpoint"
    if term == "repeated":
        return "parameter repeated"
    if term == "value":
        return f"value {value[:40]!r} never seen"
    if term == "new_length":
        return f"length {len(value)} never seen in it"
    if term == "length":
        mean, sd = model.len_mean_[key], math.sqrt(model.len_var_[key])
        return f"length {len(value)}, usually {mean:.0f} ± {sd:.0f}"
    if term == "number":
        sd = math.sqrt(model.num_var_[key])
        return f"number {value[:20]} far from the usual {model.num_mean_[key]:.4g} ± {sd:.2g}"
    chars = _encode([value])
    if term == "chars":
        new = model.chars_.get((key << CHAR_BITS) | chars.codes) == 0
        seen = sorted({value[i] for i in np.flatnonzero(new) if i < len(value)})
        return "characters never seen in it: " + " ".join(repr(c) for c in seen[:8])
    if term in ("grams", "shapes", "global"):
        codes = chars.shapes if term == "shapes" else chars.grams
        table = {"grams": model.grams_, "shapes": model.shapes_, "global": model.global_grams_}
        lookup = codes if term == "global" else (key << GRAM_BITS) | codes
        new = np.flatnonzero(table[term].get(lookup) == 0)
        distinct = list(dict.fromkeys(_gram_text(int(codes[i])) for i in new[:200]))
        shown = ", ".join(repr(gram) for gram in distinct[:4])
        where = "in any value" if term == "global" else "in it"
        what = "character patterns" if term == "shapes" else "character sequences"
        return f"{len(new)} {what} never seen {where}: {shown}"
    if term == "type":
        mask = int(_masks(chars, 1)[0]) | (kind << len(CLASS_NAMES))
        mine = (model.masks_.codes >> MASK_BITS) == key
        codes, counts = model.masks_.codes[mine], model.masks_.counts[mine]
        usual = "nothing"
        if len(codes):
            usual = _describe_mask(int(codes[np.argmax(counts)] & ((1 << MASK_BITS) - 1)))
        return f"a value of {_describe_mask(mask)}, usually {usual}"
    return "unusual character distribution"


def _gram_text(code: int) -> str:
    """A 3-gram code as text, `^` and `$` for the value's ends."""
    out = []
    for shift in (2 * CHAR_BITS, CHAR_BITS, 0):
        c = code >> shift & ((1 << CHAR_BITS) - 1)
        out.append("^$"[len(out) // 2] if c == BOUNDARY else "\u0100" if c == OTHER else chr(c))
    return "".join(out)


# ---------------------------------------------------------------------------- supervised

# Types of the fitted pipeline that skops does not trust by default; loading trusts these only.
SUPERVISED_TRUSTED: tuple[str, ...] = ()


def request_text(frame: pd.DataFrame) -> list[str]:
    """What the supervised model reads: `METHOD /decoded/path ? name=value&...` per request,
    with every parameter percent-decoded (as `logformat.params` decodes it)."""
    batch = explode(frame)
    pairs: list[list[str]] = [[] for _ in range(batch.n)]
    for i, name, value in zip(batch.req.tolist(), batch.name, batch.value, strict=True):
        pairs[i].append(f"{name}={value}")
    return [
        f"{method} {path} ? {'&'.join(items)}"
        for method, path, items in zip(batch.method, batch.path, pairs, strict=True)
    ]


class SupervisedRequestModel:
    """The labelled comparison: TF-IDF of character 1-3-grams of `request_text` and a logistic
    regression with balanced class weights; it flags an attack probability of 0.5 or more.

    Args:
        c: the logistic regression's `C` (inverse regularisation).
        ngram_max: the longest character n-gram.
        min_df: n-grams seen in fewer requests are dropped.
        balanced: weigh the classes inversely to their counts; normal requests usually far
            outnumber attacks, which otherwise pulls the 0.5 threshold toward missing them.
        seed: the solver's seed.
    """

    def __init__(
        self,
        c: float = 10.0,
        ngram_max: int = 3,
        min_df: int = 2,
        balanced: bool = True,
        seed: int = 0,
    ) -> None:
        self.c = c
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.balanced = balanced
        self.seed = seed

    def _pipeline(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        return Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(
                        analyzer="char",
                        ngram_range=(1, self.ngram_max),
                        min_df=self.min_df,
                        lowercase=False,
                        sublinear_tf=True,
                        dtype=np.float32,
                    ),
                ),
                (
                    "logistic",
                    LogisticRegression(
                        C=self.c,
                        class_weight="balanced" if self.balanced else None,
                        max_iter=2000,
                        random_state=self.seed,
                    ),
                ),
            ]
        )

    def fit(self, frame: pd.DataFrame, is_attack: np.ndarray) -> SupervisedRequestModel:
        """Fit on labelled requests (`is_attack` true for an attack)."""
        labels = np.asarray(is_attack).astype(int)
        if len(np.unique(labels)) < 2:
            raise ValueError("the supervised model needs both normal and attack requests")
        self.pipeline_ = self._pipeline().fit(request_text(frame), labels)
        self.threshold_ = 0.5
        return self

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The probability that each request is an attack."""
        return self.pipeline_.predict_proba(request_text(frame))[:, 1]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """True where the attack probability is at or above the threshold."""
        return self.score(frame) >= self.threshold_

    def save(self, path: Path) -> None:
        """Write the fitted pipeline with skops (no pickle) and the settings as JSON beside it."""
        import skops.io

        path.parent.mkdir(parents=True, exist_ok=True)
        skops.io.dump(self.pipeline_, path)
        settings = {"c": self.c, "ngram_max": self.ngram_max, "min_df": self.min_df}
        settings |= {"balanced": self.balanced, "seed": self.seed, "threshold": self.threshold_}
        path.with_suffix(".json").write_text(json.dumps(settings))

    @classmethod
    def load(cls, path: Path) -> SupervisedRequestModel:
        """Read what `save` wrote, trusting only scikit-learn's types and `SUPERVISED_TRUSTED`."""
        import skops.io

        settings = json.loads(path.with_suffix(".json").read_text())
        model = cls(
            settings["c"],
            settings["ngram_max"],
            settings["min_df"],
            settings["balanced"],
            settings["seed"],
        )
        untrusted = set(skops.io.get_untrusted_types(file=path)) - set(SUPERVISED_TRUSTED)
        if untrusted:
            raise ValueError(f"{path} needs types not on the allow-list: {sorted(untrusted)}")
        model.pipeline_ = skops.io.load(path, trusted=list(SUPERVISED_TRUSTED))
        model.threshold_ = float(settings["threshold"])
        return model
