"""What a failure to find the Redis master says (3.2.8 and the load figures ask for it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.errors import ConnectError
from labkit.params import load_lab
from labkit.stores import lab_redis_master


def test_no_sentinel_answering_is_a_connect_error_without_client_reprs(
    tmp_path: Path, private_sandbox_params: Callable[..., Path]
) -> None:
    """Issue 11: 3.2.8 showed redis-py's `<redis.client.Redis(...)>` reprs; now the why."""
    lab = load_lab(private_sandbox_params(tmp_path))  # never brought up: nothing listens
    with pytest.raises(ConnectError) as caught:
        lab_redis_master(lab)
    message = str(caught.value)
    assert "<redis" not in message and "object at" not in message
    for port in lab.redis.sentinel_ports:
        assert f"127.0.0.1:{port}" in message
    assert "labkit sandbox" in message
