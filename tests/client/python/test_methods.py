"""Every RPC method through the Python client, against the real vfiod on the
model kernel, with fd passing both ways."""

from __future__ import annotations

import json
import mmap
import os
import stat
import time
import unittest
from pathlib import Path

import vfiod
from base import DaemonTestCase, daemon_bytes, make_memfd
from daemon import EDU, IVSHMEM, NOBODY, UNBOUND

OPENRPC = Path(os.environ.get("VFIOD_OPENRPC_JSON", "proto/openrpc.json"))


class DaemonMethodsTest(DaemonTestCase):
    def test_every_documented_method_has_a_client_method(self) -> None:
        documented = {m["name"] for m in
                      json.loads(OPENRPC.read_text())["methods"]}
        served = {m["name"] for m in self.client.rpc_discover()["methods"]}
        self.assertEqual(served, documented)
        missing = [name for name in sorted(served)
                   if not callable(getattr(vfiod.Client,
                                           name.replace(".", "_"), None))]
        self.assertEqual(missing, [])

    def test_ping_version_status_stats(self) -> None:
        self.assertEqual(self.client.ping(), {})
        version = self.client.version()
        self.assertIsInstance(version["api"], int)
        self.assertIsInstance(version["version"], str)
        status = self.client.status()
        self.assertEqual(status["kernel"], "model")
        self.assertGreaterEqual(status["clients"], 1)
        stats = self.client.stats()
        self.assertGreaterEqual(stats["by_method"]["ping"]["calls"], 1)
        text = self.client.metrics()
        self.assertIn("# TYPE vfiod_requests_total counter\n", text)
        self.assertTrue(text.endswith("\n"))


    def test_session_info_and_resume_without_a_store(self) -> None:
        info = self.client.session_info()
        self.assertRegex(info["token"], r"^[0-9a-f]{32}$")
        self.assertFalse(info["resumable"])
        with self.assertRaises(vfiod.InvalidParamsError):
            self.client.session_resume("x" * 32)
        with self.assertRaises(vfiod.NotFoundError):
            self.client.session_resume("a" * 32)
        with self.assertRaises(vfiod.BusyError):  # no fd store: refused
            self.client.daemon_restart()
        self.assertEqual(self.client.ping(), {})


class DeviceMethodsTest(DaemonTestCase):
    def test_list_and_info(self) -> None:
        devices = {d["bdf"]: d for d in self.client.device_list()}
        self.assertIn(EDU, devices)
        info = self.client.device_info(EDU)
        self.assertEqual(info["bdf"], EDU)
        self.assertEqual(info["vendor"], "0x1234")
        self.assertEqual(info["iommu_group"], 3)

    def test_bind_and_unbind(self) -> None:
        bound = self.client.device_bind(UNBOUND)
        self.assertEqual(bound["driver"], "vfio-pci")
        unbound = self.client.device_unbind(UNBOUND)
        self.assertNotEqual(unbound["driver"], "vfio-pci")

    def test_open_hands_over_a_device_fd_and_reset(self) -> None:
        container = self.edu_container()
        with self.client.device_open(container, EDU) as device:
            self.assertEqual(device.bdf, EDU)
            self.assertGreater(device.num_regions, 0)
            fd = device.fd
            self.assertGreaterEqual(fd, 0)
            os.fstat(fd)  # a live fd of this process
            self.assertFalse(os.get_inheritable(fd))  # received O_CLOEXEC
        self.assertEqual(device.fd, -1)
        with self.assertRaises(OSError):
            os.fstat(fd)  # closed with the DeviceFd
        self.assertIn(self.client.device_reset(EDU)["method"],
                      ("function", "hot"))


