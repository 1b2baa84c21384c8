"""The service's settings: derived from a Lab, handed to every uvicorn worker as one env variable.

The settings carry no secret values, only where the secrets live (a file path
or an environment variable name); each worker reads them itself at start-up, so
nothing secret appears in ``ps`` output or in the process environment.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from labkit.errors import ConfigError
from labkit.params import Lab
from labkit.secrets import Secret, SecretRef, resolve

__all__ = ["CONFIG_ENV", "ServiceConfig", "service_command"]

CONFIG_ENV = "LABKIT_SHORTENER_CONFIG"


@dataclass(frozen=True)
class ServiceConfig:
    """Everything a worker needs: where PostgreSQL and the Sentinels are, and where secrets live."""

    postgres_host: str
    postgres_port: int
    postgres_database: str
    postgres_user: str
    postgres_password: dict[str, str]  # a SecretRef as {"file": path} or {"env": name}
    api_key: dict[str, str]
    sentinels: list[tuple[str, int]]
    master_name: str
    redis_password: dict[str, str] | None
    default_domain: str
    redirect_cache: bool
    cache_ttl_s: int = 300
    pool_size: int = 8
    postgres_standby_port: int | None = None  # libpq then follows whichever accepts writes

    @classmethod
    def from_lab(cls, lab: Lab) -> ServiceConfig:
        """Settings for ``lab``; secret references become absolute file paths or env names."""
        redis = lab.redis
        if not redis.sentinel_ports:
            raise ConfigError(
                f"lab {lab.name}: redis.sentinel_ports is empty; the shortener finds the Redis "
                "master through the Sentinels, so list their ports in params"
            )
        return cls(
            postgres_host=lab.postgres.host,
            postgres_port=lab.postgres.port,
            postgres_database=lab.postgres.database,
            postgres_user=lab.postgres.user,
            postgres_password=_locate(lab, lab.postgres.password),
            api_key=_locate(lab, lab.shlink.api_key),
            sentinels=[(redis.host, port) for port in redis.sentinel_ports],
            master_name=redis.master_name,
            redis_password=_locate(lab, redis.password) if redis.password else None,
            default_domain=lab.shlink.default_domain,
            redirect_cache=lab.shlink.redirect_cache,
            postgres_standby_port=lab.postgres.standby_port,
        )

    def to_json(self) -> str:
        """The form passed in the environment."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        """Inverse of ``to_json``."""
        data = json.loads(text)
        data["sentinels"] = [(host, int(port)) for host, port in data["sentinels"]]
        return cls(**data)

    @classmethod
    def from_environment(cls) -> ServiceConfig:
        """The settings a worker was started with; a ConfigError when launched by hand without."""
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise ConfigError(
                f"{CONFIG_ENV} is not set; start the shortener with "
                "labkit.sandbox.shortener.service_command(lab, state_dir)"
            )
        return cls.from_json(text)

    def secret(self, name: str) -> Secret:
        """Resolve one of ``postgres_password``, ``api_key``, ``redis_password``."""
        location = getattr(self, name)
        if location is None:
            raise ConfigError(f"shortener setting {name} is not configured")
        return resolve(SecretRef(**location))


def _locate(lab: Lab, ref: SecretRef) -> dict[str, str]:
    if ref.file is not None:
        return {"file": str(lab.path(ref.file))}
    if ref.env is not None:
        return {"env": ref.env}
    raise ConfigError(
        f"lab {lab.name}: the sandbox shortener cannot read {ref.describe()}; "
        "reference a file or an environment variable instead"
    )


def _listen_address(lab: Lab) -> tuple[str, int]:
    parts = urlsplit(lab.shlink.base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(
            f"shlink.base_url {lab.shlink.base_url!r}: the sandbox service speaks plain http; "
            "use a URL like http://127.0.0.1:18080"
        )
    return parts.hostname, parts.port or 80


def service_command(lab: Lab, state_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment that launch the service on ``lab.shlink.base_url``."""
    host, port = _listen_address(lab)
    lab.require_allowed(host)
    config = ServiceConfig.from_lab(lab)
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "labkit.sandbox.shortener.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(lab.shlink.workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "5",
    ]
    # Each worker writes its metric samples here; samples of an earlier run must not add up.
    samples = state_dir / "shortener-metrics"
    shutil.rmtree(samples, ignore_errors=True)
    samples.mkdir(parents=True, mode=0o700)
    return argv, {
        CONFIG_ENV: config.to_json(),
        "PYTHONUNBUFFERED": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(samples),
    }
