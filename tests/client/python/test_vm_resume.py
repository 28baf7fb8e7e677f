"""keep_session across a real restart of vfiod, on the real kernel in the
test VM (ctest vm_python_resume): vfiod runs under an fd store supervisor
(supervisor.py) as under systemd; it is SIGKILLed while the client holds an
unnamed container and mapping, started again, and the client's next call
reconnects and resumes: both come back to it with the same id and IOVA.
Skipped outside the VM (the model kernel's state dies with its process)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import unittest
from pathlib import Path

import vfiod
from supervisor import FdStoreSupervisor

EDU = os.environ.get("VFIOD_EDU_BDF", "")


@unittest.skipUnless(os.environ.get("VFIOD_IN_VM") and EDU
                     and os.geteuid() == 0,
                     "runs as root inside the test VM (tests/vm/vm_run.sh)")
class VmKeepSessionTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vfiod-pyresume-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        config = {"socket": {"path": str(self.dir / "unused.sock"),
                             "group": None},
                  "logging": {"level": "info", "target": "stderr"},
                  "kernel": "linux", "sysfs_root": "/sys",
                  "limits": {"map_chunk_bytes": "2M"}}
        self.config = self.dir / "vfiod.json"
        self.config.write_text(json.dumps(config))
        self.socket = str(self.dir / "vfiod.sock")
        self.log = os.open(self.dir / "vfiod.log",
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND
                           | os.O_CLOEXEC, 0o644)
        self.addCleanup(os.close, self.log)
        self.supervisor = FdStoreSupervisor(self.dir)
        self.addCleanup(self.supervisor.close)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket)
        listener.listen(64)
        self.supervisor.add("vfiod.socket", listener.detach())
        self.pid = 0
        self.addCleanup(self.kill, signal.SIGTERM)
        self.start()

    def start(self) -> None:
        since = len(self.supervisor.messages)
        self.pid = self.supervisor.spawn(
            [os.environ["VFIOD_BINARY"], "--config", str(self.config),
             "--foreground"], self.log)
        ready = self.supervisor.wait_for(lambda m: m.startswith("READY=1"),
                                         since)
        self.assertTrue(ready, "vfiod did not become ready:\n" + self.logs())

    def kill(self, signo: int) -> None:
        if self.pid:
            os.kill(self.pid, signo)
            os.waitpid(self.pid, 0)
            self.pid = 0
        self.supervisor.stop_pump()

    def logs(self) -> str:
        return (self.dir / "vfiod.log").read_text(errors="replace")

    def test_unnamed_objects_come_back_after_a_kill(self) -> None:
        resumed: list[object] = []
        client = vfiod.Client(self.socket)
        self.addCleanup(client.close)
        client.keep_session(reconnect_for=60, on_resumed=resumed.append)
        self.assertTrue(client.session_info()["resumable"])
        container = client.container_create([EDU])["container"]
        buf = client.dma_alloc(container, 2 << 20, "4k", dma_mask_bits=28)
        self.addCleanup(buf.close)
        # The state record naming them reached the store before the kill.
        self.assertTrue(self.supervisor.wait_for(
            lambda m: "FDNAME=vfiod-state-" in m and "FDSTORE=1" in m))
        self.kill(signal.SIGKILL)
        self.start()
        # dma.info only reads: reconnect, resume, then sent again.
        info = client.dma_info(buf.mapping)
        self.assertEqual(resumed, [{"containers": 1, "mappings": 1}],
                         self.logs())
        self.assertEqual((info["iova"], info["container"]),
                         (buf.iova, container))
        self.assertEqual([m["mapping"] for m in client.dma_list()],
                         [buf.mapping])
        # They are this connection's now: freeing works.
        self.assertEqual(client.dma_free(buf.mapping)["unmapped_bytes"],
                         2 << 20)
        client.container_destroy(container)


if __name__ == "__main__":
    unittest.main()
