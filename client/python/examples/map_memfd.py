#!/usr/bin/python3
"""Map a memfd of this program for DMA through vfiod and print the
contiguity report: how the memory lies physically (contiguous runs, folio
sizes), which decides how many IOMMU entries the mapping costs.

Runs as any user the policy permits a device (e.g. a member of vfio-users):

    python3 map_memfd.py                       # first permitted device, 8 MiB
    python3 map_memfd.py --device 0000:00:03.0 --size 64M --hugetlb

The container and the mapping are unnamed: vfiod releases both when the
program exits. Exit status: 0 mapped and reported, 1 vfiod refused (the
error is printed with its code), 2 bad usage or no usable device.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys

import vfiod

_SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from "4096", "0x1000", "64K", "8M", "1G"."""
    text = text.strip().upper()
    if text[-1:] in _SUFFIXES:
        return int(text[:-1], 0) * _SUFFIXES[text[-1]]
    return int(text, 0)


def pick_device(client: vfiod.Client) -> str | None:
    """The first device bound to vfio-pci that the policy permits us."""
    for device in client.device_list():
        if device["permitted"] and device["viable"] \
                and device["driver"] == "vfio-pci":
            return device["bdf"]
    return None


def make_memfd(size: int, hugetlb: bool) -> int:
    """A sealable memfd of ``size`` bytes, every page touched so the report
    describes memory that exists (vfiod pins it while mapping anyway)."""
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    if hugetlb:
        flags |= os.MFD_HUGETLB | os.MFD_HUGE_2MB
    fd = os.memfd_create("map_memfd", flags)
    os.ftruncate(fd, size)
    with mmap.mmap(fd, size) as mem:
        for offset in range(0, size, mmap.PAGESIZE):
            mem[offset] = 0x5A
    return fd


def report(mapped: dict, info: dict) -> str:
    """The mapping and its contiguity report, as lines of text."""
    lines = [f"mapping {mapped['mapping']}: {mapped['size']} bytes at IOVA "
             f"{mapped['iova']:#x} ({mapped['chunks']} chunks, "
             f"{mapped['ioctls']} map ioctls)"]
    contiguity = info.get("contiguity", {"state": "unknown"})
    if contiguity["state"] != "known":
        lines.append("contiguity: unknown (vfiod cannot read physical "
                     "addresses here: it needs CAP_SYS_ADMIN for pagemap)")
    else:
        lines.append(f"contiguity: {contiguity.get('runs', 0)} physically "
                     "contiguous runs")
        for bucket, count in contiguity.get("histogram", {}).items():
            lines.append(f"  runs of {bucket} pages: {count}")
    folios = {size: n for size, n in contiguity.get("folios", {}).items()
              if n}
    if folios:
        lines.append("folios: " + ", ".join(
            f"{count} x {size}" for size, count in folios.items()))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=vfiod.default_socket())
    parser.add_argument("--device", help="BDF (default: first permitted)")
    parser.add_argument("--size", type=parse_size, default=8 << 20)
    parser.add_argument("--hugetlb", action="store_true",
                        help="a 2 MiB hugetlb memfd (needs free hugepages)")
    parser.add_argument("--json", action="store_true",
                        help="print the dma.map_fd and dma.info results")
    args = parser.parse_args(argv)
    try:
        with vfiod.Client(args.socket) as client:
            bdf = args.device or pick_device(client)
            if bdf is None:
                print("no permitted device bound to vfio-pci",
                      file=sys.stderr)
                return 2
            container = client.container_create([bdf])["container"]
            fd = make_memfd(args.size, args.hugetlb)
            try:
                mapped = client.dma_map_fd(container, fd)
            finally:
                os.close(fd)  # vfiod holds its own reference now
            info = client.dma_info(mapped["mapping"])
    except vfiod.VfiodError as e:
        print(f"map_memfd: {e} [{e.kind}]", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"device": bdf, "map_fd": mapped, "info": info}))
    else:
        print(f"device {bdf}, container {container}")
        print(report(mapped, info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
