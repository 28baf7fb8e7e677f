"""Objects that own an fd the daemon handed over: DMA memory and devices.

Each owns exactly one fd, closed by close() or at the end of a ``with``
block (and, as a last resort, when garbage-collected). Closing the fd does
not free the mapping or the container: that is dma.free / container.destroy
(or the connection closing, for unnamed objects).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OwnedFd:
    """One fd, owned. ``fd`` is -1 once closed or detached."""
    fd: int

    def close(self) -> None:
        """Closes the fd (idempotent)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def detach(self) -> int:
        """Hands the fd to the caller, who closes it from now on."""
        fd, self.fd = self.fd, -1
        return fd

    def fileno(self) -> int:
        """The fd, for os/socket/mmap calls that take file-like objects."""
        return self.fd

    def __enter__(self) -> OwnedFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass


@dataclass
class DmaBuffer(OwnedFd):
    """Memory vfiod allocated and mapped for DMA (dma.alloc): its memfd (or
    hugetlbfs file) plus the reply. The device sees ``size`` bytes at
    ``iova``; the program sees them by mmap()ing ``fd`` (see mmap())."""
    mapping: int = 0
    iova: int = 0
    size: int = 0
    backing: str = ""
    #: The whole dma.alloc result (chunks, ioctls, huge with require).
    info: dict[str, Any] = field(default_factory=dict)

    def mmap(self, writable: bool = True) -> mmap.mmap:
        """A shared mapping of the whole buffer (``size`` bytes) in this
        process; writes are what the device reads. The mmap object is the
        caller's to close (it stays valid after close() of the fd)."""
        return map_shared(self.fd, self.size, writable)


def map_shared(fd: int, size: int, writable: bool = True) -> mmap.mmap:
    """A MAP_SHARED mapping of the first ``size`` bytes of file ``fd`` (a
    memfd or hugetlbfs file): what this process writes there is what a
    device mapped from the same file reads. Raises OSError / ValueError."""
    access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
    return mmap.mmap(fd, size, access=access)


@dataclass
class DeviceFd(OwnedFd):
    """A VFIO device fd (device.open): the program drives the device with
    VFIO ioctls and region mmaps on ``fd``; vfiod keeps its group."""
    bdf: str = ""
    num_regions: int = 0
    num_irqs: int = 0
    flags: int = 0
    info: dict[str, Any] = field(default_factory=dict)
