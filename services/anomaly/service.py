"""`POST /score` and `POST /score_lines`: anomaly verdicts for HDFS block sessions, from the
pinned log-anomaly-detector champion.

Run this service alone: `bentoml serve services.anomaly.service:LogAnomalyDetector --port 3003`
(after `python -m services.pin`; `make serve` does both for every service).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, Field

from projects.anomaly import config
from services.common import Champion, ModelService, add_middleware, read_pinned, service_options

PINNED = read_pinned(config.NAME)
MAX_SESSIONS = 1000
MAX_EVENTS = 10_000
MAX_LINES = 10_000
MAX_LINE = 10_000
EventId = Annotated[str, Field(pattern=r"^E[0-9]{1,6}$")]
Explain = Annotated[
    bool, Field(strict=True, description="Also return the events that drove each score.")
]
EXAMPLE_LINE = (
    "081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906"
    " src: /10.250.19.102:54106 dest: /10.250.19.102:50010"
)


class Session(BaseModel):
    block_id: str = Field(min_length=1, max_length=64, examples=["blk_-1608999687919862906"])
    events: list[EventId] = Field(
        min_length=1,
        max_length=MAX_EVENTS,
        description="The block's event ids in log order, e.g. E5; ids the model does not know "
        "are counted as unknown.",
        examples=[["E1", "E2", "E2", "E2", "E3", "E3", "E3", "E4", "E4", "E4", "E5", "E5", "E5"]],
    )


class EventShare(BaseModel):
    event: str
    template: str = Field(description="The event's template, or '(unknown event)'.")
    count: int = Field(description="How often the session has the event.")
    share: float = Field(description="Share of the score; shares of all events sum to 1.")


class Verdict(BaseModel):
    prediction_id: str = Field(description="Refer to this prediction in feedback.")
    block_id: str
    score: float = Field(description="Squared residual off the normal subspace (SPE).")
    threshold: float = Field(description="Scores at or above it are anomalies.")
    is_anomaly: bool
    n_events: int
    unknown_events: int = Field(description="Events the model's templates do not know.")
    explanation: list[EventShare] | None = Field(
        default=None, description="With `explain`: the events that contributed most."
    )


class Scores(BaseModel):
    sessions: list[Verdict] = Field(description="One verdict per session, in request order.")
    model_version: str = Field(description="The registered model version that answered.")


class ParsedLines(BaseModel):
    lines: int = Field(
        description="Non-blank lines received. When none names a block, `sessions` is empty "
        "and these counts say why."
    )
    malformed: int = Field(description="Lines not in the HDFS log format; not scored.")
    unknown: int = Field(description="Lines no template matched; counted as unknown events.")
    without_block: int = Field(description="Lines that name no block; not scored.")


class LineScores(Scores):
    parsed: ParsedLines


# up to this many events (or lines), without explanations, a request is scored on the event loop
INLINE_EVENTS = 200


@bentoml.service(**service_options(config.NAME, PINNED, config.PORT, ["/score", "/score_lines"]))
class LogAnomalyDetector(ModelService):
    """The `log-anomaly-detector` champion, pinned when the service was built."""

    project, pinned = config.NAME, PINNED
    bento_model = bentoml.models.BentoModel(PINNED["tag"])

    def load(self, stored: Any) -> Any:
        from projects.anomaly.config import MODEL_ARTIFACT
        from projects.anomaly.model import Detector

        return Detector.load(stored.path_of(f"mlflow_model/artifacts/{MODEL_ARTIFACT}.npz"))

    def _verdicts(
        self,
        route: str,
        start: float,
        blocks: Sequence[str],
        events: Sequence[list[str]],
        explain: bool,
        champion: Champion,
    ) -> list[Verdict]:
        """Score the sessions with `champion`, explain them if asked, and log a record for
        each."""
        detector = champion.model
        scored = detector.score_sessions(blocks, events)
        request_id = self.new_request()
        verdicts = [
            Verdict(
                prediction_id=f"{request_id}-{i}",
                block_id=s.block_id,
                score=s.score,
                threshold=detector.threshold,
                is_anomaly=s.is_anomaly,
                n_events=len(session),
                unknown_events=s.unknown_events,
            )
            for i, (s, session) in enumerate(zip(scored, events, strict=True))
        ]
        if explain:
            for verdict, session in zip(verdicts, events, strict=True):
                verdict.explanation = [
                    EventShare(event=e.event, template=e.template, count=e.count, share=e.share)
                    for e in detector.explain(session)
                ]
        self.record(
            route,
            start,
            (
                {"prediction_id": v.prediction_id, "block_id": v.block_id,
                 "events": " ".join(session), "n_events": v.n_events,
                 "unknown_events": v.unknown_events, "score": v.score, "threshold": v.threshold,
                 "is_anomaly": v.is_anomaly}
                for v, session in zip(verdicts, events, strict=True)
            ),
            request_id,
            champion,
        )  # fmt: skip
        return verdicts

    @bentoml.api
    async def score(
        self,
        sessions: Annotated[
            list[Session],
            Field(min_length=1, max_length=MAX_SESSIONS, description="Sessions, one per block."),
        ],
        explain: Explain = False,
    ) -> Scores:
        """Score sessions given as event ids."""
        inline = not explain and sum(len(s.events) for s in sessions) <= INLINE_EVENTS
        return await self.compute(inline, self._score, sessions, explain)

    def _score(self, sessions: list[Session], explain: bool) -> Scores:
        start = time.perf_counter()
        blocks, events = [s.block_id for s in sessions], [s.events for s in sessions]
        champion = self.champion  # one model answers the whole request, even across a switch
        verdicts = self._verdicts("score", start, blocks, events, explain, champion)
        return Scores(sessions=verdicts, model_version=champion.version)

    @bentoml.api
    async def score_lines(
        self,
        lines: Annotated[
            list[Annotated[str, Field(max_length=MAX_LINE)]],
            Field(
                min_length=1,
                max_length=MAX_LINES,
                description="Raw HDFS log lines; they are parsed with the model's own templates "
                "and grouped by block.",
                examples=[[EXAMPLE_LINE]],
            ),
        ],
        explain: Explain = False,
    ) -> LineScores:
        """Parse raw log lines, group them by block, and score each block."""
        inline = not explain and len(lines) <= INLINE_EVENTS
        return await self.compute(inline, self._score_lines, lines, explain)

    def _score_lines(self, lines: list[str], explain: bool) -> LineScores:
        from projects.anomaly.parsing import sessions

        start, champion = time.perf_counter(), self.champion
        grouped, stats = sessions(lines, champion.model.templates)
        parsed = ParsedLines(
            lines=stats.lines,
            malformed=stats.malformed,
            unknown=stats.unknown,
            without_block=stats.without_block,
        )
        # no line naming a block is an answer, not an error: the counts say what was sent
        verdicts = self._verdicts(
            "score_lines", start, list(grouped), list(grouped.values()), explain, champion
        )
        return LineScores(sessions=verdicts, parsed=parsed, model_version=champion.version)


add_middleware(LogAnomalyDetector, config.NAME)
