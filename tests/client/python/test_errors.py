"""Bad input through the Python client: each error arrives as the exception
class of its stable code, with the code, kind, errno and detail the daemon
sent; local failures are TransportError / ProtocolError."""

from __future__ import annotations

import errno
import os
import unittest

import vfiod
from base import DaemonTestCase, make_memfd, run_as
from daemon import EDU, IVSHMEM, NOBODY
from vfiod import errors

# Run as uid 65534: the policy grants it edu only, 4 MiB locked, 1 container.
NOBODY_CODE = r"""
import json, sys, vfiod
seen = {}
with vfiod.Client(sys.argv[1]) as c:
    for key, call in (
            ("ivshmem", lambda: c.container_create([sys.argv[3]])),
            ("edu", lambda: c.container_create([sys.argv[2]])),
            ("over_quota", lambda: c.dma_alloc(seen["edu"], 8 << 20, "4k")),
            ("unbind", lambda: c.device_unbind(sys.argv[2]))):
        try:
            result = call()
            seen[key] = result["container"]
        except vfiod.VfiodError as e:
            seen[key] = [type(e).__name__, e.code, e.kind, e.detail]
print(json.dumps(seen))
"""


class BadInputTest(DaemonTestCase):
    limits = {"max_frame_bytes": "64K"}

    def test_invalid_params_carry_the_json_path(self) -> None:
        container = self.edu_container()
        with self.assertRaises(vfiod.InvalidParamsError) as caught:
            self.client.dma_alloc(container, 4097, "4k")
        e = caught.exception
        self.assertEqual((e.code, e.kind, e.method),
                         (-32602, "InvalidParams", "dma.alloc"))
        self.assertIn("params.size", e.detail)
        with self.assertRaises(vfiod.InvalidParamsError) as caught:
            self.client.dma_alloc(container, 4096, "5k")
        self.assertIn("params.backing", caught.exception.detail)
        with self.assertRaises(vfiod.InvalidParamsError):
            self.client.device_info("not-a-bdf")
        with self.assertRaises(vfiod.InvalidParamsError):
            self.client.dma_map_bar(container, EDU, 9)
        self.assertEqual(self.client.status()["mappings"], 0)

    def test_unknown_objects_are_not_found(self) -> None:
        with self.assertRaises(vfiod.NotFoundError) as caught:
            self.client.dma_info(12345)
        self.assertEqual((caught.exception.code, caught.exception.kind),
                         (-32003, "NotFound"))
        with self.assertRaises(vfiod.NotFoundError):
            self.client.device_info("0000:00:09.0")
        with self.assertRaises(vfiod.NotFoundError):
            self.client.container_destroy(999)

    def test_kernel_errors_carry_errno(self) -> None:
        container = self.edu_container()
        self.client.dma_alloc(container, 4096, "4k", iova=0x100000).close()
        with self.assertRaises(vfiod.KernelError) as caught:
            self.client.dma_alloc(container, 4096, "4k", iova=0x100000)
        e = caught.exception
        self.assertEqual((e.code, e.errno, e.errno_name),
                         (-32001, errno.EEXIST, "EEXIST"))
        self.assertIn("[EEXIST]", str(e))

    def test_fd_errors(self) -> None:
        container = self.edu_container()
        with self.assertRaises(vfiod.FdError):  # names an fd it did not send
            self.client.call("dma.map_fd", {"container": container,
                                            "fd": {"fd": 0}})
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, write_end)
        with self.assertRaises(vfiod.VfiodError) as caught:  # not memory
            self.client.dma_map_fd(container, read_end, size=4096)
        self.assertIn(caught.exception.code, (errors.FD_ERROR,
                                              errors.INVALID_PARAMS))
        self.assertEqual(self.client.status()["mappings"], 0)

    def test_too_many_fds_are_refused_before_sending(self) -> None:
        fds = [make_memfd(4096) for _ in range(17)]
        for fd in fds:
            self.addCleanup(os.close, fd)
        with self.assertRaises(vfiod.TransportError) as caught:
            self.client.call("ping", None, fds)
        self.assertEqual(caught.exception.errno, errno.EINVAL)

    def test_unknown_method(self) -> None:
        with self.assertRaises(vfiod.MethodNotFoundError) as caught:
            self.client.call("dma.teleport")
        self.assertEqual(caught.exception.code, -32601)

    def test_a_line_over_the_frame_limit_closes_the_connection(self) -> None:
        with self.assertRaises(vfiod.FrameTooLargeError) as caught:
            self.client.call("ping", {"pad": "x" * (128 << 10)})
        self.assertEqual(caught.exception.code, -32006)
        with self.assertRaises(vfiod.TransportError):  # the daemon hung up
            self.client.ping()
        self.assertTrue(self.client.closed)

    def test_policy_and_quota_refusals_for_a_non_root_user(self) -> None:
        seen = run_as(NOBODY, NOBODY_CODE, self.daemon.socket, EDU, IVSHMEM)
        self.assertEqual(seen["ivshmem"][:3],
                         ["PermissionDeniedError", -32002, "Permission"])
        self.assertIsInstance(seen["edu"], int)
        self.assertEqual(seen["over_quota"][:3],
                         ["QuotaExceededError", -32004, "Quota"])
        self.assertEqual(seen["unbind"][:3],
                         ["PermissionDeniedError", -32002, "Permission"])


class BatchLimitTest(DaemonTestCase):
    limits = {"max_batch": 2}

    def test_a_batch_refused_whole_raises_its_error(self) -> None:
        with self.assertRaises(vfiod.InvalidRequestError) as caught:
            self.client.batch([vfiod.BatchCall("ping")] * 3)
        self.assertEqual(caught.exception.code, -32600)
        self.assertEqual(len(self.client.batch([vfiod.BatchCall("ping")] * 2)),
                         2)
        with self.assertRaises(ValueError):
            self.client.batch([])


class LocalErrorsTest(unittest.TestCase):
    def test_no_daemon_is_a_transport_error(self) -> None:
        with self.assertRaises(vfiod.TransportError) as caught:
            vfiod.Client("/nonexistent/vfiod.sock")
        e = caught.exception
        self.assertEqual((e.code, e.kind, e.errno), (-32090, "Transport",
                                                     errno.ENOENT))

    def test_every_code_has_its_class(self) -> None:
        for code, cls in ((-32700, vfiod.ParseError),
                          (-32600, vfiod.InvalidRequestError),
                          (-32603, vfiod.InternalError),
                          (-32005, vfiod.BusyError),
                          (-32008, vfiod.CancelledError),
                          (-32009, vfiod.ConflictError),
                          (-32010, vfiod.ShuttingDownError)):
            e = errors.from_error_object(
                {"code": code, "message": "m",
                 "data": {"detail": "d", "limit": "max_clients"}})
            self.assertIs(type(e), cls)
            self.assertEqual((e.code, e.detail, e.limit),
                             (code, "d", "max_clients"))
        unknown = errors.from_error_object({"code": -32050, "message": "m"})
        self.assertIs(type(unknown), vfiod.VfiodError)
        self.assertIsInstance(errors.from_error_object({"code": "x"}),
                              vfiod.ProtocolError)


if __name__ == "__main__":
    unittest.main()
