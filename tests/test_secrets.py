"""Secrets print as *****, resolve from env/file with clear errors, and are masked everywhere."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import pytest

from labkit.errors import ConfigError
from labkit.secrets import (
    MASK,
    RedactingFilter,
    Secret,
    SecretRef,
    redact,
    register,
    resolve,
    written_forms,
)


def test_secret_never_prints_its_value() -> None:
    secret = Secret("s3cret-value-1", "test")
    for text in (str(secret), repr(secret), f"{secret}", secret._repr_html_()):
        assert "s3cret-value-1" not in text
        assert MASK in text
    assert secret.reveal() == "s3cret-value-1"


def test_redact_masks_nested_structures() -> None:
    Secret("planted-token-xyz", "test")
    data = {"a": ["x planted-token-xyz y", {"planted-token-xyz": 1}], "b": ("planted-token-xyz",)}
    clean = redact(data)
    assert "planted-token-xyz" not in repr(clean)
    assert clean["a"][0] == f"x {MASK} y"


def test_resolve_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_TEST_SECRET", "env-secret-42")
    secret = resolve(SecretRef(env="LABKIT_TEST_SECRET"))
    assert secret.reveal() == "env-secret-42"
    assert redact("env-secret-42") == MASK


def test_resolve_missing_env_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_TEST_ABSENT", raising=False)
    with pytest.raises(ConfigError, match="environment variable LABKIT_TEST_ABSENT is not set"):
        resolve(SecretRef(env="LABKIT_TEST_ABSENT"))


def test_resolve_from_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("file-secret-7\n")
    assert resolve(SecretRef(file=tmp_path / "pw")).reveal() == "file-secret-7"
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve(SecretRef(file=tmp_path / "missing"))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_named_as_a_secret_file_is_refused_unread(device: str) -> None:
    # It was read whole: /dev/zero until the memory ran out.
    with pytest.raises(ConfigError, match=f"secret file {device}: is a character device"):
        resolve(SecretRef(file=Path(device)))


def test_a_secret_file_over_64_kib_is_refused(tmp_path: Path) -> None:
    (tmp_path / "huge").write_text("k" * (64 * 1024 + 1))
    with pytest.raises(ConfigError, match=r"more than the 64 KiB a secret file may be"):
        resolve(SecretRef(file=tmp_path / "huge"))


def test_a_secret_file_of_binary_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00key")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        resolve(SecretRef(file=tmp_path / "bin"))


def test_reference_names_exactly_one_store() -> None:
    with pytest.raises(ValueError, match="exactly one of env, file or kubernetes"):
        SecretRef(env="A", file=Path("b"))
    with pytest.raises(ValueError, match="namespace/name/key"):
        SecretRef(kubernetes="just-a-name")


def test_too_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 4"):
        Secret("abc", "test")


def test_logging_filter_masks(caplog: pytest.LogCaptureFixture) -> None:
    Secret("log-secret-99", "test")
    logger = logging.getLogger("labkit.test.secrets")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="labkit.test.secrets"):
        logger.info("token is %s", "log-secret-99")
    assert "log-secret-99" not in caplog.text
    assert f"token is {MASK}" in caplog.text


def test_a_secret_is_masked_as_json_and_html_write_it() -> None:
    # A notebook file holds outputs JSON-escaped, a report HTML-escaped, a text/html output
    # inside a notebook both: none of them may keep the value.
    value = 'Pa"ss\\word-42&x<é>'
    register(value)
    written = [
        json.dumps({"text": value}),
        json.dumps({"text": value}, ensure_ascii=False),
        html.escape(value),
        json.dumps({"html": f"<td>{html.escape(value)}</td>"}),
        json.dumps({"html": html.escape(value, quote=False)}, ensure_ascii=False),
    ]
    for text in written:
        masked = redact(text)
        assert MASK in masked, text
        assert not any(form in masked for form in written_forms(value)), masked
