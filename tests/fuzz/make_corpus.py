#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (corpus/<target>/): real
requests of every method, batches, fds and malformed lines for fuzz_rpc,
configs for fuzz_config, operation streams for fuzz_dma. Deterministic; run
from anywhere, it rewrites the folders."""
import json
import random
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
EDU, IVSHMEM = "0000:00:03.0", "0000:00:04.0"


def req(method, params=None, rid=1):
    r = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        r["params"] = params
    return json.dumps(r, separators=(",", ":")).replace('"#', "#").replace('#"', "")


def lines(*requests):
    return "".join(r + "\n" for r in requests).encode()


def ph(name):
    """A placeholder id (rpc_fuzz_input.h): written unquoted in the JSON."""
    return "#" + name + "#"


# fd spec bytes (rpc_fuzz_input.h): kind | count << 3 | size << 5
MEMFD_SEALED_8K = bytes([1 | 0 << 3 | 2 << 5])
MEMFD_SEALED_64K = bytes([1 | 0 << 3 | 5 << 5])
MEMFD_UNSEALED = bytes([2])
MEMFD_ALL_SEALS = bytes([3])
DEV_NULL, PIPE, SOCKET, EVENTFD = bytes([4]), bytes([5]), bytes([6]), bytes([7])
SEVENTEEN_MEMFDS = bytes([1 | 3 << 3])
TWO_MEMFDS = bytes([1 | 1 << 3 | 2 << 5])
# kind 0, one fd: a directory, a tmpfs file (8 KiB), it read-only, a memfd read-only
DIRECTORY = bytes([2 << 5])
TMPFS_8K, TMPFS_READ_ONLY = bytes([1 << 3 | 2 << 5]), bytes([2 << 3 | 2 << 5])
MEMFD_READ_ONLY = bytes([3 << 3 | 2 << 5])


NEXT = b"\0\0"  # starts a new write without fds


def with_fds(spec, data):
    return b"\0" + spec + data


def create(name=None, devices=(EDU,)):
    p = {"devices": list(devices)}
    if name:
        p["name"] = name
    return req("container.create", p)


def rpc_seeds():
    c, m, r = ph("c0"), ph("m0"), ph("r0")
    seeds = {
        "ping": lines(req("ping")),
        "daemon_methods": lines(req("version", rid=2), req("status", rid="s"), req("stats", rid=3),
                                req("rpc.discover", rid=4)),
        "devices": lines(req("device.list"), req("device.info", {"bdf": EDU}, 2),
                         req("device.info", {"bdf": "0000:00:1f.7"}, 3)),
        "bind_unbind": lines(req("device.unbind", {"bdf": IVSHMEM}),
                             req("device.bind", {"bdf": IVSHMEM}, 2)),
        "container_life": lines(create()) + NEXT + lines(
            req("container.info", {"container": c}, 2), req("container.list", None, 3),
            req("container.destroy", {"container": c}, 4)),
        "named_attach": lines(create("shared", (EDU, IVSHMEM))) + NEXT + lines(
            req("container.attach", {"name": "shared"}, 2)),
        "alloc_free": lines(create()) + NEXT + lines(
            req("dma.alloc", {"container": c, "size": 8192, "backing": "4k"}, 2)) + NEXT + lines(
            req("dma.info", {"mapping": m}, 3), req("dma.list", {"container": c}, 4),
            req("dma.free", {"mapping": m}, 5)),
        "alloc_backings": lines(create()) + NEXT + lines(
            req("dma.alloc", {"container": c, "size": 2 << 20, "backing": "thp",
                              "progress": True}, 2),
            req("dma.alloc", {"container": c, "size": 2 << 20, "backing": "hugetlb-2m"}, 3),
            req("dma.alloc", {"container": c, "size": 4096, "backing": "4k", "iova": 1048576,
                              "name": "fixed"}, 4),
            req("dma.alloc", {"container": c, "size": 4096, "backing": "4k",
                              "dma_mask_bits": 28}, 5)),
        "map_fd": lines(create()) + with_fds(MEMFD_SEALED_8K, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 2))),
        "map_fd_offset": lines(create()) + with_fds(MEMFD_SEALED_64K, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}, "offset": 4096, "size": 8192,
                               "iova": 65536}, 2))),
        "map_fd_segments": lines(create()) + with_fds(MEMFD_SEALED_64K, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}, "segments": [
                {"offset": 0, "size": 4096, "iova": 0x200000},
                {"offset": 8192, "size": 8192}]}, 2))),
        "map_fd_unsealed": lines(create()) + with_fds(MEMFD_UNSEALED, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 2))),
        "map_fd_all_seals": lines(create()) + with_fds(MEMFD_ALL_SEALS, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 2))),
        "map_fd_wrong_files": lines(create()) + with_fds(DEV_NULL, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 2))) + with_fds(PIPE, lines(
            req("dma.register", {"fd": {"fd": 0}}, 3))) + with_fds(SOCKET, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 4))) + with_fds(EVENTFD, lines(
            req("dma.register", {"fd": {"fd": 0}}, 5))),
        "tmpfs_file": lines(create()) + with_fds(TMPFS_8K, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 2))) + with_fds(TMPFS_8K, lines(
            req("dma.register", {"fd": {"fd": 0}}, 3))) + NEXT + lines(
            req("dma.map_fd", {"container": c, "region": r, "size": 4096}, 4),
            req("dma.list", None, 5)),
        "read_only_files": lines(create()) + with_fds(TMPFS_READ_ONLY, lines(
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 2))) + with_fds(
            MEMFD_READ_ONLY, lines(req("dma.register", {"fd": {"fd": 0}}, 3))) + with_fds(
            DIRECTORY, lines(req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 4))),
        "regions": with_fds(MEMFD_SEALED_64K, lines(req("dma.register", {"fd": {"fd": 0}}))) +
        NEXT + lines(create()) + NEXT + lines(
            req("dma.regions", None, 3),
            req("dma.map_fd", {"container": c, "region": r, "offset": 4096, "size": 4096}, 4),
            req("dma.unregister", {"region": r}, 5), req("dma.list", None, 6)),
        "map_bar": lines(create()) + NEXT + lines(
            req("dma.map_bar", {"container": c, "bdf": EDU, "bar": 0}, 2)),
        "device_open": lines(create()) + NEXT + lines(
            req("device.open", {"container": c, "bdf": EDU}, 2)),
        "batch": lines("[" + ",".join([req("ping", None, 1), req("status", None, 2),
                                       '{"jsonrpc":"2.0","method":"ping"}', '{"id":4}']) + "]"),
        "batch_allocs": lines(create()) + NEXT + lines("[" + ",".join(
            req("dma.alloc", {"container": c, "size": 4096, "backing": "4k"}, i)
            for i in range(5)) + "]"),
        "batch_fds": lines(create()) + with_fds(TWO_MEMFDS, lines("[" + ",".join([
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}}, 2),
            req("dma.register", {"fd": {"fd": 1}}, 3)]) + "]")),
        "notifications": lines('{"jsonrpc":"2.0","method":"ping"}',
                               '[{"jsonrpc":"2.0","method":"status"}]'),
        "malformed": b'{"jsonrpc":"2.0"\n[]\n\n  \r\n{"jsonrpc":"1.0","method":"ping","id":1}\n'
                     b'{"jsonrpc":"2.0","method":"nope","id":[1]}\n"x"\n',
        "deep": ("[" * 70 + "]" * 70 + "\n").encode(),
        "overlong": lines(req("ping")) + b'{"x":"' + b"a" * 4200 + b'"}\n',
        "too_many_fds": with_fds(SEVENTEEN_MEMFDS, lines(req("dma.register", {"fd": {"fd": 3}}))),
        "stray_fds": with_fds(TWO_MEMFDS, lines(req("ping"))) + with_fds(
            MEMFD_SEALED_8K, b"\n"),
        "fd_ref_out_of_range": with_fds(MEMFD_SEALED_8K, lines(
            req("dma.register", {"fd": {"fd": 5}}))),
        "split_writes": b'{"jsonrpc":"2.0",' + with_fds(b"\0", b'"method":"pi') + with_fds(
            b"\0", b'ng","id":7}\n'),
        "busy": lines(create()) + NEXT + lines(*[
            req("dma.alloc", {"container": c, "size": 4096, "backing": "4k"}, i)
            for i in range(8)]),
        "quota": lines(create(), create(devices=(IVSHMEM,)), create()),
        "bad_params": lines(req("dma.alloc", {"container": 1, "size": -1, "backing": "x"}),
                            req("dma.free", [1], 2), req("container.create", {"devices": EDU}, 3),
                            req("device.info", {"bdf": "zz"}, 4)),
        "share": lines(req("container.create", {"devices": [EDU], "name": "ring",
                                                "share_with": {"users": [1000], "groups": [0]}})) +
        NEXT + lines(
            req("container.share", {"container": c, "users": ["root", 65533], "groups": [100]}, 2),
            req("container.unshare", {"container": c, "users": [1000]}, 3),
            req("container.attach", {"name": "ring", "owner": 65534}, 4),
            req("container.destroy", {"container": c}, 5)),
        "reset": lines(create()) + NEXT + lines(
            req("device.open", {"container": c, "bdf": EDU}, 2),
            req("device.reset", {"bdf": EDU}, 3)),
        "session": lines(req("session.info"), req("session.resume", {"token": "0" * 32}, 2),
                         req("metrics", None, 3), req("daemon.restart", None, 4)),
        "placement": lines(create()) + NEXT + lines(
            req("dma.alloc", {"container": c, "size": 4096, "backing": "4k", "numa_node": 0,
                              "max_iova": 1 << 32, "dma_mask_bits": 32}, 2),
            req("dma.alloc", {"container": c, "size": 4096, "backing": "4k", "numa_node": -1,
                              "max_iova": 4095}, 3)),
        "require_thp": lines(create()) + with_fds(MEMFD_UNSEALED, lines(
            req("dma.alloc", {"container": c, "size": 2 << 20, "backing": "thp", "require": "thp"},
                2),
            req("dma.map_fd", {"container": c, "fd": {"fd": 0}, "require": "thp"}, 3))),
    }
    return seeds


def config_seeds():
    shipped = (HERE / "../../config/vfiod.json").read_text()
    model = {
        "kernel": "model", "sysfs_root": "/tmp/sys",
        "socket": {"path": "/tmp/v.sock", "group": None, "mode": "0666"},
        "model": {"devices": [
            {"bdf": EDU, "vendor": "1234", "device": "0x11e8", "group": 3, "bound": True},
            {"bdf": "0000:00:1F.3", "vendor": 32902, "device": "2930", "group": 7}],
            "iova_ranges": [{"start": 0, "last": 0xfedfffff},
                            {"start": 0xfef00000, "last": 0x7fffffffff}],
            "dma_entry_limit": 64}}
    policy = {"policy": {"rules": [
        {"users": ["nobody", 0], "groups": ["vfio-users"], "devices": ["*"], "may_bind": True,
         "quota": {"locked_bytes": "unlimited", "mappings": 16, "containers": 2}},
        {"users": ["*"], "devices": [EDU, "1af4:1110"]}], "root_only": ["device.unbind"]}}
    limits = {"limits": {"max_frame_bytes": "64K", "max_inflight_per_client": 1,
                         "max_clients": 65536, "worker_threads": 256, "map_chunk_bytes": "2M",
                         "max_batch": 1, "max_regions": 65536},
              "logging": {"level": "trace", "target": "journal"}}
    return {
        "shipped": shipped.encode(),
        "empty_object": b"{}",
        "model": json.dumps(model, indent=1).encode(),
        "policy": json.dumps(policy).encode(),
        "limits": json.dumps(limits).encode(),
        "duplicate_key": b'{"kernel":"model","kernel":"linux"}',
        "bad_types": b'{"limits":{"max_batch":"8"},"socket":{"mode":"999"}}',
        "sizes": b'{"limits":{"map_chunk_bytes":"18446744073709551615K"}}',
        "not_json": b'{"socket": {"path": "relative"',
        "top_range": b'{"model":{"iova_ranges":[{"start":0,"last":18446744073709551615}]}}',
    }


def dma_seeds():
    rng = random.Random(12)
    seeds = {}
    for subject, name in enumerate(["tree", "shadow", "allocator", "plan_maps", "plan_unmaps"]):
        for n, size in enumerate([16, 64, 256, 1024]):
            data = bytearray(rng.getrandbits(8) for _ in range(size))
            data[-1] = subject  # FuzzedDataProvider takes the subject from the end
            seeds[f"{name}_{n}"] = bytes(data)
    return seeds


def state_seeds():
    """State record bodies (fuzz_state writes the checksum): the empty record,
    and one of every kind of object, as tests/lifecycle's Sample() has them."""
    def body(version, **parts):
        doc = {"format": "vfiod-state", "version": version, "generation": 41, "next_id": 9,
               "mapping_generation": 2, "containers": [], "mappings": [], "owners": []}
        if version >= 4:
            doc["regions"] = []
        doc.update(parts)
        return json.dumps(doc, separators=(",", ":")).encode()

    def mapping(mid, container, iova, size, backing, fd_name, entries, **extra):
        m = {"id": mid, "container": container, "iova": iova, "size": size, "backing": backing,
             "fd_name": fd_name, "owner_uid": 1000, "name": "", "session": "b" * 32,
             "mmio": backing == "bar", "bar": None, "region": 0,
             "entries": [{"iova": i, "size": s, "offset": o} for i, s, o in entries]}
        m.update(extra)
        return m

    containers = [
        {"id": 3, "name": "ring", "owner_uid": 1000, "shared_users": [1001, 1002],
         "shared_groups": [50], "groups": [12, 14], "fd_name": "c-3", "session": "",
         "devices": [{"bdf": "0000:00:03.0", "group": 12, "fd_name": "d-3-0000_00_03.0"},
                     {"bdf": "0000:00:05.0", "group": 14, "fd_name": "d-3-0000_00_05.0"}]},
        {"id": 8, "name": "", "owner_uid": 1001, "shared_users": [], "shared_groups": [],
         "groups": [], "fd_name": "c-8", "session": "a" * 32, "devices": []}]
    gib4 = 1 << 32
    mappings = [
        mapping(gib4 | 1, 3, gib4, 2 << 20, "hugetlb-2m", "m-4294967297",
                [(gib4, 1 << 20, 0), (gib4 + (1 << 20), 1 << 20, 1 << 20)], name="kbuf",
                session=""),
        mapping(2, 8, 0xfffff000, 4096, "bar", "", [(0xfffff000, 4096, 0x2000)],
                owner_uid=1001, bar={"bdf": "0000:00:05.0", "index": 2}),
        mapping(gib4 | 3, 3, 2 * gib4, 2 << 20, "hugetlb-2m", "", [(2 * gib4, 2 << 20, 4 << 20)],
                region=5)]
    regions = [{"id": 5, "owner_uid": 1000, "session": "c" * 32, "fd_name": "rg-5",
                "offset": 2 << 20, "size": 4 << 20, "charged": True}]
    owners = [{"uid": 1000, "locked_bytes": 2 << 20, "mappings": 1, "containers": 1},
              {"uid": 1001, "locked_bytes": 0, "mappings": 1, "containers": 1}]
    return {
        "empty": body(5),
        "full": body(5, containers=containers, mappings=mappings, regions=regions,
                     owners=owners),
        "version3": body(3, containers=[{k: v for k, v in containers[1].items()
                                         if k != "devices"}],
                         owners=owners[1:]),
        "not_an_object": b"[1,2,3]",
    }


