"""Typed access to `params.yaml`: each project declares a pydantic model of its section."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from projects.core.cli import StageError
from projects.core.paths import PARAMS_FILE


class Params(BaseModel):
    """Base for params sections: unknown keys and wrong types are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


P = TypeVar("P", bound=Params)


def _describe(error: dict, section: str) -> str:
    key = ".".join([section, *(str(part) for part in error["loc"])])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: missing"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def load_params(section: str, model: type[P], path: Path = PARAMS_FILE) -> P:
    """Read `section` of the params file and check it against `model`.

    Raises:
        StageError: naming every unknown, missing or mistyped key.
    """
    try:
        with path.open() as f:
            document = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StageError(f"{path.name}: cannot read it: {exc}") from exc
    if not isinstance(document, dict) or section not in document:
        raise StageError(f"{path.name}: no '{section}' section")
    try:
        return model.model_validate(document[section])
    except ValidationError as exc:
        problems = "; ".join(_describe(e, section) for e in exc.errors())
        raise StageError(f"{path.name}: {problems}") from None
