"""``labkit bench``: a wrk2-like run on our own server, the JSON schema, refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.cli import main
from tests.bounded import run_labkit
from tests.load.conftest import TestServer


def test_bench_prints_a_summary_and_writes_the_load_schema(
    http_server: Callable[..., TestServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = http_server()
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            server.url,
            "--rate",
            "200",
            "--duration",
            "1",
            "--connections",
            "4",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "corrected" in printed and "uncorrected" in printed
    (entry,) = json.loads(out.read_text())["load"]
    assert entry["requests"] == 200
    assert entry["status_codes"] == {"302": 200}
    assert set(entry["latency_ms"]["corrected"]) >= {"p50", "p90", "p95", "p99", "p99_9", "max"}


def test_a_longer_bench_shows_progress_on_stderr(
    http_server: Callable[..., TestServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = http_server()
    argv = ["bench", server.url, "--rate", "100", "--duration", "6", "--connections", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    (line,) = [line for line in printed.err.splitlines() if "sent" in line]
    assert line.split()[0] == "5/6s" and "of 600" in line and "no answer 0" in line, line
    assert "sent" not in printed.out.split("achieved")[0]  # stdout keeps the summary only


def test_bench_refuses_a_target_outside_the_allow_list(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "http://10.99.0.9:8080/", "--rate", "10", "--duration", "1"])
    assert code == 2
    assert "outside the allow-list" in capsys.readouterr().err


def test_bench_exits_1_when_nothing_answers(
    http_server: Callable[..., TestServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = http_server()
    server.stop()
    assert main(["bench", server.url, "--rate", "20", "--duration", "1"]) == 1
    assert "connect_refused" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench"], "give a URL"),
        (["bench", "http://127.0.0.1:9/"], "--rate R is required"),
        (["bench", "--scenario", "mixed"], "--scenario needs --params"),
        (["bench", "--params", "params/local.yaml", "--scenario", "nope"], "unknown scenario"),
    ],
)
def test_bench_usage_mistakes_say_what_to_do(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["http://[::1:1/", "--rate", "10"], "is not a URL (Invalid IPv6 URL)"),
        (["http://127.0.0.1:1/", "--rate", "0.4", "--duration", "1"], "plans no request at all"),
        (["http://127.0.0.1:1/", "--rate", "nan"], "must be above 0 and at most 1,000,000"),
        (["http://127.0.0.1:1/", "--rate", "10", "--warmup", "-5"], "must be from 0 and at most"),
        (
            ["http://127.0.0.1:1/", "--rate", "10", "--timeout", "0"],
            "must be above 0 and at most 600 seconds",
        ),
        (["http://127.0.0.1:1/", "--rate", "10", "--processes", "0"], "must be between 1 and"),
        (
            ["http://127.0.0.1:1/", "--rate", "10", "--processes", "2", "--connections", "1"],
            "each process needs at least one connection",
        ),
    ],
)
def test_bad_bench_arguments_are_clear_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["bench", *arguments])
    except SystemExit as exit_info:  # argparse's own usage errors
        code = int(exit_info.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_a_url_with_credentials_is_refused_and_never_printed_or_written(
    http_server: Callable[..., TestServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = http_server()
    out = tmp_path / "bench.json"
    url = server.url.replace("http://", "http://user:secret@")
    argv = ["bench", url, "--rate", "10", "--duration", "1", "--json", str(out)]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    printed = capsys.readouterr()
    assert exited.value.code == 2
    assert "a URL with credentials (user:password@) is refused" in printed.err
    assert "http://*****@127.0.0.1" in printed.err
    assert "secret" not in printed.out + printed.err
    assert not out.exists()


@pytest.mark.parametrize("url", ["http://example.invalid/", "http://localhost.example:8080/x"])
def test_a_hostname_target_is_refused_before_any_lookup(
    url: str, no_lookup: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", url, "--rate", "10", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not in the allow-list" in err and "nothing was looked up or sent" in err


def test_localhost_is_benchmarked_as_127_0_0_1_without_a_lookup(
    http_server: Callable[..., TestServer], no_lookup: None, capsys: pytest.CaptureFixture[str]
) -> None:
    server = http_server()
    argv = ["bench", f"http://localhost:{server.port}/", "--rate", "20", "--duration", "1"]
    assert main(argv) == 0
    assert "20 responses" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rate", "1e12"], "--rate: must be above 0 and at most 1,000,000 requests per second"),
        (["--rate", "10", "--duration", "1e200"], "--duration: must be above 0 and at most 86,400"),
        (["--rate", "10", "--warmup", "1e200"], "--warmup: must be from 0 and at most 86,400"),
        (["--rate", "10", "--timeout", "1e200"], "--timeout: must be above 0 and at most 600"),
        (["--rate", "10", "--connections", "9" * 5000], "--connections: must be between 1 and"),
    ],
)
def test_bench_argument_handling_is_bounded_in_memory_and_time(
    arguments: list[str], message: str
) -> None:
    """A real `labkit bench` process under a 512 MiB address-space and 20 s CPU limit."""
    started = time.monotonic()
    done = run_labkit("bench", "http://127.0.0.1:9/", *arguments, memory_bytes=512 << 20)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert time.monotonic() - started < 30
