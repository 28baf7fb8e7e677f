"""Client: a connection to vfiod with the typed methods and session keeping.

A Client is not thread-safe: use one per thread (connections are cheap).
Unnamed containers and mappings belong to the connection that made them and
are released when it closes, so keep the Client open while you use them
(or name them).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import errors
from .api import Api
from .connection import (DEFAULT_TIMEOUT, BatchCall, Connection,
                         NotificationHandler, Reply)

#: The daemon's socket when neither ``path`` nor $VFIOD_SOCKET says.
DEFAULT_SOCKET = "/run/vfiod/vfiod.sock"

#: Methods that only read, so a kept session may send them again after
#: reconnecting (the same list as the C++ client's KeepSessionRetries).
RETRIED_AFTER_RECONNECT = frozenset({
    "ping", "version", "status", "stats", "metrics", "session.info",
    "rpc.discover",
    "device.list", "device.info", "dma.list", "dma.info", "dma.regions",
    "container.list", "container.info"})

#: Told after each reconnection with session.resume's result
#: (``{"containers": n, "mappings": n, "regions": n}``), or None when the
#: new daemon kept nothing for this session.
ResumedHandler = Callable[[dict[str, Any] | None], None]


class _Default:
    """The type of USE_DEFAULT."""

    def __repr__(self) -> str:
        return "USE_DEFAULT"


#: "The client's default timeout" (a timeout argument of None means "wait
#: as long as it takes").
USE_DEFAULT = _Default()


@dataclass
class _Session:
    reconnect_for: float
    on_resumed: ResumedHandler | None
    token: str


def default_socket() -> str:
    """$VFIOD_SOCKET, else DEFAULT_SOCKET."""
    return os.environ.get("VFIOD_SOCKET") or DEFAULT_SOCKET


class Client(Api):
    """A connection to vfiod. Use as a context manager::

        with vfiod.Client() as c:
            print(c.version())

    ``path``: the socket (default: default_socket()); ``timeout``: the
    default per-call timeout in seconds (None: wait forever). Connecting
    raises TransportError (errno ENOENT or ECONNREFUSED: no daemon; EACCES:
    not allowed on the socket)."""

    def __init__(self, path: str | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.path = path or default_socket()
        self.timeout = timeout
        self._conn = Connection.connect(self.path)
        self._session: _Session | None = None
        self._on_notification: NotificationHandler | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection (the daemon then releases this connection's
        unnamed objects, unless a restart keeps them for session.resume).
        A closed client stays closed: keep_session does not reconnect it."""
        self._session = None
        self._conn.close()

    @property
    def closed(self) -> bool:
        """True once the connection failed or was closed."""
        return self._conn.closed

    def fileno(self) -> int:
        """The socket's fd, for callers that poll()."""
        return self._conn.fileno()

    @property
    def on_notification(self) -> NotificationHandler | None:
        """Receives notifications ``(method, params)`` arriving during calls
        that have no handler of their own."""
        return self._on_notification

    @on_notification.setter
    def on_notification(self, handler: NotificationHandler | None) -> None:
        self._on_notification = handler
        self._conn.on_notification = handler

    @property
    def session_token(self) -> str | None:
        """The current session's resume token (None until keep_session)."""
        return self._session.token if self._session else None

    def call(self, method: str, params: Any = None, fds: Sequence[int] = (),
             timeout: float | None | _Default = USE_DEFAULT,
             on_notification: NotificationHandler | None = None) -> Reply:
        """Calls any method; see Connection.call. With a kept session, a call
        that finds the connection gone reconnects and resumes first (see
        keep_session), then is sent again if it only reads
        (RETRIED_AFTER_RECONNECT); any other call raises its TransportError,
        since it may have run before the daemon went away."""
        wait = self.timeout if isinstance(timeout, _Default) else timeout
        try:
            return self._conn.call(method, params, fds, wait, on_notification)
        except errors.TransportError:
            if self._session is None or not self._reconnect():
                raise
            if method not in RETRIED_AFTER_RECONNECT:
                raise
        return self._conn.call(method, params, fds, wait, on_notification)

    def notify(self, method: str, params: Any = None,
               fds: Sequence[int] = ()) -> None:
        """Sends a notification (no reply). Raises TransportError."""
        self._conn.notify(method, params, fds)

    def batch(self, calls: Sequence[BatchCall], fds: Sequence[int] = (),
              timeout: float | None | _Default = USE_DEFAULT
              ) -> list[Reply | errors.VfiodError]:
        """Sends ``calls`` as one JSON-RPC batch; see Connection.batch. Not
        retried after a reconnection."""
        wait = self.timeout if isinstance(timeout, _Default) else timeout
        return self._conn.batch(calls, fds, wait)

    def keep_session(self, reconnect_for: float = 30.0,
                     on_resumed: ResumedHandler | None = None) -> None:
        """Keeps this client's session across restarts of vfiod. Fetches the
        session's resume token now (session.info); from then on, when a call
        finds the connection gone (TransportError), the client connects to
        the same socket again (trying for ``reconnect_for`` seconds), calls
        session.resume with the token so the unnamed containers and mappings
        the restart kept come back to it, tells ``on_resumed``, and fetches
        the new session's token. Raises session.info's errors."""
        info = self._conn.call("session.info", timeout=self.timeout)
        self._session = _Session(reconnect_for, on_resumed,
                                 str(info.result.get("token", "")))

    def _reconnect(self) -> bool:
        """Connects again and resumes the session; False when no daemon
        answered within reconnect_for."""
        session = self._session
        assert session is not None
        deadline = time.monotonic() + session.reconnect_for
        while True:
            try:
                fresh = Connection.connect(self.path)
                break
            except errors.TransportError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)
        fresh.on_notification = self._on_notification
        self._conn.close()
        self._conn = fresh
        # Nothing kept for the old token is not an error: the new daemon may
        # have started without a store, or after the grace period.
        resumed: dict[str, Any] | None = None
        try:
            resumed = fresh.call("session.resume", {"token": session.token},
                                 timeout=self.timeout).result
        except errors.VfiodError:
            resumed = None
        try:
            info = fresh.call("session.info", timeout=self.timeout)
            session.token = str(info.result.get("token", ""))
        except errors.VfiodError:
            pass
        if session.on_resumed is not None:
            session.on_resumed(resumed)
        return True
