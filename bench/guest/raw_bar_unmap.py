#!/usr/bin/env python3
"""UNMAP_DMA of the ivshmem BAR with raw ioctls (ctypes), no vfiod: the
reference for the 7.3 BAR free cell of BENCHMARKS.md ("The 7.3 free at 0.53
is not vfiod's own work"). Maps the BAR (aligned mmap, touched once) at IOVA
8 GiB and times MAP_DMA / UNMAP_DMA, in a container of the NVMe's and the
BAR's groups, with one mmap of the BAR and with a second one held. Run in
the test VM:
    VFIOD_VM_KERNEL=newest VFIOD_VM_MEM=6G VFIOD_VM_IVSHMEM_SIZE=1G \\
      tests/vm/vm_run.sh -- /usr/bin/python3 bench/guest/raw_bar_unmap.py
"""
import ctypes
import os
import statistics
import struct
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def vfio_io(nr):
    return (ord(';') << 8) | (100 + nr)


SET_IOMMU, GROUP_SET_CONTAINER, GROUP_GET_DEVICE_FD = vfio_io(2), vfio_io(4), vfio_io(6)
GET_REGION_INFO, MAP_DMA, UNMAP_DMA = vfio_io(8), vfio_io(13), vfio_io(14)
TYPE1V2 = 3
PROT_RW, MAP_SHARED_FIXED, MAP_PRIVATE_ANON = 3, 0x01 | 0x10, 0x02 | 0x20
BAR = 2
IOVA = 8 << 30


def ioctl(fd, request, arg):
    if libc.ioctl(fd, request, arg) < 0:
        raise OSError(ctypes.get_errno(), f"ioctl {request:#x}")


def group_of(bdf):
    return int(os.path.basename(os.readlink(f"/sys/bus/pci/devices/{bdf}/iommu_group")))


def aligned_mmap(dev, size, offset):
    """The BAR mmap'd at a size-aligned address (2x reserved, then MAP_FIXED), touched."""
    reserved = libc.mmap(None, 2 * size, 0, MAP_PRIVATE_ANON, -1, 0)
    at = (reserved + size - 1) & ~(size - 1)
    addr = libc.mmap(at, size, PROT_RW, MAP_SHARED_FIXED, dev, offset)
    assert addr == at, (hex(addr), hex(at))
    _ = ctypes.c_uint8.from_address(addr).value
    return addr


def run(bdfs, bar_bdf, second, loops=7):
    container = os.open("/dev/vfio/vfio", os.O_RDWR)
    groups = []
    for bdf in bdfs:
        group = os.open(f"/dev/vfio/{group_of(bdf)}", os.O_RDWR)
        ioctl(group, GROUP_SET_CONTAINER, ctypes.byref(ctypes.c_int(container)))
        groups.append(group)
    ioctl(container, SET_IOMMU, TYPE1V2)
    dev = libc.ioctl(groups[bdfs.index(bar_bdf)], GROUP_GET_DEVICE_FD,
                     ctypes.create_string_buffer(bar_bdf.encode()))
    if dev < 0:
        raise OSError(ctypes.get_errno(), "VFIO_GROUP_GET_DEVICE_FD")
    info = ctypes.create_string_buffer(struct.pack("IIIIQQ", 32, 0, BAR, 0, 0, 0))
    ioctl(dev, GET_REGION_INFO, info)
    size, offset = struct.unpack("IIIIQQ", info.raw[:32])[4:]
    views = [aligned_mmap(dev, size, offset) for _ in range(2 if second else 1)]
    maps, unmaps = [], []
    for _ in range(loops):
        arg = ctypes.create_string_buffer(struct.pack("IIQQQ", 32, 3, views[0], IOVA, size))
        start = time.perf_counter()
        ioctl(container, MAP_DMA, arg)
        maps.append(time.perf_counter() - start)
        arg = ctypes.create_string_buffer(struct.pack("IIQQQ", 32, 0, IOVA, size, 0))
        start = time.perf_counter()
        ioctl(container, UNMAP_DMA, arg)
        unmaps.append(time.perf_counter() - start)
    for view in views:
        libc.munmap(view, size)
    for fd in [dev] + groups + [container]:
        os.close(fd)
    return maps[1:], unmaps[1:]  # the first pair warms TCG up


def main():
    bar, nvme = os.environ["VFIOD_IVSHMEM_BDF"], os.environ["VFIOD_NVME_BDF"]
    for _ in range(2):
        for name, second in (("one mmap", False), ("two mmaps", True)):
            maps, unmaps = run([nvme, bar], bar, second)
            print(f"{name}: MAP_DMA {statistics.median(maps) * 1e3:.3f} ms, UNMAP_DMA "
                  f"{statistics.median(unmaps) * 1e3:.2f} ms (medians; unmaps "
                  f"{[round(u * 1e3, 1) for u in unmaps]})", flush=True)


if __name__ == "__main__":
    main()
