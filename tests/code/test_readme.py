"""The README's commands name real make targets and real params, so they cannot go stale."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from projects.core import paths

README = (paths.ROOT / "README.md").read_text()


def _make_targets() -> set[str]:
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=paths.ROOT, capture_output=True, text=True
    ).stdout
    return set(re.findall(r"^\s+(?:\x1b\[\d+m)?([\w-]+)", listed, flags=re.M))


@pytest.mark.parametrize("target", sorted(set(re.findall(r"`make ([\w-]+)", README))))
def test_every_make_target_in_the_readme_exists(target: str) -> None:
    assert target in _make_targets()


@pytest.mark.parametrize("key", sorted(set(re.findall(r"-S '?([\w.]+)=", README))))
def test_every_param_in_the_readme_exists(key: str) -> None:
    node = yaml.safe_load(paths.PARAMS_FILE.read_text())
    for part in key.split("."):
        assert isinstance(node, dict) and part in node, f"{key} is not in params.yaml"
        node = node[part]


def readme_python() -> str:
    """The README's Python example (the one block fenced as python)."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]
