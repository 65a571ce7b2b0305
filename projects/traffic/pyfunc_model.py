"""The request pattern analyzer as an MLflow pyfunc, logged as code (MLflow's "models from code").

MLflow copies this file into the logged model and runs it when the model is loaded, so loading
unpickles nothing: the state is the `.npz` artifact that `Analyzer.load` reads. The file must
end with `set_model`, which is how MLflow finds the model object.

`predict` takes a DataFrame with a `log_line` column of access-log lines (Combined Log Format,
optionally with the request body as a last field; the logged signature) and returns a verdict
per request. The unwrapped model (`pyfunc.unwrap_python_model()`) also takes the parsed columns
of `projects.traffic.logformat.COLUMNS`, and its analyzer gives the client verdicts:
`.analyzer.analyze(frame).clients`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from projects.traffic.analyzer import Analyzer
from projects.traffic.config import MODEL_ARTIFACT
from projects.traffic.logformat import read_lines

RAW = "log_line"


def parsed(model_input: pd.DataFrame) -> pd.DataFrame:
    """The parsed requests of a pyfunc input: its `log_line`s parsed (lines that do not parse
    are left out), or the input itself when it holds parsed columns."""
    if RAW in model_input:
        return read_lines(model_input[RAW].astype(str).tolist(), source="input").frame
    return model_input


class AnalyzerModel(PythonModel):
    """Scores requests and client sessions with the `Analyzer` in the model's artifact."""

    analyzer: Analyzer

    def load_context(self, context: PythonModelContext) -> None:
        self.analyzer = Analyzer.load(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """A verdict per request of `model_input` (see the module's docstring)."""
        verdicts = self.analyzer.analyze(parsed(model_input)).requests
        return pd.DataFrame(
            {
                "line": verdicts["line"].astype("int64"),
                "score": verdicts["score"].astype(float),
                "threshold": verdicts["threshold"].astype(float),
                "flagged": verdicts["flagged"].astype(bool),
                "reasons": ["; ".join(reasons) for reasons in verdicts["reasons"]],
            }
        )


mlflow.models.set_model(AnalyzerModel())
