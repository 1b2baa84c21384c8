"""Worker frames over pipes: whole frames even when the pipe hands them over in pieces."""

from __future__ import annotations

import os
import threading

from labkit.load.child import read_frame, write_frame


def test_a_frame_larger_than_the_pipe_arrives_whole_over_an_unbuffered_pipe() -> None:
    # A pipe holds 64 KiB: a raw read returns at most that, so read_frame must go on reading.
    value = {"recorder": "x" * 1_000_000, "sent": 3}
    read_end, write_end = os.pipe()
    with open(read_end, "rb", buffering=0) as reader, open(write_end, "wb", buffering=0) as writer:

        def send() -> None:
            write_frame(writer, value)
            write_frame(writer, 7)

        sender = threading.Thread(target=send)
        sender.start()
        assert read_frame(reader) == value
        assert read_frame(reader) == 7
        sender.join(timeout=10)