class ContainerMethodsTest(DaemonTestCase):
    def test_named_container_lifecycle(self) -> None:
        created = self.client.container_create(
            [EDU], name="py", share_with={"users": [NOBODY]})
        container = created["container"]
        self.assertEqual(created["name"], "py")
        try:
            self.assertEqual(self.client.container_attach("py")["container"],
                             container)
            shared = self.client.container_unshare(container, users=[NOBODY])
            self.assertEqual(shared["shared_with"]["users"], [])
            shared = self.client.container_share(container, users=[NOBODY])
            self.assertEqual([u["uid"] if isinstance(u, dict) else u
                              for u in shared["shared_with"]["users"]],
                             [NOBODY])
            listed = [c["container"] for c in self.client.container_list()]
            self.assertIn(container, listed)
            self.assertEqual(self.client.container_info(container)
                             ["mappings"], [])
        finally:
            self.client.container_destroy(container)
        with self.assertRaises(vfiod.NotFoundError):
            self.client.container_info(container)


class DmaMethodsTest(DaemonTestCase):
    def test_alloc_hands_over_the_memory_that_is_mapped(self) -> None:
        container = self.edu_container()
        size = 1 << 20
        with self.client.dma_alloc(container, size, "4k",
                                   dma_mask_bits=28) as buf:
            self.assertEqual((buf.size, buf.backing), (size, "4k"))
            self.assertLess(buf.iova + size, 1 << 28)
            with buf.mmap() as mem:
                mem[:11] = b"vfiod-py-rx"
            # The daemon's own mapping of the file holds those bytes.
            self.assertEqual(daemon_bytes(self.daemon.pid, buf.fd, 11),
                             b"vfiod-py-rx")
            info = self.client.dma_info(buf.mapping)
            self.assertEqual(info["iova"], buf.iova)
            self.assertIn(info["contiguity"]["state"], ("known", "unknown"))
            self.assertEqual([m["mapping"] for m in
                              self.client.dma_list(container)], [buf.mapping])
            self.assertEqual(self.client.dma_free(buf.mapping)
                             ["unmapped_bytes"], size)
        with self.assertRaises(vfiod.NotFoundError):
            self.client.dma_free(buf.mapping)

    def test_alloc_reports_progress(self) -> None:
        container = self.edu_container()
        seen: list[dict] = []
        size = 8 << 20  # four chunks of 2 MiB
        buf = self.client.dma_alloc(container, size, "thp",
                                    progress=seen.append)
        buf.close()
        self.assertTrue(seen)
        self.assertEqual(seen[-1], {"done_bytes": size, "total_bytes": size})
        # Without a progress handler of the call's own, notifications go to
        # the client's handler.
        notes: list[tuple[str, dict]] = []
        self.client.on_notification = lambda m, p: notes.append((m, p))
        fd = make_memfd(size)
        self.addCleanup(os.close, fd)
        self.client.call("dma.map_fd", {"container": container,
                                        "fd": {"fd": 0}, "progress": True},
                         [fd])
        self.assertEqual(notes[-1], ("dma.progress", {"done_bytes": size,
                                                      "total_bytes": size}))

    def test_map_fd_sends_the_clients_memfd(self) -> None:
        container = self.edu_container()
        size = 2 << 20
        fd = make_memfd(size)
        self.addCleanup(os.close, fd)
        with mmap.mmap(fd, size) as mem:
            mem[4096:4096 + 11] = b"vfiod-py-tx"
        mapped = self.client.dma_map_fd(container, fd, size=size)
        self.assertEqual(mapped["size"], size)
        # vfiod mapped the very file this process sent.
        self.assertEqual(daemon_bytes(self.daemon.pid, fd, 11, 4096),
                         b"vfiod-py-tx")
        self.assertEqual(self.client.status()["locked_bytes"], size)
        self.client.dma_free(mapped["mapping"])

    def test_register_then_map_slices(self) -> None:
        container = self.edu_container()
        fd = make_memfd(4 << 20)
        self.addCleanup(os.close, fd)
        with vfiod.OwnedFd(os.dup(fd)) as owned:  # fileno() objects work too
            region = self.client.dma_register(owned)
        self.assertEqual((region["size"], region["backing"]),
                         (4 << 20, "memfd"))
        rid = region["region"]
        self.assertEqual([r["region"] for r in self.client.dma_regions()],
                         [rid])
        plain = self.client.dma_map_fd(container, region=rid, offset=4096,
                                       size=8192)
        self.assertEqual(plain["size"], 8192)
        scatter = self.client.dma_map_fd(
            container, region=rid,
            segments=[{"offset": 0, "size": 4096},
                      {"offset": 1 << 20, "size": 4096}])
        self.assertEqual(len(scatter["segments"]), 2)
        self.assertEqual(self.client.dma_unregister(rid), {"region": rid})
        with self.assertRaises(vfiod.NotFoundError):
            self.client.dma_unregister(rid)
        self.assertEqual(self.client.dma_regions(), [])

    def test_map_bar_is_peer_to_peer(self) -> None:
        container = self.client.container_create([EDU, IVSHMEM])["container"]
        bar = self.client.dma_map_bar(container, IVSHMEM, 2)
        self.assertEqual(bar["size"], 64 << 20)
        self.assertTrue(bar["aligned"])
        self.assertEqual(self.client.status()["locked_bytes"], 0)


