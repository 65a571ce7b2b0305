"""The README's Python example runs against the champions that `make repro` registers."""

from __future__ import annotations

import sys

import pytest

from tests.code.test_readme import readme_python
from tests.repo_copy import run_in

pytestmark = pytest.mark.e2e


def test_the_readme_example_loads_every_champion(repo) -> None:
    root, env = repo
    run_in(root, env, "make", "--no-print-directory", "repro")  # whatever has not run yet
    script = readme_python() + (
        "\nprint(model.predict(__import__('pandas').DataFrame({'text': ['hi']})))"
        "\nprint(recommender.recommend(user_id=1, k=5).cold_start)"
        "\nprint(recommender.similar_items(item_id=50, k=5)[0].title)"
    )
    tracking = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    done = run_in(root, env | tracking, sys.executable, "-c", script)
    spam, cold_start, similar = done.stdout.strip().splitlines()[-3:]
    assert "ham" in spam
    assert cold_start == "False"
    assert "(19" in similar  # a title with its year
