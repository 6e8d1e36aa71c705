"""Length-prefixed frames on raw file descriptors (blocking), used by the worker and the child.

A frame is a 4-byte big-endian length followed by that many bytes. The host speaks the same
format over anyio streams (``sandbox._frames``).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

HEADER = struct.Struct(">I")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_frame(fd: int, data: bytes) -> None:
    write_all(fd, HEADER.pack(len(data)) + data)


def write_json(fd: int, obj: Any) -> None:
    write_frame(fd, json.dumps(obj, separators=(",", ":"), allow_nan=False).encode())


def read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly ``n`` bytes; ``None`` on EOF before the first byte or in the middle."""
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int = 1 << 30) -> bytes | None:
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > limit:
        raise ValueError(f"frame of {size} bytes exceeds the limit of {limit}")
    return read_exact(fd, size)


class FrameBuffer:
    """Incremental frame parser for data read in chunks from an untrusted pipe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        frames: list[bytes] = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.limit:
                raise ValueError(f"frame of {size} bytes exceeds the limit of {self.limit}")
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            frames.append(bytes(self._buf[HEADER.size : end]))
            del self._buf[:end]
        return frames
