"""The line framer's fd attachment rule (proto/fd_passing.h), unit-tested
with real fds."""

from __future__ import annotations

import os
import unittest

from vfiod import wire


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


class LineFramerTest(unittest.TestCase):
    def setUp(self) -> None:
        self.framer = wire.LineFramer(max_frame=64)
        self.addCleanup(self.framer.close)

    def frames(self) -> list[wire.Frame]:
        out = []
        while self.framer.has_frame():
            out.append(self.framer.pop())
        for frame in out:
            self.addCleanup(frame.close_fds)
        return out

    def test_fds_go_to_the_last_line_started_in_the_read(self) -> None:
        fd = os.memfd_create("t", os.MFD_CLOEXEC)
        self.framer.feed(b'{"a":1}\n{"b":', [fd], False)
        self.framer.feed(b"2}\n", [], False)
        first, second = self.frames()
        self.assertEqual((first.line, first.fds), (b'{"a":1}', []))
        self.assertEqual((second.line, second.fds), (b'{"b":2}', [fd]))

    def test_fds_of_a_read_continuing_a_line_are_closed(self) -> None:
        self.framer.feed(b'{"a":', [], False)
        fd = os.memfd_create("t", os.MFD_CLOEXEC)
        self.framer.feed(b"1}\n", [fd], False)
        (frame,) = self.frames()
        self.assertEqual(frame.fds, [])
        self.assertFalse(fd_is_open(fd))

    def test_truncated_control_data_marks_the_line(self) -> None:
        self.framer.feed(b"{}\n", [], True)
        (frame,) = self.frames()
        self.assertTrue(frame.fd_error)

    def test_an_overlong_line_overflows(self) -> None:
        fd = os.memfd_create("t", os.MFD_CLOEXEC)
        self.framer.feed(b"x" * 65, [fd], False)
        self.assertTrue(self.framer.overflowed)
        self.assertFalse(self.framer.has_frame())
        self.assertFalse(fd_is_open(fd))

    def test_fd_refs_are_found_anywhere(self) -> None:
        value = {"a": [{"fd": 1}, {"b": {"fd": 0}}], "fd": {"fd": 2, "x": 1}}
        self.assertEqual([r["fd"] for r in wire.iter_fd_refs(value)], [1, 0])
        self.assertIsNone(wire.as_fd_ref({"fd": True}))
        self.assertIsNone(wire.as_fd_ref({"fd": -1}))


if __name__ == "__main__":
    unittest.main()
