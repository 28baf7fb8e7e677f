"""The Python client on the real kernel in the test VM (ctest
vm_python_client), vfiod running under an fd store supervisor
(supervisor.py) as under systemd:

* keep_session across a real restart: vfiod is restarted (daemon.restart:
  handed over through the store, exit 75, started again as the unit would)
  while the client holds an unnamed container and mapping, and the client's
  next call reconnects and resumes: both come back with the same id and IOVA.
  (A SIGKILL instead races the state record of the last change; the C++ VM
  test vm_restart covers kills.)
* the example map_memfd.py as uid 65534 (permitted edu by the policy):
  vfiod maps its memfd and the contiguity report is known and accounts for
  every byte.

Skipped outside the VM (the model kernel's state dies with its process)."""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import unittest
from pathlib import Path

import vfiod
from base import PACKAGE_DIR, run_as
from daemon import NOBODY
from supervisor import FdStoreSupervisor
from test_example import RUN_EXAMPLE

EDU = os.environ.get("VFIOD_EDU_BDF", "")


@unittest.skipUnless(os.environ.get("VFIOD_IN_VM") and EDU
                     and os.geteuid() == 0,
                     "runs as root inside the test VM (tests/vm/vm_run.sh)")
class VmClientTest(unittest.TestCase):
    def setUp(self) -> None:
        # A hang (here or in vfiod) becomes a failure with every thread's
        # stack, before the VM's own timeout kills the guest.
        faulthandler.dump_traceback_later(200, exit=True)
        self.addCleanup(faulthandler.cancel_dump_traceback_later)
        self.dir = Path(tempfile.mkdtemp(prefix="vfiod-pyresume-"))
        self.dir.chmod(0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        config = {"socket": {"path": str(self.dir / "unused.sock"),
                             "group": None},
                  "logging": {"level": "info", "target": "stderr"},
                  "kernel": "linux", "sysfs_root": "/sys",
                  "limits": {"map_chunk_bytes": "2M"},
                  "policy": {"rules": [{
                      "users": [NOBODY], "devices": [EDU],
                      "quota": {"locked_bytes": "64M", "mappings": 4,
                                "containers": 1}}]}}
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
        os.chmod(self.socket, 0o666)  # uid 65534 connects too
        listener.listen(64)
        self.supervisor.add("vfiod.socket", listener.detach())
        self.pid = 0
        if os.environ.get("VFIOD_TEST_SHOW_LOG"):  # a debugging aid
            self.addCleanup(lambda: print(self.logs(), file=sys.stderr))
        self.addCleanup(self.kill, signal.SIGTERM)
        self.start()

    def start(self) -> None:
        since = len(self.supervisor.messages)
        self.pid = self.supervisor.spawn(
            [os.environ["VFIOD_BINARY"], "--config", str(self.config),
             "--foreground"], self.log)
        # A bound for a guest under TCG on a busy host (loading the binary
        # over 9p alone can take seconds), not a timing assertion.
        ready = self.supervisor.wait_for(lambda m: m.startswith("READY=1"),
                                         since, seconds=90)
        self.assertTrue(ready, "vfiod did not become ready:\n" + self.logs())

    def kill(self, signo: int) -> None:
        if self.pid:
            os.kill(self.pid, signo)
        self.wait_exit()

    def wait_exit(self) -> int:
        """Reaps vfiod; its exit code (as waitstatus_to_exitcode)."""
        code = 0
        if self.pid:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.pid = 0
        self.supervisor.stop_pump()
        return code

    def logs(self) -> str:
        return (self.dir / "vfiod.log").read_text(errors="replace")

    def test_unnamed_objects_come_back_after_a_restart(self) -> None:
        resumed: list[object] = []
        client = vfiod.Client(self.socket)
        self.addCleanup(client.close)
        client.keep_session(reconnect_for=60, on_resumed=resumed.append)
        self.assertTrue(client.session_info()["resumable"])
        container = client.container_create([EDU])["container"]
        buf = client.dma_alloc(container, 2 << 20, "4k", dma_mask_bits=28)
        self.addCleanup(buf.close)
        with vfiod.Client(self.socket) as admin:
            self.assertEqual(admin.daemon_restart(), {"restarting": True})
        self.assertEqual(self.wait_exit(), 75, self.logs())
        self.start()  # what the unit does for exit status 75
        # dma.info only reads: reconnect, resume, then sent again.
        try:
            info = client.dma_info(buf.mapping)
        except vfiod.VfiodError as e:
            self.fail(f"{e}; resumed {resumed}; vfiod's log:\n{self.logs()}")
        self.assertEqual(resumed, [{"containers": 1, "mappings": 1, "regions": 0}],
                         self.logs())
        self.assertEqual((info["iova"], info["container"]),
                         (buf.iova, container))
        self.assertEqual([m["mapping"] for m in client.dma_list()],
                         [buf.mapping])
        # They are this connection's now: freeing works.
        self.assertEqual(client.dma_free(buf.mapping)["unmapped_bytes"],
                         2 << 20)
        client.container_destroy(container)

    def test_the_example_reports_contiguity_as_a_non_root_user(self) -> None:
        size = 4 << 20
        out = run_as(NOBODY, RUN_EXAMPLE,
                     str(PACKAGE_DIR / "examples" / "map_memfd.py"),
                     "--socket", self.socket, "--size", str(size), "--json")
        self.assertEqual((out["device"], out["info"]["owner_uid"]),
                         (EDU, NOBODY))
        contiguity = out["info"]["contiguity"]
        self.assertEqual(contiguity["state"], "known", contiguity)
        folio_bytes = {"4K": 4 << 10, "2M": 2 << 20, "1G": 1 << 30}
        self.assertEqual(sum(folio_bytes[k] * n for k, n in
                             contiguity["folios"].items()), size, contiguity)
        self.assertGreaterEqual(contiguity["runs"], 1)


if __name__ == "__main__":
    unittest.main()
