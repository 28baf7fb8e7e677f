#!/usr/bin/env python3
"""What a hand-off to a worker thread costs a request, on this machine, and
what a real map request costs beyond the daemon's own time.

Starts vfiod (on the kernel model: no device is involved) and times, on one
connection and alternating, `ping` (answered on the connection's io thread)
and `dma.free` of a mapping that does not exist (a blocking method: a worker
runs it, finds nothing and replies at once). The difference of the two round
trips is the worker hop item 1's per-request gap is compared with in
BENCHMARKS.md. With VFIOD_EDU_BDF set (as vm_run.sh does in the test VM), a
second daemon on the real kernel maps a registered 2 MiB-hugetlb memfd of 2, 8
and 64 MiB (`dma.map_fd {region}`, `dma.free`), reading `stats` untimed around
each call: client time minus the daemon's own time per call, by size. Run it
in the test VM with
    tests/vm/vm_run.sh -- /usr/bin/python3 bench/guest/worker_hop.py build/daemon/vfiod [N]
or on the host directly (the first part only). Prints tables and JSON lines.
"""
import json
import mmap
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def start_daemon(binary, folder, real_kernel=False):
    path = os.path.join(folder, "vfiod.sock")
    config = {"socket": {"path": path, "group": None, "mode": "0600"},
              "limits": {"worker_threads": 2, "map_chunk_bytes": "1G"},
              "logging": {"level": "warn", "target": "stderr"}, "policy": {"rules": []}}
    if real_kernel:
        config.update({"kernel": "linux", "sysfs_root": "/sys"})
    else:
        sysfs = os.path.join(folder, "sys")
        os.makedirs(os.path.join(sysfs, "bus/pci/devices"))
        os.makedirs(os.path.join(sysfs, "kernel/iommu_groups"))
        open(os.path.join(sysfs, "bus/pci/drivers_probe"), "w").close()
        config.update({"kernel": "model", "sysfs_root": sysfs, "model": {"devices": []}})
    with open(os.path.join(folder, "vfiod.json"), "w") as out:
        json.dump(config, out)
    daemon = subprocess.Popen([binary, "--config", os.path.join(folder, "vfiod.json"),
                               "--foreground"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return daemon, probe
        except OSError:
            probe.close()
            time.sleep(0.05)
    daemon.kill()
    sys.exit("vfiod did not answer on " + path)


class Connection:
    def __init__(self, conn):
        self.conn = conn
        self.replies = conn.makefile("rb")

    def call(self, method, params, fds=()):
        line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        if fds:
            socket.send_fds(self.conn, [line.encode() + b"\n"], list(fds))
        else:
            self.conn.sendall(line.encode() + b"\n")
        reply = json.loads(self.replies.readline())
        if "result" not in reply:
            sys.exit("%s failed: %s" % (method, reply))
        return reply["result"]

    def server_us(self, method):
        return self.call("stats", {})["by_method"].get(method, {}).get("total_us", 0)


def map_gap(binary, edu, rounds):
    """Client time minus the daemon's own time of real maps and frees, by size."""
    daemon, conn = start_daemon(binary, tempfile.mkdtemp(prefix="vfiod-gap-"), True)
    c = Connection(conn)
    container = c.call("container.create", {"devices": [edu]})["container"]
    size = 64 << 20
    fd = os.memfd_create("gap", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | os.MFD_HUGETLB |
                         (21 << 26))  # MFD_HUGE_2MB
    os.ftruncate(fd, size)
    with mmap.mmap(fd, size) as view:
        for offset in range(0, size, 2 << 20):
            view[offset] = 1
        region = c.call("dma.register", {"fd": {"fd": 0}, "offset": 0, "size": size},
                        [fd])["region"]
        out = {}
        for bytes_ in (2 << 20, 8 << 20, size):
            rows = []
            for i in range(rounds + 2):
                start = time.perf_counter()
                c.call("ping", {})
                ping = time.perf_counter() - start
                before = c.server_us("dma.map_fd")
                start = time.perf_counter()
                mapping = c.call("dma.map_fd", {"container": container, "region": region,
                                                "offset": 0, "size": bytes_})["mapping"]
                client_map = time.perf_counter() - start
                server_map = (c.server_us("dma.map_fd") - before) / 1e6
                before = c.server_us("dma.free")
                start = time.perf_counter()
                c.call("dma.free", {"mapping": mapping})
                client_free = time.perf_counter() - start
                server_free = (c.server_us("dma.free") - before) / 1e6
                if i >= 2:  # the first two are warm-ups
                    rows.append((ping, client_map, server_map, client_free, server_free))
            med = lambda f: 1e3 * statistics.median(f(r) for r in rows)
            figures = {"ping_ms": med(lambda r: r[0]),
                       "map_client_ms": med(lambda r: r[1]), "map_server_ms": med(lambda r: r[2]),
                       "map_gap_ms": med(lambda r: r[1] - r[2]),
                       "free_client_ms": med(lambda r: r[3]),
                       "free_server_ms": med(lambda r: r[4]),
                       "free_gap_ms": med(lambda r: r[3] - r[4])}
            out["%dM" % (bytes_ >> 20)] = figures
            print("%4d MiB (medians of %d) ping %.3f ms | map: client %.3f, daemon %.3f, gap %.3f"
                  " | free: client %.3f, daemon %.3f, gap %.3f" % (
                      bytes_ >> 20, len(rows), figures["ping_ms"], figures["map_client_ms"],
                      figures["map_server_ms"], figures["map_gap_ms"], figures["free_client_ms"],
                      figures["free_server_ms"], figures["free_gap_ms"]))
    daemon.terminate()
    daemon.wait()
    print(json.dumps({"map_gap_by_size": out}))


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    folder = tempfile.mkdtemp(prefix="vfiod-hop-")
    daemon, conn = start_daemon(binary, folder)
    replies = conn.makefile("rb")
    calls = {"ping": ("ping", {}), "blocking no-op": ("dma.free", {"mapping": 987654321})}
    samples = {name: [] for name in calls}
    for i in range(rounds):
        for name, (method, params) in calls.items():
            line = json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
            start = time.perf_counter()
            conn.sendall(line.encode() + b"\n")
            reply = json.loads(replies.readline())
            samples[name].append(time.perf_counter() - start)
            if reply.get("id") != i or (name == "ping") != ("result" in reply):
                sys.exit("unexpected reply to %s: %s" % (method, reply))
    daemon.terminate()
    daemon.wait()
    figures = {}
    for name, values in samples.items():
        values.sort()
        figures[name] = {"p50_us": 1e6 * values[len(values) // 2],
                         "mean_us": 1e6 * statistics.mean(values),
                         "p90_us": 1e6 * values[int(len(values) * 0.9)]}
        print("%-15s n=%d  p50 %8.1f us  mean %8.1f us  p90 %8.1f us" % (
            name, len(values), figures[name]["p50_us"], figures[name]["mean_us"],
            figures[name]["p90_us"]))
    hop = {k: figures["blocking no-op"][k] - figures["ping"][k] for k in ("p50_us", "mean_us")}
    print("worker hop: p50 %.1f us, mean %.1f us" % (hop["p50_us"], hop["mean_us"]))
    print(json.dumps({"rounds": rounds, "calls": figures, "worker_hop": hop}))
    if os.environ.get("VFIOD_EDU_BDF"):
        map_gap(binary, os.environ["VFIOD_EDU_BDF"], 30)


if __name__ == "__main__":
    main()
