"""Client.keep_session: reconnect and session.resume when the connection is
gone, against the real vfiod.

On the host the daemon runs on the model kernel, whose state lives and dies
with the process, so a restarted vfiod keeps nothing: session.resume answers
NotFound and on_resumed is told None (the full take-over, with containers and
mappings coming back, needs the real kernel: test_vm.py, in the VM).
What is proven here is the client's side: it notices, reconnects to the new
daemon, sends session.resume with the old token, fetches the new token,
re-sends a read and does not re-send a write.
"""

from __future__ import annotations

import unittest

import vfiod
from base import DaemonTestCase
from daemon import EDU


class KeepSessionTest(DaemonTestCase):
    def test_reconnects_to_a_restarted_daemon_and_resumes(self) -> None:
        resumed: list[object] = []
        self.client.keep_session(reconnect_for=30, on_resumed=resumed.append)
        old_token = self.client.session_token
        self.assertRegex(old_token or "", r"^[0-9a-f]{32}$")
        self.edu_container()
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon.start()  # a new vfiod on the same socket path
        # dma.list only reads: sent again on the new connection.
        self.assertEqual(self.client.dma_list(), [])
        self.assertEqual(resumed, [None])  # the model kept nothing
        self.assertNotEqual(self.client.session_token, old_token)
        self.assertEqual(self.client.session_info()["token"],
                         self.client.session_token)
        resume = self.client.stats()["by_method"]["session.resume"]
        self.assertEqual((resume["calls"], resume["errors"]), (1, 1))

    def test_a_write_is_not_sent_again(self) -> None:
        resumed: list[object] = []
        self.client.keep_session(on_resumed=resumed.append)
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon.start()
        with self.assertRaises(vfiod.TransportError):
            self.client.container_create([EDU])  # may have run before
        self.assertEqual(resumed, [None])
        self.assertEqual(self.client.container_list(), [])  # not re-sent
        self.client.container_create([EDU])  # the new connection works

    def test_a_dropped_connection_reconnects_to_the_same_daemon(self) -> None:
        resumed: list[object] = []
        self.client.keep_session(on_resumed=resumed.append)
        # The connection breaks under the client (as when vfiod closes it).
        self.client._conn._sock.shutdown(2)  # type: ignore[union-attr]
        self.assertEqual(self.client.ping(), {})
        self.assertEqual(len(resumed), 1)
        self.assertFalse(self.client.closed)

    def test_a_closed_client_is_not_reconnected(self) -> None:
        self.client.keep_session()
        self.client.close()
        with self.assertRaises(vfiod.TransportError):
            self.client.ping()
        self.assertTrue(self.client.closed)

    def test_without_keep_session_a_dropped_connection_stays_down(
            self) -> None:
        self.client._conn._sock.shutdown(2)  # type: ignore[union-attr]
        with self.assertRaises(vfiod.TransportError):
            self.client.ping()
        with self.assertRaises(vfiod.TransportError) as caught:
            self.client.ping()
        self.assertIn("closed earlier", caught.exception.detail)


if __name__ == "__main__":
    unittest.main()
