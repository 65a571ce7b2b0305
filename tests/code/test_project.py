"""Projects are found, not named: discovery, the protocol each project implements, and that no
shared module names a project."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from projects.core import paths
from projects.core.cli import StageError
from projects.core.project import Project, choose, discover, get, ports

# The shared layers: they find projects and must name none.
SHARED = [
    *sorted((paths.ROOT / "projects" / "core").glob("*.py")),
    *sorted((paths.ROOT / "services").glob("*.py")),
    *sorted((paths.ROOT / "monitoring").glob("*.py")),
    *sorted((paths.ROOT / "bench").glob("*.py")),
    *sorted((paths.ROOT / "stack").glob("*.py")),
    *sorted((paths.ROOT / "batch").glob("*.py")),
]
# bench-services holds one service against its hand-written FastAPI twin: its subject is that
# service by design (docs/services.md), so it may name it; the batch scale bench is of the HDFS
# log job by design (docs/batch.md: a day of a cluster's logs).
NAMED_BY_DESIGN = {"services_speed.py", "fastapi_spam.py", "batch_scale.py"}
PROJECTS = discover()


def test_every_project_is_discovered_with_the_protocol_it_needs() -> None:
    assert len(PROJECTS) >= 3
    for project in PROJECTS:
        for part in ("config", "data", "reference", "monitor", "production", "bench"):
            assert project.has(part), f"projects/{project.name}/{part}.py"
        assert project.service.startswith(f"services.{project.name}.service:")
    assert len({p.port for p in PROJECTS}) == len(PROJECTS), "each project has its own port"
    assert len({p.model_name for p in PROJECTS}) == len(PROJECTS)


def test_a_port_comes_from_the_config_unless_the_environment_or_an_option_says(
    monkeypatch,
) -> None:
    first, second = PROJECTS[0], PROJECTS[1]
    assert first.port == first.config.PORT
    monkeypatch.setenv(f"{first.name.upper()}_PORT", "3999")
    assert first.port == 3999
    assert ports([first, second], [f"{second.name}=4000"]) == {first.name: 3999, second.name: 4000}
    with pytest.raises(StageError, match="ports must differ"):
        ports([first, second], [f"{second.name}=3999"])
    with pytest.raises(StageError, match="give name=port"):
        ports([first], ["nope=1"])
    monkeypatch.setenv(f"{first.name.upper()}_PORT", "http")
    with pytest.raises(StageError, match="not a port number"):
        _ = first.port


def test_choosing_projects_checks_the_names() -> None:
    assert choose(None) == PROJECTS
    last, first = PROJECTS[-1].name, PROJECTS[0].name
    assert [p.name for p in choose([last, first, last])] == [first, last]
    with pytest.raises(StageError, match=r"unknown project.*nope; choose from"):
        choose([first, "nope"])
    with pytest.raises(StageError, match="unknown project 'nope'"):
        get("nope")
    with pytest.raises(StageError, match="has no nothing module"):
        Project(first).module("nothing")


def _names(project: Project) -> list[re.Pattern[str]]:
    """What naming `project` looks like in code: its package or service path, its name or its
    model's as a string, or its name as part of an identifier (`spam_config`, `SPAM_PORT`)."""
    name, model = re.escape(project.name), re.escape(project.model_name)
    return [
        re.compile(rf"\b(?:projects|services)[./]{name}\b"),
        re.compile(rf"^['\"]?(?:{name}|{model})(?:['\"]|$)"),
        re.compile(rf"(?:^|_){name}(?:_|$)", re.IGNORECASE),
    ]


def _code_tokens(path: Path) -> list[tuple[int, str]]:
    """The identifiers and string literals of a Python file (docstrings and comments are prose,
    and may say what a shared module is for), with their line numbers."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    found = []
    for i, token in enumerate(tokens):
        if token.type == tokenize.NAME:
            found.append((token.start[0], token.string))
        elif token.type == tokenize.STRING:
            previous = tokens[i - 1].type if i else tokenize.NEWLINE
            docstring = previous in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT)
            if not docstring:
                found.append((token.start[0], token.string.strip("rbfRBF")))
    return found


@pytest.mark.parametrize("path", SHARED, ids=lambda p: str(p.relative_to(paths.ROOT)))
def test_no_shared_module_names_a_project(path: Path) -> None:
    if path.name in NAMED_BY_DESIGN:
        pytest.skip("names its subject by design")
    named = [
        f"{path.name}:{line}: {text[:60]} names {project.name}"
        for project in PROJECTS
        for line, text in _code_tokens(path)
        if any(pattern.search(text) for pattern in _names(project))
    ]
    assert not named, "\n".join(named)


def test_the_makefile_names_no_project() -> None:
    makefile = (paths.ROOT / "Makefile").read_text().splitlines()
    code = [(i, line) for i, line in enumerate(makefile, 1) if not line.lstrip().startswith("#")]
    named = [
        f"Makefile:{i}: {line.strip()}"
        for project in PROJECTS
        for i, line in code
        if re.search(rf"(?<![\w-]){re.escape(project.name)}(?![\w-])", line)
    ]
    assert not named, "\n".join(named)


def test_the_test_itself_catches_a_module_that_names_a_project(tmp_path) -> None:
    name = PROJECTS[0].name
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        f'"""Mentions {name} in prose, which is allowed."""\n'
        f'PORTS = {{"{name}": 1}}\nfrom projects.{name} import config as {name}_config\n'
    )
    hits = [t for _, t in _code_tokens(sneaky) if any(p.search(t) for p in _names(PROJECTS[0]))]
    assert hits == [f'"{name}"', name, f"{name}_config"]
