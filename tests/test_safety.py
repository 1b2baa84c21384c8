"""The suite's own guard: a connection outside loopback and the tests' namespaces fails the test."""

from __future__ import annotations

import socket

import pytest


def test_a_connection_outside_the_test_networks_is_stopped_before_it_is_made() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match=r"192\.0\.2\.1"):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: refused by the guard, never sent


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


def test_a_test_network_address_is_stopped_while_no_link_of_ours_carries_it() -> None:
    # 10.79.255.0/24 belongs to no test: the kernel would send it through the default route.
    with socket.socket() as sock, pytest.raises(AssertionError, match="its namespace is not up"):
        sock.connect(("10.79.255.9", 22))
