"""Shared test fixtures: one real vfiod per test class, a connected client
per test, and small helpers (memfds, reading the daemon's memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

import vfiod
from daemon import EDU, Daemon

#: Where the package lives in the source tree (put on PYTHONPATH by ctest).
PACKAGE_DIR = Path(vfiod.__file__).resolve().parent.parent


class DaemonTestCase(unittest.TestCase):
    """Starts one vfiod for the class; each test gets ``self.client``. The
    class ends with a clean shutdown of vfiod (exit status 0)."""

    daemon: Daemon
    limits: dict | None = None
    model: dict | None = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = Daemon(cls.limits, cls.model)

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            status = cls.daemon.stop()
            if status != 0:
                raise AssertionError(
                    f"vfiod exited {status}; log:\n{cls.daemon.log_text()}")
        finally:
            cls.daemon.cleanup()

    def setUp(self) -> None:
        fds_before = open_fds()
        # Cleanups run last first: this one after everything else closed.
        self.addCleanup(lambda: self.assertEqual(open_fds(), fds_before,
                                                 "fds leaked"))
        self.client = vfiod.Client(self.daemon.socket)
        self.addCleanup(self.expect_all_released)
        self.addCleanup(self.client.close)

    def expect_all_released(self) -> None:
        """After the test's connections closed: every container and mapping
        they made is released (waiting at most 5 s for vfiod to see the
        closes; not a timing assertion), so the next test starts clean."""
        with vfiod.Client(self.daemon.socket) as probe:
            for _ in range(100):
                status = probe.status()
                if status["containers"] == 0 and status["mappings"] == 0:
                    return
                time.sleep(0.05)
        self.fail(f"left behind: {status}")

    def edu_container(self) -> int:
        """An unnamed container holding edu (released with the client)."""
        return self.client.container_create([EDU])["container"]


def open_fds() -> set[int]:
    """This process's open fds."""
    return {int(name) for name in os.listdir("/proc/self/fd")} - {-1}


def make_memfd(size: int, name: str = "pytest") -> int:
    """A sealable memfd of ``size`` bytes, closed at process exit by the
    caller's cleanup."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    return fd


def daemon_bytes(pid: int, fd: int, length: int, offset: int = 0) -> bytes:
    """``length`` bytes at ``offset`` of the daemon's own mapping of the file
    behind ``fd`` (found by inode in /proc/<pid>/maps, read from
    /proc/<pid>/mem): what vfiod (and so the device) sees of that memory."""
    inode = os.fstat(fd).st_ino
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 5 and int(fields[4]) == inode:
                start = int(fields[0].split("-")[0], 16)
                file_offset = int(fields[2], 16)
                with open(f"/proc/{pid}/mem", "rb") as mem:
                    mem.seek(start + offset - file_offset)
                    return mem.read(length)
    raise AssertionError(f"vfiod has no mapping of inode {inode}")


def run_as(uid: int, code: str, *args: str) -> dict:
    """Runs ``code`` in a new python3 as ``uid`` (its own group too) with the
    package importable; returns the JSON object it prints last."""
    env = {"PYTHONPATH": str(PACKAGE_DIR), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env,
                          user=uid, group=uid, extra_groups=[],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
