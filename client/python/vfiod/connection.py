"""One connection to vfiod: blocking JSON-RPC calls with fd passing.

A Connection is not thread-safe: use one per thread (connections are cheap).
It owns its socket; every fd it receives is owned by the Reply that carries
it (or closed when nothing refers to it).
"""

from __future__ import annotations

import errno
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from . import errors, wire

#: Called for every notification that arrives during a call:
#: ``handler(method, params)`` (e.g. "dma.progress").
NotificationHandler = Callable[[str, Any], None]

#: The default per-call timeout in seconds (as the C++ client's 30 s).
DEFAULT_TIMEOUT = 30.0


@dataclass
class Reply:
    """A successful call: its result and the fds (owned) its reply carried.
    ``result`` refers to them as ``{"fd": i}``, i indexing ``fds``."""
    result: Any
    fds: list[int] = field(default_factory=list)

    def take_fd(self, index: int = 0) -> int:
        """Hands fd ``index`` to the caller, who closes it from now on."""
        fd = self.fds[index]
        self.fds[index] = -1
        return fd

    def close(self) -> None:
        """Closes the fds not taken."""
        wire.close_all([fd for fd in self.fds if fd >= 0])
        self.fds = []


@dataclass
class BatchCall:
    """One element of a batch; a notification gets no entry in the results."""
    method: str
    params: Any = None
    notification: bool = False


