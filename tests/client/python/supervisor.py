"""A stand-in for systemd's side of vfiod's fd store, in Python, for the VM
test of session resume (as tests/lifecycle/fd_store_supervisor.h is for the
C++ tests): a unix datagram socket for NOTIFY_SOCKET whose notifications
(with their SCM_RIGHTS fds) keep a store by name (FDSTORE=1 adds,
FDSTOREREMOVE=1 drops a name, the same file is kept once), and a child
started with the stored fds as 3, 4, ... and LISTEN_FDS / LISTEN_FDNAMES /
LISTEN_PID. While the child runs, a thread reads the notifications at once,
as PID 1 does (a notify socket nobody reads would block vfiod).
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_MAX_FDS = 253  # the kernel's SCM_MAX_FD


@dataclass
class Stored:
    name: str
    fd: int
    key: tuple[int, int]  # (st_dev, st_ino): one entry per file


class FdStoreSupervisor:
    """Owns the notify socket, the stored fds and the pump thread."""

    def __init__(self, folder: Path) -> None:
        self.address = str(folder / "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX,
                                   socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(self.address)
        self._lock = threading.Lock()  # guards messages and store
        self.messages: list[str] = []
        self.store: list[Stored] = []
        self._pumping = False
        self._thread: threading.Thread | None = None

    def add(self, name: str, fd: int) -> None:
        """Puts ``fd`` (owned from now on) in the store under ``name``."""
        st = os.fstat(fd)
        with self._lock:
            self.store.append(Stored(name, fd, (st.st_dev, st.st_ino)))

    def spawn(self, argv: list[str], log_fd: int) -> int:
        """fork + exec ``argv`` with the store, as systemd starts a unit;
        stdout and stderr go to ``log_fd``. Returns the child's pid. The
        pump runs from here until stop_pump()."""
        self.stop_pump()
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.address
        env["LISTEN_FDS"] = str(len(self.store))
        env["LISTEN_FDNAMES"] = ":".join(e.name for e in self.store)
        passed = [e.fd for e in self.store]
        high = 3 + len(passed) + 16
        pid = os.fork()
        if pid == 0:  # the child: only fd moves, then exec
            try:
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high)
                         for fd in passed]
                for i, fd in enumerate(moved):
                    os.dup2(fd, 3 + i)  # inheritable: survives exec
                os.closerange(3 + len(moved), os.sysconf("SC_OPEN_MAX"))
                env["LISTEN_PID"] = str(os.getpid())
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self._start_pump()
        return pid

    def wait_for(self, predicate, since: int = 0, seconds: float = 10.0
                 ) -> bool:
        """Whether a notification from index ``since`` on satisfies
        ``predicate`` within ``seconds`` (a bound, not a timing check)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with self._lock:
                if any(predicate(m) for m in self.messages[since:]):
                    return True
            time.sleep(0.02)
        return False

    def stop_pump(self) -> None:
        """Stops the pump thread, then reads what is waiting."""
        self._pumping = False
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._pump(0)

    def close(self) -> None:
        """Stops pumping, closes the socket and every stored fd."""
        self.stop_pump()
        self._sock.close()
        os.unlink(self.address)
        for entry in self.store:
            os.close(entry.fd)
        self.store = []

    def _start_pump(self) -> None:
        self._pumping = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._pumping:
            try:
                self._pump(0.005)
            except Exception as e:  # keep reading: a stalled pump blocks vfiod
                print(f"supervisor: {e!r}", file=sys.stderr)

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self._sock], [], [], timeout)
        while ready:
            try:
                data, ancdata, _, _ = self._sock.recvmsg(
                    4096, socket.CMSG_SPACE(_MAX_FDS * 4),
                    socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:len(payload) - len(payload) % 4])
            self._apply(data.decode(errors="replace"), list(fds))

    def _apply(self, text: str, fds: list[int]) -> None:
        lines = text.split("\n")
        fields = dict(line.split("=", 1) for line in lines if "=" in line)
        with self._lock:
            self.messages.append(text)
            if "FDSTOREREMOVE=1" in lines:
                name = fields.get("FDNAME", "")
                for entry in [e for e in self.store if e.name == name]:
                    os.close(entry.fd)
                    self.store.remove(entry)
            keep = "FDSTORE=1" in lines
            for fd in fds:
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino)
                if keep and all(e.key != key for e in self.store):
                    self.store.append(
                        Stored(fields.get("FDNAME", "stored"), fd, key))
                else:  # without FDSTORE=1, or a duplicate: closed
                    os.close(fd)
