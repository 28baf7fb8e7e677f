"""The vfiod wire: newline-delimited JSON-RPC 2.0 with SCM_RIGHTS fd passing.

Rules (proto/jsonrpc.h, proto/framing.h, proto/fd_passing.h):

* One compact JSON value per line, terminated by ``\\n``.
* A message refers to the n-th fd it carries with the object ``{"fd": n}``.
* The fds a message carries go in the same ``sendmsg()`` as the first byte of
  its line, and that ``sendmsg()`` carries bytes of no other message; at most
  MAX_FDS_PER_MESSAGE fds per message.
* The receiver attaches the fds of one ``recvmsg()`` to the last line that
  started in the bytes it returned.

Nothing here owns a socket; LineFramer owns the fds it was fed until a frame
is popped, and the popper owns the frame's fds from then on.
"""

from __future__ import annotations

import array
import json
import os
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

JSONRPC_VERSION = "2.0"
#: The most fds one message may carry (more arrive truncated: an FdError).
MAX_FDS_PER_MESSAGE = 16
#: The longest reply line this client accepts (replies can be large device
#: lists; the daemon's own request limit, limits.max_frame_bytes, is 1 MiB by
#: default).
MAX_REPLY_BYTES = 64 << 20
_FD_BYTES = array.array("i").itemsize


@dataclass
class Frame:
    """One complete line and the fds (owned) that came with it."""
    line: bytes = b""
    fds: list[int] = field(default_factory=list)
    fd_error: bool = False  # control data was truncated: fds were lost

    def close_fds(self) -> None:
        """Closes every fd the frame still owns."""
        close_all(self.fds)
        self.fds = []


def close_all(fds: Sequence[int]) -> None:
    """Closes each fd, skipping -1 (taken) and ignoring ones already
    closed."""
    for fd in fds:
        if fd < 0:
            continue
        try:
            os.close(fd)
        except OSError:
            pass


class LineFramer:
    """Splits a byte stream into Frames and attaches each read's fds to the
    last line that started in it (fds no line can own are closed). Once a
    line grows past ``max_frame`` it sets ``overflowed`` and drops input."""

    def __init__(self, max_frame: int = MAX_REPLY_BYTES) -> None:
        self._max = max_frame
        self._partial = Frame()
        self._partial_parts: list[bytes] = []
        self._partial_len = 0
        self._ready: deque[Frame] = deque()
        self.overflowed = False

    def feed(self, data: bytes, fds: list[int], truncated: bool) -> None:
        """Takes the bytes and fds (owned from now on) of one recvmsg()."""
        if self.overflowed:
            close_all(fds)
            return
        target = self._last_line_start(data)
        if (fds or truncated) and target is None:
            close_all(fds)  # only continues a line that got its fds before
            self._partial.fd_error |= truncated
            fds, truncated = [], False
        start = 0
        while start < len(data):
            if start == target and (fds or truncated):
                self._attach(fds, truncated)
                fds = []
            nl = data.find(b"\n", start)
            end = len(data) if nl < 0 else nl
            self._partial_parts.append(data[start:end])
            self._partial_len += end - start
            if self._partial_len > self._max:
                self.overflowed = True
                self._partial.close_fds()
                self._partial, self._partial_parts = Frame(), []
                return
            if nl < 0:
                break
            self._partial.line = b"".join(self._partial_parts)
            self._ready.append(self._partial)
            self._partial, self._partial_parts, self._partial_len = \
                Frame(), [], 0
            start = nl + 1

    def has_frame(self) -> bool:
        """True when a complete line is waiting."""
        return bool(self._ready)

    def pop(self) -> Frame:
        """The oldest complete line; has_frame() must be true."""
        return self._ready.popleft()

    def close(self) -> None:
        """Closes every fd still held (waiting frames and the partial one)."""
        for frame in self._ready:
            frame.close_fds()
        self._ready.clear()
        self._partial.close_fds()

    def _last_line_start(self, data: bytes) -> int | None:
        """Offset of the last line starting in ``data``, or None when it only
        continues the partial line."""
        target = 0 if self._partial_len == 0 and data else None
        nl = data.rfind(b"\n", 0, len(data) - 1)
        return nl + 1 if nl >= 0 else target

    def _attach(self, fds: list[int], truncated: bool) -> None:
        # A line gets the fds of one read only; a second batch breaks the
        # sending rule, so those are stray.
        self._partial.fd_error |= truncated
        if self._partial.fds:
            close_all(fds)
        else:
            self._partial.fds = fds


def send_line(sock: socket.socket, line: bytes, fds: Sequence[int]) -> int:
    """One sendmsg() of ``line`` carrying ``fds`` (borrowed, not closed) when
    non-empty. Returns the bytes accepted (>0 means the fds went with them).
    Raises OSError (BlockingIOError on a full non-blocking socket)."""
    if fds:
        return socket.send_fds(sock, [line], list(fds), socket.MSG_NOSIGNAL)
    return sock.send(line, socket.MSG_NOSIGNAL)


def recv_chunk(sock: socket.socket, size: int = 64 * 1024
               ) -> tuple[bytes, list[int], bool]:
    """One recvmsg(): (bytes, owned fds opened O_CLOEXEC, fds truncated).
    ``b""`` means the peer closed. Raises OSError (BlockingIOError when a
    non-blocking socket has nothing)."""
    # socket.recv_fds would do, but Python 3.11's ignores its flags argument,
    # so its fds arrive without O_CLOEXEC and would leak into any program
    # this process starts: recvmsg() with MSG_CMSG_CLOEXEC instead.
    data, ancdata, flags, _ = sock.recvmsg(
        size, socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * _FD_BYTES),
        socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % _FD_BYTES])
    return data, list(fds), bool(flags & socket.MSG_CTRUNC)


def encode(message: Any) -> bytes:
    """The compact one-line JSON text of ``message`` plus ``\\n``."""
    return json.dumps(message, separators=(",", ":"),
                      ensure_ascii=False).encode() + b"\n"


def make_request(method: str, params: Any, request_id: int | None
                 ) -> dict[str, Any]:
    """A request object; a notification when ``request_id`` is None; no
    ``params`` member when params is None."""
    request: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
    if params is not None:
        request["params"] = params
    if request_id is not None:
        request["id"] = request_id
    return request


def fd_ref(index: int) -> dict[str, int]:
    """``{"fd": index}``: how a message names the index-th fd it carries."""
    return {"fd": index}


def as_fd_ref(value: Any) -> int | None:
    """The index if ``value`` is exactly an fd reference, else None."""
    if isinstance(value, dict) and len(value) == 1:
        index = value.get("fd")
        if isinstance(index, int) and not isinstance(index, bool) \
                and index >= 0:
            return index
    return None


def iter_fd_refs(value: Any) -> Iterator[dict[str, int]]:
    """Every fd reference object inside ``value``, in document order."""
    if as_fd_ref(value) is not None:
        yield value
    elif isinstance(value, dict):
        for child in value.values():
            yield from iter_fd_refs(child)
    elif isinstance(value, list):
        for child in value:
            yield from iter_fd_refs(child)