class Connection:
    """A connected socket speaking the vfiod wire (see wire.py)."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self._sock: socket.socket | None = sock
        self.path = path
        self._framer = wire.LineFramer()
        self._next_id = 1
        #: Receives notifications that arrive during calls (see call()).
        self.on_notification: NotificationHandler | None = None

    @classmethod
    def connect(cls, path: str) -> Connection:
        """Connects to the daemon socket at ``path``. Raises TransportError
        (errno ENOENT, ECONNREFUSED: no daemon; EACCES: socket permissions;
        ENAMETOOLONG: path too long for a unix socket)."""
        sock = socket.socket(socket.AF_UNIX,
                             socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise errors.transport_error(
                f"connect {path}", e.errno or errno.EIO) from e
        except ValueError as e:  # path too long, NUL in it
            sock.close()
            raise errors.transport_error(
                f"connect {path}", errno.ENAMETOOLONG, detail=str(e)) from e
        return cls(sock, path)

    @property
    def closed(self) -> bool:
        """True once the connection failed or was closed."""
        return self._sock is None

    def fileno(self) -> int:
        """The socket's fd (-1 when closed), for poll()ing callers."""
        return self._sock.fileno() if self._sock else -1

    def close(self) -> None:
        """Closes the socket and any fds received but not handed out."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._framer.close()
        self._framer = wire.LineFramer()

    def call(self, method: str, params: Any = None, fds: Sequence[int] = (),
             timeout: float | None = DEFAULT_TIMEOUT,
             on_notification: NotificationHandler | None = None) -> Reply:
        """Calls ``method`` and waits for its reply. ``fds`` (borrowed, not
        closed) travel with the request; params name them ``{"fd": i}``.
        ``timeout`` in seconds, None to wait as long as it takes; a reply
        arriving after it is dropped. Notifications go to ``on_notification``
        (else to self.on_notification). Raises the VfiodError subclass of the
        daemon's error, or TransportError / CallTimeoutError / ProtocolError.
        """
        deadline = _deadline(timeout)
        request_id = self._take_id()
        line = wire.encode(wire.make_request(method, params, request_id))
        self._send(line, fds, deadline, method)
        reply, frame = self._await([request_id], deadline, method,
                                   on_notification)
        try:
            if not isinstance(reply, dict):
                raise errors.protocol_error("reply is not an object", method)
            return _to_reply(reply, frame.fds, method)
        finally:
            frame.close_fds()

    def notify(self, method: str, params: Any = None,
               fds: Sequence[int] = ()) -> None:
        """Sends a notification (no reply). Raises TransportError."""
        line = wire.encode(wire.make_request(method, params, None))
        self._send(line, fds, _deadline(DEFAULT_TIMEOUT), method)

    def batch(self, calls: Sequence[BatchCall], fds: Sequence[int] = (),
              timeout: float | None = DEFAULT_TIMEOUT
              ) -> list[Reply | errors.VfiodError]:
        """Sends ``calls`` as one batch line with ``fds``; returns one Reply
        or VfiodError (not raised) per non-notification call, in order.
        Raises for failures of the batch as a whole (transport, timeout, a
        single error reply). ValueError for an empty batch (invalid
        JSON-RPC; its error reply would have no request to go to)."""
        if not calls:
            raise ValueError("an empty batch")
        deadline = _deadline(timeout)
        ids: list[int] = []
        requests = []
        for c in calls:
            request_id = None if c.notification else self._take_id()
            if request_id is not None:
                ids.append(request_id)
            requests.append(wire.make_request(c.method, c.params, request_id))
        self._send(wire.encode(requests), fds, deadline, "batch")
        if not ids:
            return []
        reply, frame = self._await(ids, deadline, "batch", None)
        try:
            if not isinstance(reply, list):  # the batch as a whole failed
                if isinstance(reply, dict):
                    _to_reply(reply, frame.fds, "batch").close()  # raises
                raise errors.protocol_error("non-array batch reply", "batch")
            by_id = {e.get("id"): e for e in reply if isinstance(e, dict)}
            results: list[Reply | errors.VfiodError] = []
            for call_id, c in zip(ids, (c for c in calls
                                        if not c.notification)):
                try:
                    element = by_id.get(call_id)
                    if element is None:
                        raise errors.protocol_error(
                            f"no reply for batch element {call_id}", c.method)
                    results.append(_to_reply(element, frame.fds, c.method))
                except errors.VfiodError as e:
                    results.append(e)
            return results
        finally:
            frame.close_fds()

    # -- internals ---------------------------------------------------------

    def _take_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def _live_socket(self, op: str, method: str) -> socket.socket:
        if self._sock is None:
            raise errors.transport_error(op, errno.ENOTCONN, method,
                                         "connection closed earlier")
        return self._sock

    def _send(self, line: bytes, fds: Sequence[int], deadline: float | None,
              method: str) -> None:
        if len(fds) > wire.MAX_FDS_PER_MESSAGE:
            raise errors.transport_error(
                "send", errno.EINVAL, method,
                f"{len(fds)} fds, at most {wire.MAX_FDS_PER_MESSAGE}")
        sock = self._live_socket("send", method)
        done = 0
        view = memoryview(line)
        while done < len(line):
            try:
                sock.settimeout(_left(deadline))
                done += wire.send_line(sock, view[done:],
                                       fds if done == 0 else ())
            except TimeoutError as e:
                if done > 0:  # part of a line is out: the stream is unusable
                    self.close()
                raise errors.timeout_error("sending the request",
                                           method) from e
            except OSError as e:
                self.close()
                raise errors.transport_error(
                    "send", e.errno or errno.EIO, method) from e

    def _read_more(self, deadline: float | None, method: str) -> None:
        sock = self._live_socket("receive", method)
        try:
            sock.settimeout(_left(deadline))
            data, fds, truncated = wire.recv_chunk(sock)
        except TimeoutError as e:
            raise errors.timeout_error("waiting for the reply", method) from e
        except OSError as e:
            self.close()
            raise errors.transport_error(
                "receive", e.errno or errno.EIO, method) from e
        if not data:
            wire.close_all(fds)
            self.close()
            raise errors.transport_error("receive", errno.ECONNRESET, method,
                                         "the daemon closed the connection")
        self._framer.feed(data, fds, truncated)
        if self._framer.overflowed:
            self.close()
            raise errors.protocol_error(
                f"reply line longer than {wire.MAX_REPLY_BYTES} bytes",
                method)

    def _await(self, ids: list[int], deadline: float | None, method: str,
               on_notification: NotificationHandler | None
               ) -> tuple[Any, wire.Frame]:
        """Reads until a reply to one of ``ids`` (or an id-null error)
        arrives, passing notifications on and dropping late replies. The
        returned frame's fds are the caller's to close."""
        while True:
            while not self._framer.has_frame():
                self._read_more(deadline, method)
            frame = self._framer.pop()
            try:
                message = json.loads(frame.line)
            except (ValueError, RecursionError) as e:
                frame.close_fds()
                raise errors.protocol_error(
                    "reply is not JSON", method) from e
            if _is_notification(message):
                frame.close_fds()
                handler = on_notification or self.on_notification
                if handler is not None:
                    handler(message["method"], message.get("params"))
                continue
            if _is_reply_to(message, ids):
                if frame.fd_error:
                    frame.close_fds()
                    raise errors.protocol_error(
                        "the reply's fds arrived truncated", method)
                return message, frame
            frame.close_fds()  # a late reply to a call that timed out


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (None: no deadline); a past deadline
    gives a tiny timeout, so the next socket operation times out."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 1e-6)


def _is_notification(message: Any) -> bool:
    return (isinstance(message, dict) and "method" in message
            and "id" not in message)


def _has_id_in(message: Any, ids: list[int]) -> bool:
    return isinstance(message, dict) and message.get("id") in ids \
        and isinstance(message.get("id"), int)


def _is_reply_to(message: Any, ids: list[int]) -> bool:
    """A reply to the request(s) with ``ids``: an object or batch carrying
    one of them, or an error with id null (the daemon could not read the
    request, and the only request outstanding is ours)."""
    if isinstance(message, list):
        return any(_has_id_in(e, ids) for e in message)
    return _has_id_in(message, ids) or (
        isinstance(message, dict) and "error" in message
        and message.get("id") is None)


def _to_reply(message: dict[str, Any], line_fds: list[int],
              method: str) -> Reply:
    """The Reply of one reply object, or its error raised. The fds its result
    refers to move from ``line_fds`` (set to -1 there) into the Reply and
    its references are renumbered from 0."""
    if "error" in message:
        raise errors.from_error_object(message["error"], method)
    if "result" not in message:
        raise errors.protocol_error("reply has neither result nor error",
                                    method)
    result = message["result"]
    own: list[int] = []
    seen: dict[int, int] = {}
    refs = list(wire.iter_fd_refs(result))
    for ref in refs:
        if not 0 <= ref["fd"] < len(line_fds) or (
                line_fds[ref["fd"]] < 0 and ref["fd"] not in seen):
            wire.close_all(own)
            raise errors.protocol_error(
                f"the reply names fd {ref['fd']} it did not carry", method)
        if ref["fd"] not in seen:
            seen[ref["fd"]] = len(own)
            own.append(line_fds[ref["fd"]])
            line_fds[ref["fd"]] = -1
        ref["fd"] = seen[ref["fd"]]
    return Reply(result, own)
