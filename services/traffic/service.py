"""`POST /analyze`: verdicts on HTTP requests and on the clients that sent them, from the pinned
request-pattern-analyzer champion.

The requests come as access-log lines (the Combined or Common Log Format, optionally with the
request body as a last quoted field, as nginx logs `$request_body`) or as structured requests.
Each request gets a score, a flag and, when flagged, its reasons; so does each client session in
the batch (an address with a user agent, split after 30 minutes without a request). Lines that
are not access-log lines are counted and named, not fatal.

Run this service alone: `bentoml serve services.traffic.service:RequestPatternAnalyzer --port 3004`
(after `python -m services.pin`; `make serve` does both for every service).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from projects.traffic import config
from services.common import ModelService, add_middleware, read_pinned, service_options
from services.traffic import EXAMPLE_LINES, EXAMPLE_REQUESTS

PINNED = read_pinned(config.NAME)
MAX_REQUESTS = 10_000
# Over-long values are one of the attacks to catch, so a line has room for nginx's largest
# logged body (its 16 KiB body buffer), escaped; the 1 MiB body limit bounds the batch.
MAX_LINE = 65_536
MAX_FIELD = MAX_LINE  # a structured request's path, query, body, referrer or user agent
MAX_UNPARSED_SHOWN = 20
LATEST = 253_402_300_799  # 9999-12-31T23:59:59Z in epoch seconds

Line = Annotated[str, Field(max_length=MAX_LINE)]
# Whitespace is spelt out: `\s` means other characters in Python, in Rust (pydantic's regex
# engine) and in JavaScript (JSON Schema's), so a client's check and ours would disagree.
SPACE = r" \t\n\r\f\v"
TIME_FORMS = "give epoch seconds or an ISO 8601 time, such as 2024-03-11T10:15:32Z"
TIME_RANGE = "time_range"
TIME_RANGE_MESSAGE = "the time must be between 1970 and 9999 (epoch seconds 0..{latest})"
LEAP_SECOND = re.compile(r"(T\d{2}:\d{2}):60")


def _epoch(value: object) -> float:
    """Epoch seconds of epoch seconds (0 to the end of 9999) or of an ISO 8601 time written in
    the years 1970 to 9999 (UTC when it names no zone)."""
    if isinstance(value, str):
        # RFC 3339, which JSON Schema's date-time is, allows a lower-case `t` and `z` and a
        # leap second, which Python's parser does not
        written = LEAP_SECOND.sub(r"\1:59", value.upper())
        try:
            parsed = dt.datetime.fromisoformat(written)
        except ValueError:
            raise PydanticCustomError("time_type", TIME_FORMS) from None
        if parsed.year < 1970:  # as written: its zone may put it hours before the epoch
            raise PydanticCustomError(TIME_RANGE, TIME_RANGE_MESSAGE, {"latest": LATEST})
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("time_type", TIME_FORMS)
    if not 0 <= value <= LATEST:  # NaN is refused too
        raise PydanticCustomError(TIME_RANGE, TIME_RANGE_MESSAGE, {"latest": LATEST})
    return float(value)


# one validator for both forms, so that a bad time is one error at `time`; the schema states
# the range: epoch seconds from 0, or a time written in the years 1970 to 9999
Time = Annotated[
    float,
    PlainValidator(_epoch),
    WithJsonSchema({"anyOf": [
        {"type": "number", "minimum": 0, "maximum": LATEST},
        {"type": "string", "format": "date-time", "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-"},
    ]}),
]  # fmt: skip


class ApiRequest(BaseModel):
    """One HTTP request, with what an access-log line records of it."""

    # a misspelt optional field would otherwise be dropped silently and take its default
    model_config = ConfigDict(extra="forbid")

    client_ip: str = Field(
        min_length=1,
        max_length=255,
        pattern=rf"^[^{SPACE}]+$",
        description="The client's address, the log's first field; with `user_agent`, it names "
        "the client.",
        examples=["203.0.113.7"],
    )
    time: Time = Field(
        description="When it arrived: epoch seconds, or ISO 8601 (UTC when no zone is given).",
        examples=["2024-03-11T10:15:32Z", 1710152132],
    )
    method: str = Field(
        default="GET", min_length=1, max_length=32, pattern=r"^[A-Za-z][A-Za-z_-]*$",
        examples=["GET"],
    )  # fmt: skip
    path: str = Field(
        min_length=1,
        max_length=MAX_FIELD,
        pattern=rf"^/[^?#{SPACE}]*$",
        description="The path as sent (percent-encoded), without the query string.",
        examples=["/api/v1/products"],
    )
    query: str = Field(
        default="",
        max_length=MAX_FIELD,
        pattern=rf"^([^?#{SPACE}][^#{SPACE}]*)?$",
        description="The query string as sent (percent-encoded), without the `?`.",
        examples=["category=books&page=2"],
    )
    body: str = Field(
        default="",
        max_length=MAX_FIELD,
        description="The request body as text: JSON, a form, or anything else.",
        examples=['{"product_id":1042,"quantity":1}'],
    )
    status: int = Field(
        default=200, strict=True, ge=100, le=599, description="The status it was answered with."
    )
    bytes: int = Field(
        default=0, strict=True, ge=0, le=2**53, description="The size of the answer's body."
    )
    referrer: str = Field(default="-", max_length=MAX_FIELD, description="`-` for none.")
    user_agent: str = Field(
        default="-", max_length=MAX_FIELD, description="The User-Agent header; `-` for none."
    )


class Batch(BaseModel):
    """The body of `POST /analyze`: `lines` or `requests`, and `explain`."""

    model_config = ConfigDict(
        # named as the other services' inputs are, in the errors and the OpenAPI page
        title="Input",
        json_schema_extra={
            # the OpenAPI page's example body: one of the two fields, as the route wants
            "example": {"lines": EXAMPLE_LINES},
            # and the schema says so, for clients and contract tests
            "oneOf": [{"required": ["lines"]}, {"required": ["requests"]}],
        },
    )

    lines: list[Line] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REQUESTS,
        description=f"1..{MAX_REQUESTS:,} access-log lines of at most {MAX_LINE:,} characters: "
        "the Combined or Common Log Format, optionally with the request body as a last quoted "
        "field (as nginx logs `$request_body`). Send this or `requests`.",
        examples=[EXAMPLE_LINES],
    )
    requests: list[ApiRequest] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REQUESTS,
        validate_default=True,  # so that a body with neither field is refused here too
        description=f"1..{MAX_REQUESTS:,} structured requests. Send this or `lines`.",
        examples=[EXAMPLE_REQUESTS],
    )
    explain: bool = Field(
        default=True,
        strict=True,
        description="Also say why each flagged request and session is flagged.",
    )

    @model_validator(mode="before")
    @classmethod
    def no_nulls(cls, data: Any) -> Any:
        """A field that is sent is a list: `null` is refused, as the schema says (leave the
        field out instead)."""
        if isinstance(data, dict):
            for name in ("lines", "requests"):
                if name in data and data[name] is None:
                    raise PydanticCustomError(
                        "null_field", "{name}: null is not a list; leave the field out instead",
                        {"name": name},
                    )  # fmt: skip
        return data

    @field_validator("requests")
    @classmethod
    def one_of(
        cls, requests: list[ApiRequest] | None, info: ValidationInfo
    ) -> list[ApiRequest] | None:
        """`lines` or `requests`, not both and not neither (when `lines` is itself invalid, its
        own error says so and this check is left out)."""
        if "lines" in info.data and (info.data["lines"] is None) == (requests is None):
            raise PydanticCustomError(
                "lines_or_requests",
                "send either `lines` (access-log lines) or `requests` (structured "
                "requests){detail}",
                {"detail": ", not both" if requests is not None else ""},
            )
        return requests


class RequestVerdict(BaseModel):
    prediction_id: str = Field(description="Refer to this prediction in feedback.")
    line: int = Field(
        description="Where the request is in the batch, from 1: its line in `lines` (blank "
        "lines count), or its place in `requests`."
    )
    client_ip: str
    method: str
    path: str
    endpoint: str = Field(
        description="The route the model knows it by, ids and asset names templated: "
        "`GET /api/v1/products/{id}`."
    )
    score: float = Field(description="How far it strays from normal requests; higher is odder.")
    threshold: float = Field(description="Scores above it are flagged.")
    flagged: bool
    reasons: list[str] = Field(
        description="With `explain`, for a flagged request: the parameters or features that "
        "moved its score most, with their share of it; otherwise empty."
    )


class ClientVerdict(BaseModel):
    client_ip: str
    user_agent: str
    start: dt.datetime = Field(description="The session's first request in the batch (UTC).")
    end: dt.datetime = Field(description="The session's last request in the batch (UTC).")
    requests: int = Field(description="The session's requests in the batch.")
    score: float = Field(
        description="How far the session's behaviour is from the nearest normal session; "
        "higher is more abusive."
    )
    threshold: float = Field(description="Scores at or above it are flagged.")
    flagged: bool
    reasons: list[str] = Field(
        description="With `explain`, for a flagged session: the features that set it furthest "
        "apart from normal sessions, e.g. `status_401=0.5 (above normal 0, z=13.5)`; otherwise "
        "empty."
    )


class UnparsedLine(BaseModel):
    line: int = Field(description="Its place in `lines`, from 1.")
    reason: str = Field(description="Why it is not an access-log line.")


class Parsing(BaseModel):
    lines: int = Field(
        description="Non-blank lines received (with `requests`: requests). When none parses, "
        "`requests` and `clients` are empty and `unparsed_lines` says why."
    )
    parsed: int = Field(description="Requests read and analysed.")
    unparsed: int = Field(description="Lines that are not access-log lines; not analysed.")
    unparsed_lines: list[UnparsedLine] = Field(
        description=f"The first {MAX_UNPARSED_SHOWN} of them, in order."
    )


class Analysis(BaseModel):
    requests: list[RequestVerdict] = Field(description="One verdict per request, in batch order.")
    clients: list[ClientVerdict] = Field(
        description="One verdict per client session in the batch: an address with a user "
        "agent, split after 30 minutes without a request (`traffic.train.idle_minutes`)."
    )
    parsing: Parsing
    model_version: str = Field(description="The registered model version that answered.")


# The analyzer takes about 20 ms even for one request (mostly the client model's pandas work),
# far more than a thread hop costs, so every batch goes to a worker thread, where it does not
# hold up the probes and the requests behind it. Raise this once small batches are cheap.
INLINE_REQUESTS = 0


@bentoml.service(**service_options(config.NAME, PINNED, config.PORT, ["/analyze"]))
class RequestPatternAnalyzer(ModelService):
    """The `request-pattern-analyzer` champion, pinned when the service was built."""

    project, pinned = config.NAME, PINNED
    bento_model = bentoml.models.BentoModel(PINNED["tag"])

    def load(self, stored: Any) -> Any:
        from projects.traffic.analyzer import Analyzer

        return Analyzer.load(
            Path(stored.path_of(f"mlflow_model/artifacts/{config.MODEL_ARTIFACT}.npz"))
        )

    @bentoml.api(input_spec=Batch)
    async def analyze(
        self, lines: list[str] | None, requests: list[ApiRequest] | None, explain: bool
    ) -> Analysis:
        """Score each request of a batch, and each client session in it."""
        size = len(lines) if lines is not None else len(requests or ())
        return await self.compute(size <= INLINE_REQUESTS, self._analyze, lines, requests, explain)

    def _analyze(
        self, lines: list[str] | None, requests: list[ApiRequest] | None, explain: bool
    ) -> Analysis:
        start = time.perf_counter()
        champion = self.champion  # one model answers the whole batch, even across a switch
        if lines is not None:
            frame, received, unparsed = parse_lines(lines)
            parsing = Parsing(
                lines=received,
                parsed=len(frame),
                unparsed=len(unparsed),
                unparsed_lines=unparsed[:MAX_UNPARSED_SHOWN],
            )
        else:
            frame = requests_frame(requests or [])
            parsing = Parsing(lines=len(frame), parsed=len(frame), unparsed=0, unparsed_lines=[])
        if frame.empty:  # nothing to analyse is an answer, not an error: `parsing` says why
            return Analysis(
                requests=[], clients=[], parsing=parsing, model_version=champion.version
            )
        analysis = champion.model.analyze(frame, explain=explain)
        request_id = self.new_request()
        verdicts = request_verdicts(analysis.requests, request_id)
        self.record("analyze", start, records(verdicts, frame), request_id, champion)
        return Analysis(
            requests=verdicts,
            clients=client_verdicts(analysis.clients, explain),
            parsing=parsing,
            model_version=champion.version,
        )


def parse_lines(lines: list[str]) -> tuple[pd.DataFrame, int, list[UnparsedLine]]:
    """The requests of access-log lines, how many lines were not blank, and the lines that were
    not read: those that are not access-log lines, and those dated outside the years 1970 to
    9999, as a structured request may not be either."""
    from projects.traffic.logformat import read_lines

    parsed = read_lines(lines, source="lines")
    frame = parsed.frame
    unparsed = [UnparsedLine(line=b.line, reason=b.reason) for b in parsed.bad]
    outside = ~frame["time"].between(0, LATEST).to_numpy()
    if outside.any():
        unparsed += [
            UnparsedLine(line=n, reason="bad timestamp: before 1970 or after 9999")
            for n in frame["line"][outside].tolist()
        ]
        unparsed.sort(key=lambda u: u.line)
        frame = frame[~outside].reset_index(drop=True)
    return frame, parsed.total, unparsed


def requests_frame(requests: list[ApiRequest]) -> pd.DataFrame:
    """Structured requests as the frame `projects.traffic.logformat.read_lines` makes of lines."""
    from projects.traffic.logformat import COLUMNS

    text = ("client_ip", "method", "path", "query", "body", "referrer", "user_agent")
    frame = pd.DataFrame(
        {
            "line": np.arange(1, len(requests) + 1, dtype=np.int64),
            "user": "-",
            "time": np.array([r.time for r in requests], dtype=np.float64),
            "protocol": "HTTP/1.1",
            "status": np.array([r.status for r in requests], dtype=np.int64),
            "bytes": np.array([r.bytes for r in requests], dtype=np.int64),
            **{
                name: pd.Series([getattr(r, name) for r in requests], dtype=object) for name in text
            },
        }
    )
    return frame[COLUMNS]


def request_verdicts(frame: pd.DataFrame, request_id: str) -> list[RequestVerdict]:
    """The analyzer's request verdicts (`Analysis.requests`), in the service's type."""
    return [
        RequestVerdict(
            prediction_id=f"{request_id}-{i}",
            line=r["line"],
            client_ip=r["client_ip"],
            method=r["method"],
            path=r["path"],
            endpoint=r["endpoint"],
            score=r["score"],
            threshold=r["threshold"],
            flagged=r["flagged"],
            reasons=r["reasons"],
        )
        for i, r in enumerate(frame.to_dict("records"))
    ]


def client_verdicts(frame: pd.DataFrame, explain: bool) -> list[ClientVerdict]:
    """The analyzer's session verdicts (`Analysis.clients`); reasons only for flagged ones."""
    return [
        ClientVerdict(
            client_ip=r["client_ip"],
            user_agent=r["user_agent"],
            start=dt.datetime.fromtimestamp(r["start"], dt.UTC),
            end=dt.datetime.fromtimestamp(r["end"], dt.UTC),
            requests=r["requests"],
            score=r["score"],
            threshold=r["threshold"],
            flagged=r["flagged"],
            reasons=list(r["reasons"]) if explain and r["flagged"] else [],
        )
        for r in frame.to_dict("records")
    ]


def records(verdicts: list[RequestVerdict], frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """One request-log record per verdict, with what monitoring compares with the reference
    (its features computed as the reference's are)."""
    from projects.traffic.reference import request_features

    features = request_features(frame)
    requests = zip(
        verdicts, frame["status"].tolist(), features["query_length"].tolist(),
        features["body_length"].tolist(), features["n_params"].tolist(), strict=True,
    )  # fmt: skip
    for v, status, query_length, body_length, n_params in requests:
        yield {
            "prediction_id": v.prediction_id,
            "line": v.line,
            "client_ip": v.client_ip,
            "method": v.method,
            "endpoint": v.endpoint,
            "status": status,
            "query_length": query_length,
            "body_length": body_length,
            "n_params": n_params,
            "score": v.score,
            "threshold": v.threshold,
            "flagged": v.flagged,
        }


add_middleware(RequestPatternAnalyzer, config.NAME)
