"""The command line: `labkit check` prints the table, writes results.json, exits by the results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import labkit.run
from labkit.cli import main
from labkit.errors import CheckFailed, CommandError, ConnectError, LabkitError
from labkit.hosts import CommandTimeout, GroupError

REPOSITORY = Path(__file__).resolve().parent.parent


def test_check_phase_0_prints_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "results.json"
    code = main(
        [
            "check",
            "--params",
            str(REPOSITORY / "params" / "homelab.yaml"),
            "--phase",
            "0",
            "--json",
            str(target),
        ]
    )
    out = capsys.readouterr().out
    document = json.loads(target.read_text())
    assert document["schema"] == "labkit.results/1"
    ids = {row["id"] for row in document["checks"]}
    assert ids == {"0.1.1", "0.1.2", "0.1.3", "0.1.4", "0.1.5", "0.1.6"}
    # The homelab's Istio 1.24.2 on Kubernetes 1.33 is outside Istio's supported range.
    assert code == 1
    assert "istio 1.24.2 on Kubernetes 1.33" in out
    assert "homelab:" in out


def test_unknown_phase_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--params", "params/local.yaml", "--phase", "9"])
    assert exit_info.value.code == 2
    assert "--phase: must be between 0 and 7 (a roadmap phase) (got '9')" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize("given", ["9", "1.9", "x"])
def test_plan_of_a_phase_labkit_does_not_plan_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], command: str, given: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--params", "params/local.yaml", "--phase", given])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: labkit" in err and "1, 1.2, 1.3, 1.5" in err and "Traceback" not in err


@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """Record what `labkit run` would run, instead of running the lab-book."""
    calls: list[dict[str, Any]] = []

    def record(**arguments: Any) -> SimpleNamespace:
        calls.append(arguments)
        return SimpleNamespace(
            run_dir=tmp_path, status="ok", report_path=tmp_path / "report.html", exit_code=0
        )

    monkeypatch.setattr(labkit.run, "run_labbook", record)
    return calls


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "'0' must be a finite number of seconds above 0"),
        ("-1", "'-1' must be a finite number of seconds above 0"),
        ("-0.5", "'-0.5' must be a finite number of seconds above 0"),
        ("nan", "'nan' must be a finite number of seconds above 0"),
        ("inf", "'inf' must be a finite number of seconds above 0"),
        ("soon", "'soon' is not a number of seconds"),
        ("1.5", "'1.5' must be a whole number of seconds"),
    ],
)
def test_cell_timeout_without_a_limit_is_a_usage_error(
    value: str,
    expected: str,
    run_calls: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--params", "params/local.yaml", f"--cell-timeout={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --cell-timeout: {expected}" in err
    assert "Traceback" not in err
    assert run_calls == []


@pytest.mark.parametrize(("argv", "seconds"), [([], 600.0), (["--cell-timeout", "30"], 30.0)])
def test_cell_timeout_reaches_the_runner(
    argv: list[str], seconds: float, run_calls: list[dict[str, Any]]
) -> None:
    assert main(["run", "--params", "params/local.yaml", *argv]) == 0
    assert [call["cell_timeout_s"] for call in run_calls] == [seconds]


def test_a_remote_command_failing_during_sandbox_up_exits_2(tmp_path: Path) -> None:
    """initdb really fails (its data directory is a file): the CLI exits 2, not initdb's 1."""
    from labkit.params import load_lab
    from labkit.sandbox import Sandbox
    from tests.conftest import write_sandbox_params

    params = write_sandbox_params(tmp_path, "exit-status")
    lab = load_lab(params)
    sandbox = Sandbox(lab)
    data = sandbox.state_dir / "postgres" / "primary"
    data.parent.mkdir(parents=True, mode=0o700)
    data.touch()  # where initdb must make a directory
    try:
        done = subprocess.run(
            [sys.executable, "-m", "labkit.cli", "sandbox", "up", "--params", str(params)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPOSITORY,
            check=False,
        )
    finally:
        sandbox.down()
    assert "initdb" in done.stderr and "exited 1" in done.stderr, done.stderr[-2000:]
    assert "Not a directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.returncode == 2


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (CommandError("k3s-node-01", ["false"], 1, ""), 2),
        (CommandError("k3s-node-01", ["ssh-keygen"], 255, ""), 2),
        (CommandTimeout("k3s-node-01", ["sleep", "9"], -1, "", "no exit after 1s"), 2),
        (GroupError(["true"], {"k3s-node-01": CommandError("k3s-node-01", ["x"], 7, "")}), 2),
        (GroupError(["true"], {"k3s-node-01": ConnectError("k3s-node-01: refused")}), 2),
        (CheckFailed("1.1.1 failed"), 1),
    ],
)
def test_the_command_line_exits_only_with_documented_statuses(
    error: LabkitError, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**arguments: object) -> int:
        raise error

    monkeypatch.setattr(labkit.run, "run_labbook", broken)
    assert main(["run", "--params", "params/local.yaml"]) == status


def test_a_command_error_keeps_the_remote_status_apart() -> None:
    error = CommandError("k3s-node-01", ["false"], 255, "boom")
    assert (error.remote_status, error.exit_code) == (255, 2)
    group = GroupError(["x"], {"k3s-node-01": error, "k3s-node-02": ConnectError("refused")})
    assert (group.remote_status, group.exit_code) == (255, 2)
    assert GroupError(["x"], {"k3s-node-02": ConnectError("refused")}).remote_status is None


@pytest.mark.parametrize(
    ("extra", "reason", "code"),
    [
        ([], "refused: a drill breaks lab homelab", 2),
        (["--apply", "--confirm", "hmelab"], "typed confirmation 'homelab'", 2),
        (["--apply", "--confirm", "homelab"], "no kubeconfig at", 0),
    ],
)
def test_a_drill_on_the_homelab_is_refused_or_a_skip_written_to_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], reason: str, code: int
) -> None:
    target = tmp_path / "drill.json"
    params = str(REPOSITORY / "params" / "homelab.yaml")
    override = tmp_path / "no-cluster.yaml"  # never this machine's kubeconfig: no cluster here
    override.write_text(f"k3s:\n  kubeconfig: {tmp_path / 'absent.yaml'}\n", encoding="utf-8")
    argv = ["drill", "--params", params, "--params", str(override), "--scenario", "redis-master"]
    assert main([*argv, "--json", str(target), *extra]) == code
    assert "SKIP" in capsys.readouterr().out
    (drill,) = json.loads(target.read_text())["drills"]
    assert drill["status"] == "skip" and reason in drill["reason"]


def test_an_unknown_drill_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    params = str(REPOSITORY / "params" / "local.yaml")
    with pytest.raises(SystemExit):
        main(["drill", "--params", params, "--scenario", "disk-full"])
    assert "invalid choice" in capsys.readouterr().err
