"""The log anomaly detector as an MLflow pyfunc, logged as code (MLflow's "models from code").

MLflow copies this file into the logged model and runs it when the model is loaded, so loading
unpickles nothing: the state is the `.npz` artifact that `Detector.load` reads. The file must
end with `set_model`, which is how MLflow finds the model object.

`predict` takes a DataFrame of `block_id` and `events` (space-separated event ids) and returns a
verdict per session; raw lines go through the unwrapped model:
`pyfunc.unwrap_python_model().detector.score_lines(lines)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from projects.anomaly.config import MODEL_ARTIFACT
from projects.anomaly.model import Detector


class DetectorModel(PythonModel):
    """Scores sessions with the `Detector` in the model's artifact."""

    detector: Detector

    def load_context(self, context: PythonModelContext) -> None:
        self.detector = Detector.load(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """A verdict per (`block_id`, `events`) row of `model_input`."""
        events = [str(text).split() for text in model_input["events"]]
        scored = self.detector.score_sessions(list(map(str, model_input["block_id"])), events)
        return pd.DataFrame(
            {
                "block_id": [s.block_id for s in scored],
                "score": [s.score for s in scored],
                "threshold": self.detector.threshold,
                "is_anomaly": [s.is_anomaly for s in scored],
                "unknown_events": [s.unknown_events for s in scored],
            }
        )


mlflow.models.set_model(DetectorModel())
