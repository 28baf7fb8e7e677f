"""client/python/examples/map_memfd.py against the real vfiod: as a non-root
user the policy permits edu, and as root."""

from __future__ import annotations

import subprocess
import sys
import time
import unittest

from base import PACKAGE_DIR, DaemonTestCase, run_as
from daemon import EDU, NOBODY

EXAMPLE = PACKAGE_DIR / "examples" / "map_memfd.py"

RUN_EXAMPLE = r"""
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
"""


class MapMemfdExampleTest(DaemonTestCase):
    def test_a_non_root_user_maps_a_memfd_and_gets_the_report(self) -> None:
        out = run_as(NOBODY, RUN_EXAMPLE, str(EXAMPLE), "--socket",
                     self.daemon.socket, "--size", "2M", "--json")
        self.assertEqual(out["device"], EDU)  # the one device permitted
        self.assertEqual(out["map_fd"]["size"], 2 << 20)
        self.assertEqual(out["info"]["owner_uid"], NOBODY)
        self.assertIn(out["info"]["contiguity"]["state"],
                      ("known", "unknown"))

    def test_the_text_report(self) -> None:
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), "--socket", self.daemon.socket,
             "--device", EDU, "--size", "4M"],
            capture_output=True, text=True, timeout=120, check=True)
        self.assertIn(f"device {EDU}", done.stdout)
        self.assertRegex(done.stdout, r"mapping \d+: 4194304 bytes at IOVA")
        self.assertIn("contiguity:", done.stdout)
        # Everything was the example's connection's: released once vfiod
        # has seen it close (waiting at most 5 s for that, not timing it).
        for _ in range(100):
            if self.client.status()["mappings"] == 0:
                break
            time.sleep(0.05)
        self.assertEqual(self.client.status()["mappings"], 0)

    def test_a_refusal_is_exit_status_1_with_the_error(self) -> None:
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), "--socket", self.daemon.socket,
             "--device", "0000:00:09.0"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("[NotFound]", done.stderr)


if __name__ == "__main__":
    unittest.main()
