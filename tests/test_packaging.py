"""Packaging: one locked set of packages for make, CI and conda; CI runs the README test command."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import yaml
from packaging.markers import Marker
from packaging.utils import canonicalize_name

REPOSITORY = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=;! ]", requirement, maxsplit=1)[0].lower()


def _lock() -> dict[str, list[tuple[str, str]]]:
    """requirements.lock: name -> [(exact version, environment marker or "")]."""
    pins: dict[str, list[tuple[str, str]]] = {}
    for line in (REPOSITORY / "requirements.lock").read_text().splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        requirement, _, marker = line.partition(";")
        name, _, version = requirement.strip().partition("==")
        assert version, f"requirements.lock: {line!r} is not pinned with =="
        pins.setdefault(canonicalize_name(name), []).append((version, marker.strip()))
    return pins


def test_environment_yml_installs_the_locked_set() -> None:
    environment = yaml.safe_load((REPOSITORY / "environment.yml").read_text())
    pip = next(e for e in environment["dependencies"] if isinstance(e, dict))["pip"]
    assert pip == ["-c requirements.lock", "-e .[test]"]
    conda = [e for e in environment["dependencies"] if isinstance(e, str)]
    assert sorted(conda) == ["pip", "python=3.11"]  # nothing else escapes the lock


def test_the_lock_names_every_dependency_of_the_project() -> None:
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pins = _lock()
    missing = [r for r in wanted if canonicalize_name(_name(r)) not in pins]
    assert not missing, f"requirements.lock lacks {missing}: run `make lock`"


def test_every_installed_distribution_is_locked_at_its_exact_version() -> None:
    # The venv itself seeds pip and setuptools; labkit is the project. Everything else the
    # Makefile installs must come from the lock.
    own = {"labkit", "pip", "setuptools"}
    pins = _lock()
    wrong = []
    for distribution in importlib.metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        if name in own:
            continue
        entries = pins.get(name, [])
        versions = [v for v, marker in entries if not marker or Marker(marker).evaluate()]
        if versions != [distribution.version]:
            wrong.append(f"{name} {distribution.version} (lock: {versions or 'absent'})")
    assert not wrong, f"installed but not locked at that version: {wrong}"


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
