"""labkit doctor: evidence of a healthy and of a broken sandbox, secrets masked in every file."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.cli import main
from labkit.params import load_lab
from labkit.runbooks import doctor
from labkit.sandbox import Sandbox

REPOSITORY = Path(__file__).resolve().parents[2]


def _files_text(folder: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(folder.rglob("*")) if path.is_file())


@pytest.mark.sandbox
def test_a_healthy_sandbox_has_no_findings(sandbox: Sandbox, tmp_path: Path) -> None:
    report = doctor(sandbox.lab, tmp_path / "doctor")
    assert report.healthy, report.text()
    names = {entry["name"] for entry in report.components}
    assert {"postgres-primary", "postgres-standby", "shortener"} <= names
    plane = report.data_plane
    assert plane[f"redis-{sandbox.lab.redis.port}"]["role"] in {"master", "slave"}
    assert plane["postgres-primary"]["in_recovery"] is False
    assert plane["postgres-primary"]["standbys"][0]["state"] == "streaming"
    assert plane["shlink-health"]["status"] == "pass"
    written = {path.name for path in (tmp_path / "doctor").rglob("*")}
    assert {"doctor.json", "doctor.txt", "shortener.log", "postgres-primary.log"} <= written


@pytest.mark.sandbox
def test_secrets_in_component_logs_are_masked(sandbox: Sandbox, tmp_path: Path) -> None:
    lab = sandbox.lab
    api_key = lab.secret(lab.shlink.api_key).reveal()
    password = lab.secret(lab.postgres.password).reveal()
    log = sandbox.state_dir / "logs" / "shortener.log"
    planted = f"ERROR leaked api key {api_key} and password {password}\n"
    with log.open("a") as handle:
        handle.write(planted)
    try:
        report = doctor(lab, tmp_path / "doctor")
    finally:
        # The session's sandbox is shared: leave no secret behind for the tests that prove
        # its logs hold none (the service may have appended lines after the planted one).
        log.write_text(log.read_text().replace(planted, ""))
    text = _files_text(tmp_path / "doctor")
    assert api_key not in text and password not in text
    assert "ERROR leaked api key ***** and password *****" in report.errors["shortener"][-1]
    assert "leaked api key *****" in text


@pytest.mark.sandbox
def test_a_stopped_replica_is_a_finding_and_exit_1(sandbox: Sandbox, tmp_path: Path) -> None:
    lab = sandbox.lab
    replica = next(  # a replica as the Sentinels see it now (a failover may have moved roles)
        e["name"]
        for e in sandbox.status()["components"]
        if e["name"].startswith("redis-") and e.get("role") == "replica"
    )
    assert sandbox.stop_component(replica)
    try:
        code = main(["doctor", "--params", str(lab.files[0]), "--out", str(tmp_path / "d")])
        report_text = (tmp_path / "d" / "doctor.txt").read_text()
    finally:
        sandbox.up(progress=lambda message: None)
    assert code == 1
    assert f"{replica}: not healthy" in report_text


def test_a_cluster_lab_says_what_it_cannot_collect(tmp_path: Path) -> None:
    lab = load_lab(REPOSITORY / "params" / "homelab.yaml")
    report = doctor(lab, tmp_path)
    assert report.components == [] and "cluster layer" in report.skipped[0]
    assert (tmp_path / "doctor.json").exists()