class GenericCallsTest(DaemonTestCase):
    def test_batch_gives_each_call_its_result_or_error(self) -> None:
        results = self.client.batch([
            vfiod.BatchCall("ping"), vfiod.BatchCall("ping", None, True),
            vfiod.BatchCall("version"),
            vfiod.BatchCall("dma.info", {"mapping": 999})])
        self.assertEqual(len(results), 3)
        self.assertIsInstance(results[0], vfiod.Reply)
        self.assertEqual(results[1].result["api"],
                         self.client.version()["api"])
        self.assertIsInstance(results[2], vfiod.NotFoundError)

    def test_batch_fds_go_to_the_element_that_names_them(self) -> None:
        container = self.edu_container()
        fd = make_memfd(1 << 20)
        self.addCleanup(os.close, fd)
        alloc = vfiod.BatchCall("dma.alloc", {"container": container,
                                              "size": 4096, "backing": "4k"})
        results = self.client.batch([
            alloc,
            vfiod.BatchCall("dma.map_fd", {"container": container,
                                           "fd": {"fd": 0}}),
            alloc], [fd])
        first, mapped, second = results
        self.assertIsInstance(mapped, vfiod.Reply)
        self.assertEqual(mapped.fds, [])
        for reply in (first, second):
            self.assertIsInstance(reply, vfiod.Reply)
            self.addCleanup(reply.close)
            # The line carried two memfds; each reply owns its own as fd 0.
            self.assertEqual(reply.result["fd"], {"fd": 0})
            self.assertEqual(len(reply.fds), 1)
            self.assertTrue(stat.S_ISREG(os.fstat(reply.fds[0]).st_mode))
        self.assertNotEqual(os.fstat(first.fds[0]).st_ino,
                            os.fstat(second.fds[0]).st_ino)

    def test_notification_gets_no_reply(self) -> None:
        self.client.notify("ping")
        self.assertEqual(self.client.ping(), {})



class SlowMapTest(DaemonTestCase):
    # Every MAP_DMA of the model sleeps 1 s per MiB: a 4 MiB map takes 4 s.
    model = {"map_dma_us_per_mib": 1_000_000}

    def test_a_timed_out_reply_is_dropped_and_the_next_call_works(
            self) -> None:
        container = self.edu_container()
        with self.assertRaises(vfiod.CallTimeoutError) as caught:
            self.client.dma_alloc(container, 4 << 20, "4k", timeout=0.2)
        self.assertEqual(caught.exception.code, -32091)
        self.assertFalse(self.client.closed)
        # The map goes on; every reply read meanwhile is matched by id, so
        # the late dma.alloc reply (and its memfd) is dropped, never taken
        # for another call's.
        while self.client.status()["mappings"] == 0:
            self.assertEqual(self.client.ping(), {})
            time.sleep(0.05)
        self.assertEqual(self.client.ping(), {})
        self.assertEqual(len(self.client.dma_list(container)), 1)


if __name__ == "__main__":
    unittest.main()
