"""Packaging: conda gets the same dependencies as pip; CI runs the README's test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
# PyPI name -> conda-forge name where they differ
CONDA_NAMES = {"kubernetes": "python-kubernetes", "redis": "redis-py"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=;! ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_installs_every_dependency() -> None:
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["test"]}
    wanted -= {"types-pyyaml", "types-paramiko", "types-psutil", "pandas-stubs"}  # mypy only
    environment = yaml.safe_load((REPOSITORY / "environment.yml").read_text())
    listed: set[str] = set()
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            listed |= {_name(item) for item in entry["pip"]}
        else:
            listed.add(_name(entry))
    missing = {name for name in wanted if CONDA_NAMES.get(name, name) not in listed}
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    assert "-e ." in next(e for e in environment["dependencies"] if isinstance(e, dict))["pip"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPOSITORY / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and line[0] != "#"]
    assert commands[-1] == "make test"  # the last thing CI does is the README's test command
    readme = (REPOSITORY / "README.md").read_text()
    assert "make test   # the whole test suite" in readme
    assert "make demo   # the main job" in readme


def test_readme_names_the_packages_the_makefile_installs() -> None:
    makefile = (REPOSITORY / "Makefile").read_text().replace("\\\n", " ")
    tools = re.search(r"^SYSTEM_TOOLS := (.*)$", makefile, re.MULTILINE)
    assert tools is not None
    packages = {pair.split(":")[1] for pair in tools.group(1).split()}
    readme = " ".join((REPOSITORY / "README.md").read_text().split())
    listed = re.search(r"as root, `([a-z0-9 -]+)` from apt", readme)
    assert listed is not None
    assert set(listed.group(1).split()) == packages
