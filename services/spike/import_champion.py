import os, bentoml, mlflow
from projects.core import tracking
mlflow.set_tracking_uri(tracking.tracking_uri())
from mlflow import MlflowClient
v = MlflowClient().get_model_version_by_alias("spam-classifier", "champion")
m = bentoml.mlflow.import_model("spam-classifier", f"models:/spam-classifier/{v.version}", labels={"mlflow_version": str(v.version), "alias": "champion"})
print(m.tag)
