"""Release notices: parsed, and a notification arriving in the middle of a
call reaches the handler without disturbing the call (a socketpair plays
the daemon)."""

from __future__ import annotations

import json
import socket
import threading
import unittest

import vfiod
from vfiod.connection import Connection


class ReleaseNoticeTest(unittest.TestCase):
    def test_both_notices_parse_and_nothing_else(self) -> None:
        asked = vfiod.parse_release_notice(
            "device.release_requested",
            {"bdf": "0000:00:03.0", "container": 7, "grace_ms": 1500,
             "reason": "unbind"})
        self.assertEqual(asked, vfiod.ReleaseNotice(
            revoked=False, bdf="0000:00:03.0", container=7, grace_ms=1500,
            reason="unbind"))
        gone = vfiod.parse_release_notice(
            "device.revoked", {"bdf": "0000:00:03.0", "container": 7,
                               "unmapped_bytes": 4096, "mappings": [3, 4],
                               "reason": "over"})
        assert gone is not None
        self.assertTrue(gone.revoked)
        self.assertEqual((gone.unmapped_bytes, gone.mappings), (4096, [3, 4]))
        self.assertIsNone(vfiod.parse_release_notice(
            "dma.progress", {"done_bytes": 1, "total_bytes": 2}))
        self.assertIsNone(vfiod.parse_release_notice(
            "device.revoked", {"bdf": 3, "container": 7}))
        self.assertIsNone(vfiod.parse_release_notice("device.revoked", []))

    def test_a_notice_during_a_call_reaches_the_handler(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(theirs.close)
        conn = Connection(ours, "<socketpair>")
        self.addCleanup(conn.close)
        heard: list[vfiod.ReleaseNotice] = []

        def handler(method: str, params: object) -> None:
            notice = vfiod.parse_release_notice(method, params)
            if notice is not None:
                heard.append(notice)

        conn.on_notification = handler

        def daemon() -> None:
            request = json.loads(theirs.makefile("rb").readline())
            notice = {"jsonrpc": "2.0", "method": "device.release_requested",
                      "params": {"bdf": "0000:00:03.0", "container": 2,
                                 "grace_ms": 0, "reason": "unbind"}}
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": {}}
            theirs.sendall((json.dumps(notice) + "\n" + json.dumps(reply)
                            + "\n").encode())

        thread = threading.Thread(target=daemon)
        thread.start()
        self.assertEqual(conn.call("ping", {}).result, {})
        thread.join()
        self.assertEqual([(n.bdf, n.container, n.revoked) for n in heard],
                         [("0000:00:03.0", 2, False)])


if __name__ == "__main__":
    unittest.main()