def write(target, seeds):
    folder = HERE / "corpus" / target
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data)


def check():
    """Exit status 1 unless every method and parameter name of the API
    (proto/openrpc.json) is in rpc.dict and in fuzz_rpc's seeds, every key of
    the shipped config is in config.dict and of a full state record in
    state.dict, and the corpora in the tree are what this script writes."""
    api = json.loads((HERE.parents[1] / "proto" / "openrpc.json").read_text())
    names = {m["name"] for m in api["methods"]}
    params = {p["name"] for m in api["methods"] for p in m.get("params", [])}
    made = {"rpc": rpc_seeds(), "config": config_seeds(), "dma": dma_seeds(),
            "state": state_seeds()}
    dictionary = (HERE / "rpc.dict").read_text()
    seeds = b"".join(made["rpc"].values()).decode(errors="replace")
    problems = [f"{what} {n!r} is not in {where}"
                for what, group in (("method", names), ("param", params))
                for n in sorted(group)
                for where, text in (("rpc.dict", dictionary), ("the rpc seeds", seeds))
                if f'\\"{n}\\"' not in text and f'"{n}"' not in text]
    for name, doc in (("config", json.loads((HERE.parents[1] / "config" / "vfiod.json")
                                            .read_text())),
                      ("state", json.loads(made["state"]["full"]))):
        keys, pending = set(), [doc]
        while pending:
            value = pending.pop()
            if isinstance(value, dict):
                keys.update(value)
                pending.extend(value.values())
            elif isinstance(value, list):
                pending.extend(value)
        dictionary = (HERE / f"{name}.dict").read_text()
        problems += [f"{name} key {k!r} is not in {name}.dict" for k in sorted(keys)
                     if f'\\"{k}\\"' not in dictionary]
    for target, seeds_of_target in made.items():
        folder = HERE / "corpus" / target
        stored = {f.name: f.read_bytes() for f in folder.iterdir()}
        if stored != seeds_of_target:
            problems.append(f"corpus/{target} differs from what make_corpus.py writes: run it")
    for p in problems:
        print("make_corpus --check:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    write("rpc", rpc_seeds())
    write("config", config_seeds())
    write("dma", dma_seeds())
    write("state", state_seeds())
