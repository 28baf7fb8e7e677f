"""Starting the real vfiod binary for the Python client's tests.

As tests/integration/daemon_harness.h does: a temp folder with a fake sysfs
tree of the test VM's devices and a config on the model kernel, the daemon
as a child process on its own socket. The binary is $VFIOD_BINARY.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

EDU = "0000:00:03.0"
IVSHMEM = "0000:00:04.0"
NON_VIABLE = "0000:00:1f.3"
UNBOUND = "0000:00:05.0"
NOBODY = 65534

_EMPTY_RESOURCE = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
_EDU_RESOURCE = "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n"
_IVSHMEM_RESOURCE = (
    "0x00000000feb00000 0x00000000feb000ff 0x0000000000040200\n"
    + _EMPTY_RESOURCE
    + "0x0000000800000000 0x0000000803ffffff 0x000000000014220c\n")

# bdf, vendor, device, group, driver, resource
_DEVICES = [
    (EDU, "1234", "11e8", 3, "vfio-pci", _EDU_RESOURCE),
    (IVSHMEM, "1af4", "1110", 4, "vfio-pci", _IVSHMEM_RESOURCE),
    (NON_VIABLE, "8086", "2930", 7, "vfio-pci", _EMPTY_RESOURCE),
    ("0000:00:1f.0", "8086", "2918", 7, "lpc_ich", _EMPTY_RESOURCE),
    (UNBOUND, "8086", "100e", 5, "e1000", _EDU_RESOURCE),
]


def _config_space(vendor: str, device: str) -> bytes:
    space = bytearray(256)
    space[0:2] = int(vendor, 16).to_bytes(2, "little")
    space[2:4] = int(device, 16).to_bytes(2, "little")
    space[0x0A] = 0xFF  # class 0x00ff00
    return bytes(space)


def make_fake_sysfs(root: Path) -> None:
    """The fake sysfs tree the model kernel's daemon reads."""
    (root / "bus/pci/devices").mkdir(parents=True)
    (root / "kernel/iommu_groups").mkdir(parents=True)
    (root / "bus/pci/drivers_probe").write_text("")
    for bdf, vendor, device, group, driver, resource in _DEVICES:
        d = root / "bus/pci/devices" / bdf
        d.mkdir()
        for key, value in (("vendor", "0x" + vendor), ("device", "0x" + device),
                           ("subsystem_vendor", "0x1af4"),
                           ("subsystem_device", "0x1100"),
                           ("class", "0x00ff00"),
                           ("driver_override", "(null)"),
                           ("numa_node", "-1")):
            (d / key).write_text(value + "\n")
        (d / "resource").write_text(resource)
        (d / "config").write_bytes(_config_space(vendor, device))
        g = root / "kernel/iommu_groups" / str(group)
        (g / "devices").mkdir(parents=True, exist_ok=True)
        (g / "devices" / bdf).symlink_to(d)
        (d / "iommu_group").symlink_to(g)
        drv = root / "bus/pci/drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        (drv / "bind").write_text("")
        (drv / "unbind").write_text("")
        (d / "driver").symlink_to(drv)


def default_policy() -> dict[str, Any]:
    """uid 65534 may use edu only, with a 4 MiB / 2 mappings / 1 container
    quota; device.unbind is root's alone."""
    return {"rules": [{"users": [NOBODY], "devices": [EDU],
                       "quota": {"locked_bytes": "4M", "mappings": 2,
                                 "containers": 1}}],
            "root_only": ["device.unbind"]}


class Daemon:
    """One vfiod on the model kernel with its own folder, config and socket;
    ``limits`` and ``model`` add to those config sections.
    start() may be called again after stop() (a restart on the same
    socket path)."""

    def __init__(self, limits: dict[str, Any] | None = None,
                 model: dict[str, Any] | None = None) -> None:
        self.binary = os.environ["VFIOD_BINARY"]
        self.dir = Path(tempfile.mkdtemp(prefix="vfiod-pytest-"))
        self.dir.chmod(0o755)
        self.socket = str(self.dir / "vfiod.sock")
        self.log = self.dir / "vfiod.log"
        make_fake_sysfs(self.dir / "sys")
        config = {
            "socket": {"path": self.socket, "group": None, "mode": "0666"},
            "limits": {"map_chunk_bytes": "2M", "worker_threads": 2,
                       **(limits or {})},
            "logging": {"level": "debug", "target": "stderr"},
            "policy": default_policy(),
            "kernel": "model",
            "sysfs_root": str(self.dir / "sys"),
            "model": {"devices": [
                {"bdf": bdf, "vendor": vendor, "device": device,
                 "group": group, "bound": driver == "vfio-pci"}
                for bdf, vendor, device, group, driver, _ in _DEVICES],
                **(model or {})},
        }
        self.config = self.dir / "vfiod.json"
        self.config.write_text(json.dumps(config, indent=2))
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Starts vfiod and waits until its socket accepts (its start-up,
        not a timing assertion). Raises RuntimeError with its log."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--config", str(self.config), "--foreground"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        for _ in range(1000):
            if self._answers():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("vfiod did not start; its log:\n" + self.log_text())

    def stop(self) -> int:
        """SIGTERM, then waits; the exit status (negative: a signal)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait()
        self.proc = None
        return status

    def cleanup(self) -> None:
        """Stops vfiod and removes the folder."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() \
            else ""

    def _answers(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()
