#!/usr/bin/env python3
"""Markdown tables for BENCHMARKS.md, generated from the JSON that
scripts/bench.sh writes (bench-results/{vm,rpc,micro}-*.json). Nothing here
measures or types a figure: every cell is read from a run's JSON.

  bench/report.py [--vm F] [--rpc F] [--micro F]            print every table
  bench/report.py ... --update BENCHMARKS.md                rewrite the blocks
      between <!-- generated:NAME --> and <!-- /generated:NAME --> in place
  bench/report.py --lts F... --newest F...                  the two-kernel tables
      (the guest JSON of runs on each kernel; later files add their sections)
"""
import argparse
import json
import re
import sys


def secs(x):
    return f"{x:.5f} s"


def cell(op):
    """'0.00331 s (81.2 GB/s)' from an OpJson."""
    return f"{op['mean_s']:.5f} s ({op['gbps']:.1f} GB/s)"


def size_name(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def map_rows(vm):
    return [r for r in vm["map_table"]["rows"] if "error" not in r]


def map_errors(vm):
    return [f"{r['memory']} {size_name(r['size'])}: {r['error']}"
            for r in vm["map_table"]["rows"] if "error" in r]


def bound_p50(r, key):
    b = r.get("bound_p50_rt")
    return f"{b[key]:.3f}" if b else ""


def paired(r, key):
    p = r.get("ratio_paired_median")
    return f"{p[key]:.3f}" if p else ""


def map_table(vm, op):
    """The issue's table for MAP or UNMAP: mean of the rounds, ratio with
    median/min ratios and the round-trip bound beside it."""
    key = "map" if op == "MAP" else "unmap"
    head = ["memory", "size", f"raw {op}", f"raw memfd {op}", f"vfiod {op}", "**ratio**",
            "median", "min", "paired", "bound", "bound (p50 rt)", "daemon-only", f"one-shot {op}", "one-shot ratio"]
    rows = []
    for r in map_rows(vm):
        miss = r["ratio"][key] < 0.97
        bound_short = r["round_trip_over_3pct"][key]
        mark = "" if not miss else (" (rt)" if bound_short else " (!)")
        rows.append([r["memory"], size_name(r["size"]), cell(r["raw"][key]),
                     cell(r["raw_memfd"][key]), cell(r["vfiod"][key]),
                     f"**{r['ratio'][key]:.3f}**{mark}", f"{r['ratio_median'][key]:.3f}",
                     f"{r['ratio_min'][key]:.3f}", paired(r, key),
                     f"{r['bound'][key]:.3f}", bound_p50(r, key),
                     f"{r['ratio_server'][key]:.3f}", cell(r["vfiod_oneshot"][key]),
                     f"{r['ratio_oneshot'][key]:.3f}"])
    return table(head, rows)


def map_gap_table(vm):
    head = ["memory", "size", "idle ping p50 / p90", "client map", "daemon map",
            "gap map p50 / p90", "client free", "daemon free", "gap free p50 / p90",
            "engine plan", "engine MAP_DMA", "engine unmap", "reads/plan", "view %2M",
            "PMD-mapped"]
    rows = []
    for r in map_rows(vm):
        v, b, p = r["vfiod"], r["breakdown"], r["ping_s"]
        n = max(len(b["plan"]["samples"]), 1)
        rows.append([
            r["memory"], size_name(r["size"]),
            f"{p['p50'] * 1e3:.2f} / {p['p90'] * 1e3:.2f} ms",
            secs(v["map"]["mean_s"]), secs(v["server"]["map"]["mean_s"]),
            f"{v['gap']['map']['p50'] * 1e3:.2f} / {v['gap']['map']['p90'] * 1e3:.2f} ms",
            secs(v["unmap"]["mean_s"]), secs(v["server"]["unmap"]["mean_s"]),
            f"{v['gap']['unmap']['p50'] * 1e3:.2f} / {v['gap']['unmap']['p90'] * 1e3:.2f} ms",
            secs(b["plan"]["mean_s"]), secs(b["map"]["mean_s"]), secs(b["unmap"]["mean_s"]),
            b["plan_reads"]["calls"] // n, hex(b["view_vaddr_mod_2m"]),
            f"{b['view_shmem_pmd_mapped_bytes'] >> 20} MiB"])
    return table(head, rows)


def map_misses(vm):
    """Which cells miss 0.97, and whether the round trip alone explains it."""
    lines = []
    for r in map_rows(vm):
        for key in ("map", "unmap"):
            ratio = r["ratio"][key]
            if ratio >= 0.97:
                continue
            bound = r["bound"][key]
            p50 = bound_p50(r, key)
            why = (f"the round trip alone is over 3% of the raw time (bound {bound:.3f}; "
                   f"{p50} with the p50 round trip)" if r["round_trip_over_3pct"][key]
                   else f"the round trip is within 3% (bound {bound:.3f}; {p50} with the p50 "
                   f"round trip): not explained by it")
            lines.append(f"- {r['memory']} {size_name(r['size'])} {key}: {ratio:.3f}; {why}")
    met = sum(1 for r in map_rows(vm) for k in ("map", "unmap") if r["ratio"][k] >= 0.97)
    total = 2 * len(map_rows(vm))
    lines.insert(0, f"Cells at or above 0.97: {met} of {total}.")
    lines += [f"- error: {e}" for e in map_errors(vm)]
    return "\n".join(lines)


def span(values, fmt="{:.2f}"):
    values = list(values)
    return (fmt + "-" + fmt).format(min(values), max(values)) if values else "n/a"


def map_facts(vm):
    """Figures the text of item 1 leans on, computed from the rows."""
    rows = map_rows(vm)
    ops = ("map", "unmap")
    cells = [(r, k) for r in rows for k in ops]
    near = [c for c in cells if c[0]["ratio"][c[1]] >= c[0]["bound"][c[1]] - 0.03]
    spread = [abs(r["raw"][k]["mean_s"] - r["raw_memfd"][k]["mean_s"]) / r["raw"][k]["mean_s"]
              for r, k in cells]
    gap_per_ping = [r["vfiod"]["gap"][k]["p50"] / r["ping_s"]["mean"] for r, k in cells]
    facts = [
        "the daemon's own time against raw (daemon-only ratio): map "
        + span(r["ratio_server"]["map"] for r in rows) + ", unmap "
        + span(r["ratio_server"]["unmap"] for r in rows),
        "the engine's plan (`BeginMap`) per map: "
        + span((r["breakdown"]["plan"]["mean_s"] * 1e3 for r in rows), "{:.2f}")
        + " ms, against its MAP_DMA steps of "
        + span((r["breakdown"]["map"]["mean_s"] * 1e3 for r in rows), "{:.1f}") + " ms",
        "client minus daemon per call, p50: map "
        + span((r["vfiod"]["gap"]["map"]["p50"] * 1e3 for r in rows), "{:.2f}") + " ms, free "
        + span((r["vfiod"]["gap"]["unmap"]["p50"] * 1e3 for r in rows), "{:.2f}") + " ms",
        "the idle round trip of the rows: mean "
        + span((r["ping_s"]["mean"] * 1e3 for r in rows), "{:.2f}") + " ms, p50 "
        + span((r["ping_s"]["p50"] * 1e3 for r in rows), "{:.2f}") + " ms, p90 "
        + span((r["ping_s"]["p90"] * 1e3 for r in rows), "{:.2f}") + " ms",
        "per-call gap p50 / the row's mean idle round trip: " + span(gap_per_ping),
        f"cells within 0.03 of their bound or above it: {len(near)} of {len(cells)}",
        "raw against raw memfd (the same ioctl on the same kind of memory), difference of the "
        "means: " + span((100 * x for x in spread), "{:.0f}") + "%",
        "one-shot (`dma.map_fd {fd}`) ratio: map "
        + span(r["ratio_oneshot"]["map"] for r in rows) + ", unmap "
        + span(r["ratio_oneshot"]["unmap"] for r in rows),
    ]
    unreachable = []
    for r in rows:
        fastest = r["ping_s"]["min"]
        for k in ops:
            raw = r["raw"][k]["mean_s"]
            if raw / (raw + fastest) < 0.97:
                unreachable.append(f"{r['memory']} {size_name(r['size'])} {k} "
                                   f"({raw / (raw + fastest):.3f})")
    facts.append("cells whose bound is below 0.97 even with the fastest idle round trip seen in "
                 "the row (" + span((r["ping_s"]["min"] * 1e3 for r in rows), "{:.2f}")
                 + " ms): " + (", ".join(unreachable) if unreachable else "none"))
    return "\n".join("- " + f for f in facts)


def batching_table(vm):
    b = vm["batching"]
    head = ["L", "runs", "naive map", "planner map", "speedup", "naive ioctls", "planner ioctls",
            "naive unmap", "planner unmap", "speedup"]
    rows = [[r["run_pages"], r["runs"], secs(r["naive"]["map"]["mean_s"]),
             secs(r["planner"]["map"]["mean_s"]), f"**{r['map_speedup']:.1f}x**",
             r["naive"]["map_ioctls"], f"**{r['planner']['map_ioctls']}**",
             secs(r["naive"]["unmap"]["mean_s"]), secs(r["planner"]["unmap"]["mean_s"]),
             f"**{r['unmap_speedup']:.1f}x**"] for r in b["rows"]]
    return table(head, rows)


def contiguity_table(vm):
    head = ["backing", "size", "first plan", "plan", "reads/plan", "MAP_DMA", "**plan / map**",
            "report on demand", "report / map", "runs", "2M folios", "1G folios"]
    rows = []
    for r in vm["contiguity"]["rows"]:
        if "error" in r:
            rows.append([r.get("backing", "?"), "", "error: " + r["error"]] + [""] * 9)
            continue
        rows.append([r["backing"], size_name(r["size"]), f"{r['first_plan_s']:.6f} s",
                     f"{r['plan']['mean_s']:.6f} s", f"{r['plan_reads']['calls_per_map']:.0f}",
                     f"{r['map']['mean_s']:.6f} s", f"**{100 * r['fraction_of_map']:.2f}%**",
                     f"{r['report_on_demand']['mean_s']:.6f} s",
                     f"{100 * r['report_fraction_of_map']:.1f}%", r["runs"], r["folios_2m"],
                     r["folios_1g"]])
    return table(head, rows)


def placement_table(vm):
    p = vm["placement"]
    if "error" in p:
        return "error: " + p["error"]
    rows = [[name, cell(p[k]["map"]), cell(p[k]["unmap"])]
            for name, k in (("2 MiB-aligned IOVA", "aligned"), ("IOVA + 4 KiB", "misaligned_4k"))]
    rows.append(["misaligned / aligned time", f"**{p['slowdown']['map']:.2f}x**",
                 f"**{p['slowdown']['unmap']:.2f}x**"])
    return (f"{size_name(p['size'])} of 2 MiB hugetlb, {p['loops']} interleaved loops\n\n"
            + table(["IOVA", "MAP", "UNMAP"], rows))


def bar_table(vm):
    b = vm["bar"]
    if "error" in b:
        return "error: " + b["error"]
    rows = [[k, cell(b[k]["map"]), secs(b[k]["unmap"]["mean_s"])]
            for k in ("aligned", "mmap_4k_off", "iova_4k_off")]
    return (f"BAR of {size_name(b['bar_size'])}, {b['loops']} interleaved loops; time vs aligned: "
            f"mmap 4K off {b['unaligned_mmap_slowdown']:.2f}x, IOVA 4K off "
            f"{b['unaligned_iova_slowdown']:.2f}x\n\n" + table(["mapping", "MAP", "UNMAP"], rows))


def kernel_name(vm):
    return vm.get("machine", {}).get("kernel", "?")


def ratio_cell(raw, vfiod):
    return f"**{raw / vfiod:.3f}**" if vfiod else ""


def kernels_map_table(lts, newest):
    """The map table of both kernels side by side: per memory kind and size,
    raw and vfiod (mean, median) for map and unmap, and raw / vfiod."""
    head = ["kernel", "memory", "size", "raw map", "vfiod map mean (median)", "ratio",
            "daemon-only", "raw unmap", "vfiod free mean (median)", "ratio", "daemon-only",
            "idle ping p50"]
    rows = []
    for vm in (lts, newest):
        if not vm or "map_table" not in vm:
            continue
        for r in map_rows(vm):
            raw, fio = r["raw"], r["vfiod"]
            rows.append([kernel_name(vm), r["memory"], size_name(r["size"]),
                         secs(raw["map"]["mean_s"]),
                         f"{fio['map']['mean_s']:.5f} ({fio['map']['median_s']:.5f})",
                         ratio_cell(raw["map"]["mean_s"], fio["map"]["mean_s"]),
                         f"{r['ratio_server']['map']:.3f}",
                         secs(raw["unmap"]["mean_s"]),
                         f"{fio['unmap']['mean_s']:.5f} ({fio['unmap']['median_s']:.5f})",
                         ratio_cell(raw["unmap"]["mean_s"], fio["unmap"]["mean_s"]),
                         f"{r['ratio_server']['unmap']:.3f}",
                         us(r["ping_s"]["p50"]) if "ping_s" in r else ""])
    return table(head, rows)


def kernels_bar_table(lts, newest):
    """dma.map_bar through vfiod against raw ioctls on the same BAR, per
    kernel (section 5b), with the alignment figures of section 5 beside it."""
    head = ["kernel", "BAR", "raw map, touched mmap", "raw mmap + map", "vfiod dma.map_bar",
            "daemon's own", "ratio", "raw unmap + munmap", "vfiod dma.free", "ratio",
            "device.open", "first map_bar", "idle ping p50", "raw map, mmap 4K off"]
    rows = []
    for vm in (lts, newest):
        b = (vm or {}).get("bar_vfiod")
        if not b or "error" in b:
            continue
        skew = vm.get("bar", {}).get("mmap_4k_off")
        rows.append([kernel_name(vm), size_name(b["bar_size"]),
                     secs(b["raw_warm"]["map"]["mean_s"]), secs(b["raw_fresh"]["map"]["mean_s"]),
                     secs(b["vfiod"]["map"]["mean_s"]), secs(b["vfiod_server_map_mean_s"]),
                     f"**{b['map_ratio_raw_over_vfiod']:.3f}**",
                     secs(b["raw_fresh"]["unmap"]["mean_s"]), secs(b["vfiod"]["unmap"]["mean_s"]),
                     f"**{b['unmap_ratio_raw_over_vfiod']:.3f}**",
                     secs(b["vfiod_device_open_s"]), secs(b["vfiod_first_map_free_s"][0]),
                     us(b["ping_s"]["p50"]),
                     secs(skew["map"]["mean_s"]) if skew else ""])
    return table(head, rows)


def us(x):
    return f"{x * 1e6:.1f} us"


# The daemon's stages (stats' stages_us, daemon/service/stages.h): the
# handler's own, which add up to its time, then those around it.
HANDLER_STAGES = ["params", "lookup", "lock_wait", "prepare", "plan", "ioctl", "bookkeeping",
                  "record", "result", "other"]
OUTER_STAGES = ["parse", "queue", "reply"]
STAGE_ROWS = [("HUGETLBFS 2M", 256 << 20)]  # map table rows broken down (besides the BAR)


def ms(x):
    return f"{x * 1e3:.3f}"


def stage_cells(stages):
    """One cell per stage: the median per call, in ms."""
    return [ms(stages[n]["median_s"]) if n in stages else "" for n in HANDLER_STAGES + OUTER_STAGES]


def kernels_stages_table(lts, newest):
    """Where vfiod's own time goes, stage by stage (ms, the median per call,
    so one preempted call does not move a cell): the BAR of section 5b and
    the map table rows of STAGE_ROWS (the registered region's column),
    beside raw's time for the same kernel work (median)."""
    head = (["kernel", "call", "raw", "daemon's own"] + HANDLER_STAGES
            + ["(" + n + ")" for n in OUTER_STAGES])
    rows = []
    for vm in (lts, newest):
        if not vm:
            continue
        b = vm.get("bar_vfiod")
        if b and "error" not in b and "vfiod_server" in b:
            bar = size_name(b["bar_size"])
            raw = lambda op: (f"{ms(b['raw_warm'][op]['median_s'])} / "
                              f"{ms(b['raw_fresh'][op]['median_s'])}")
            rows.append([kernel_name(vm), f"dma.map_bar {bar}", raw("map"),
                         ms(b["vfiod_server"]["map"]["median_s"])]
                        + stage_cells(b["vfiod_server_map_stages_s"]))
            rows.append([kernel_name(vm), "dma.free of it", raw("unmap"),
                         ms(b["vfiod_server"]["unmap"]["median_s"])]
                        + stage_cells(b["vfiod_server_free_stages_s"]))
        for r in map_rows(vm) if "map_table" in vm else []:
            if (r["memory"], r["size"]) not in STAGE_ROWS or "server_stages" not in r["vfiod"]:
                continue
            fio = r["vfiod"]
            name = f"{r['memory']} {size_name(r['size'])}"
            raw = lambda op: (f"{ms(r['raw'][op]['median_s'])} / "
                              f"{ms(r['raw_memfd'][op]['median_s'])}")
            rows.append([kernel_name(vm), f"dma.map_fd {name}", raw("map"),
                         ms(fio["server"]["map"]["median_s"])]
                        + stage_cells(fio["server_stages"]["map"]))
            rows.append([kernel_name(vm), f"dma.free {name}", raw("unmap"),
                         ms(fio["server"]["unmap"]["median_s"])]
                        + stage_cells(fio["server_stages"]["unmap"]))
    return table(head, rows)


def latency_table(rpc):
    lat = rpc["latency"]
    r, v = lat["raw_s"], lat["vfiod_s"]
    q = lat["quietest_round"]
    rows = [["raw unix ping-pong", us(r["p50"]), us(r["p99"]), us(r["mean"])],
            ["vfiod `ping`", us(v["p50"]), us(v["p99"]), us(v["mean"])],
            ["ratio", f"**{lat['ratio_p50']:.2f}x**", f"**{lat['ratio_p99']:.2f}x**", ""],
            ["quietest round: raw / vfiod", f"{us(q['raw_s']['p50'])} / {us(q['vfiod_s']['p50'])}",
             f"{us(q['raw_s']['p99'])} / {us(q['vfiod_s']['p99'])}", ""],
            ["quietest round ratio", f"**{q['ratio_p50']:.2f}x**", f"**{q['ratio_p99']:.2f}x**",
             ""]]
    return table(["", "p50", "p99", "mean"], rows)


def rate_table(rpc):
    rates = rpc["rates"]
    head = ["clients"] + [str(r["clients"]) for r in rates]
    rows = [["req/s (best)"] + [f"{r['per_second']:.0f}" for r in rates],
            ["req/s (every pass)"] + [" ".join(f"{x['per_second']:.0f}" for x in r["runs"])
                                      for r in rates],
            ["errors"] + [str(r["errors"]) for r in rates]]
    return table(head, rows)


def memory_table(rpc):
    m = rpc["memory"]
    mib = lambda b: f"{b / (1 << 20):.1f} MiB"
    rows = [[k, mib(m[k]["vm_rss"]), mib(m[k]["rss_anon"]), mib(m[k]["rss_shmem"]), m[k]["fds"],
             m[k]["vmas"]] for k in ("idle", "with_region", "mapped", "after_close") if k in m]
    per = m["bytes_per_mapping"]["rss_anon"]
    share = m.get("model_share", {})
    model = share.get("rss_anon_per_entry")
    text = table(["", "VmRSS", "RssAnon (heap)", "RssShmem", "fds", "VMAs"], rows)
    text += (f"\n\n{m['mappings']} mappings of {m['slice_bytes']} B slices in "
             f"{m['seconds_to_map']:.1f} s; **{per:.0f} B of daemon heap per mapping**")
    if model is not None:
        text += (f", of which the model kernel's type1 entries measured alone: {model:.0f} B "
                 f"RssAnon ({share['heap_in_use_per_entry']:.0f} B malloc'd) per entry; "
                 f"**vfiod's own: {per - model:.0f} B**")
    if "heap_returned" in m:
        text += f"; heap returned after the close: {'yes' if m['heap_returned'] else 'NO'}"
    if "released" in m:
        text += (f"; after the client closed: released {'yes' if m['released'] else 'NO'} in "
                 f"{m.get('seconds_to_release', 0):.1f} s")
    return text + "."


def micro_table(micro):
    rows = []
    for b in micro["benchmarks"]:
        extra = ", ".join(f"{k} {b[k]:.0f}" for k in ("ioctls", "runs", "folios_2m", "unmapped")
                          if k in b)
        if "items_per_second" in b:
            extra += (", " if extra else "") + f"{b['items_per_second'] / 1e6:.1f} M items/s"
        rows.append([f"`{b['name']}`", f"{b['cpu_time']:.2f} {b['time_unit']}",
                     f"{b['real_time']:.2f} {b['time_unit']}", extra])
    return table(["benchmark", "CPU time", "wall time", "counters"], rows)


def met(ok):
    return "met" if ok else "**missed**"


def target_rows(vm, rpc):
    """The targets at a glance, each judged from the figures."""
    rows = []
    if vm and "map_table" in vm:
        cells = [(r, k) for r in map_rows(vm) for k in ("map", "unmap")]
        good = [c for c in cells if c[0]["ratio"][c[1]] >= 0.97]
        out_of_reach = [c for c in cells
                        if c[0]["ratio"][c[1]] < 0.97 and c[0]["round_trip_over_3pct"][c[1]]]
        rng = lambda k: (min(r["ratio"][k] for r in map_rows(vm)),
                         max(r["ratio"][k] for r in map_rows(vm)))
        server = [r["ratio_server"][k] for r, k in cells]
        rows.append(["through vfiod >= 0.97 of raw throughput at >= 256 MiB",
                     "map %.2f-%.2f, unmap %.2f-%.2f (mean of %d interleaved rounds); the daemon's "
                     "own time: %.2f-%.2f of raw" % (*rng("map"), *rng("unmap"),
                                                      vm["map_table"]["loops"], min(server),
                                                      max(server)),
                     f"{met(len(good) == len(cells))}: {len(good)} of {len(cells)} cells at or "
                     f"above 0.97; of the "
                     f"{len(cells) - len(good)} missed, {len(out_of_reach)} have an idle round "
                     f"trip over 3% of the raw time (item 1)"])
    if vm and "batching" in vm:
        b = vm["batching"]["rows"]
        eq = all(r["planner"]["map_ioctls"] == r["runs"] for r in b)
        big = [r for r in b if r["run_pages"] >= 8]
        rows.append(["batching: ioctls = runs, >= 5x for runs >= 8",
                     "ioctls %s runs; map %s, unmap %s" % (
                         "=" if eq else "!=",
                         " / ".join(f"{r['map_speedup']:.1f}x" for r in big),
                         " / ".join(f"{r['unmap_speedup']:.1f}x" for r in big)),
                     met(eq and all(min(r["map_speedup"], r["unmap_speedup"]) >= 5 for r in big))
                     + " (item 2)"])
    if vm and "contiguity" in vm:
        c = [r for r in vm["contiguity"]["rows"] if "error" not in r and r["backing"] != "4k"]
        worst = max(r["fraction_of_map"] for r in c)
        rows.append(["contiguity < 3% of map time for hugetlb/THP",
                     "placement on the map path %.2f-%.2f%%" % (
                         100 * min(r["fraction_of_map"] for r in c), 100 * worst),
                     met(worst < 0.03) + " (item 3)"])
    if rpc and "latency" in rpc:
        lat = rpc["latency"]
        rows.append(["RPC within 2x of raw ping-pong",
                     f"p50 {lat['ratio_p50']:.2f}x, p99 {lat['ratio_p99']:.2f}x",
                     met(max(lat["ratio_p50"], lat["ratio_p99"]) <= 2) + " (item 6)"])
    if rpc and "rates" in rpc:
        r16 = [r for r in rpc["rates"] if r["clients"] == 16]
        if r16:
            passes = [x["per_second"] for x in r16[0]["runs"]]
            ok = sum(1 for x in passes if x >= 50000)
            rows.append([">= 50k req/s with 16 clients",
                         "%.1fk best of %d (passes: %s)" % (
                             r16[0]["per_second"] / 1e3, len(passes),
                             ", ".join(f"{x / 1e3:.1f}k" for x in passes)),
                         f"{met(ok > 0)}: {ok} of {len(passes)} passes at or above 50k "
                         f"(item 6)"])
    if rpc and "memory" in rpc and "bytes_per_mapping" in rpc["memory"]:
        m = rpc["memory"]
        per = m["bytes_per_mapping"]["rss_anon"]
        model = m.get("model_share", {}).get("rss_anon_per_entry", 0)
        rows.append(["< 256 B per mapping",
                     f"{per:.0f} B of daemon heap per mapping at {m['mappings']} mappings, of "
                     f"which {model:.0f} B is the model kernel's own (in the kernel on Linux): "
                     f"vfiod {per - model:.0f} B",
                     f"{met(per < 256)} with the model's share, {met(per - model < 256)} for "
                     f"vfiod's own (item 6)"])
    return table(["target", "result", ""], rows)


def machine(doc, label):
    m = doc.get("machine") or doc.get("context", {})
    if "kernel" in m:
        return f"{label}: {m['cpu']}, {m['cpus']} CPUs, Linux {m['kernel']}, loadavg {m['loadavg']}"
    return f"{label}: {m.get('num_cpus')} CPUs, load_avg {m.get('load_avg')}"


def blocks(vm, rpc, micro):
    out = {"targets": target_rows(vm, rpc)} if vm or rpc else {}
    if vm:
        sections = {"batching": batching_table, "contiguity": contiguity_table,
                    "placement": placement_table, "bar": bar_table}
        for name, fn in sections.items():
            if name in vm:
                out[name] = fn(vm)
    if vm and "map_table" in vm:
        host = vm.get("host_loadavg_at_start")
        out["vm-machine"] = machine(vm, "guest") + (f"; host loadavg at start {host}" if host else "") + (
            f"; guest RAM {vm['guest'].get('mem_total_kb', 0) >> 10} MiB, hugepages 2M "
            f"{vm['guest'].get('hugepages_2m')} / 1G {vm['guest'].get('hugepages_1g')} at start; "
            f"{vm['map_table']['loops']} interleaved rounds per map table row, "
            f"{vm['map_table']['breakdown_loops']} loops elsewhere")
        out["map"] = map_table(vm, "MAP")
        out["unmap"] = map_table(vm, "UNMAP")
        out["map-gap"] = map_gap_table(vm)
        out["map-misses"] = map_misses(vm)
        out["map-facts"] = map_facts(vm)
    if rpc:
        out["rpc-machine"] = machine(rpc, "host")
        if "latency" in rpc:
            out["latency"] = latency_table(rpc)
        if "rates" in rpc:
            out["rates"] = rate_table(rpc)
        if "memory" in rpc:
            out["memory"] = memory_table(rpc)
    if micro:
        out["micro"] = micro_table(micro)
    return out


def load(path):
    if not path:
        return None
    with open(path) as f:
        return json.load(f)


def merged(paths):
    """One run's sections from several guest JSON files (later ones win)."""
    doc = {}
    for path in paths or []:
        doc.update(load(path))
    return doc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vm")
    ap.add_argument("--rpc")
    ap.add_argument("--micro")
    ap.add_argument("--lts", nargs="+", help="guest JSON of runs on the LTS kernel")
    ap.add_argument("--newest", nargs="+", help="guest JSON of runs on the newest kernel")
    ap.add_argument("--update", help="rewrite the generated blocks of this Markdown file")
    a = ap.parse_args()
    out = blocks(load(a.vm), load(a.rpc), load(a.micro))
    if a.lts or a.newest:
        lts, newest = merged(a.lts), merged(a.newest)
        out["map-kernels"] = kernels_map_table(lts, newest)
        out["bar-kernels"] = kernels_bar_table(lts, newest)
        out["stages-kernels"] = kernels_stages_table(lts, newest)
    if not a.update:
        for name, text in out.items():
            print(f"<!-- generated:{name} -->\n{text}\n<!-- /generated:{name} -->\n")
        return 0
    with open(a.update) as f:
        doc = f.read()
    for name, text in out.items():
        pattern = re.compile(rf"(<!-- generated:{re.escape(name)} -->\n)(?:.*?\n)?"
                             rf"(<!-- /generated:{re.escape(name)} -->)", re.S)
        doc, n = pattern.subn(lambda m: m.group(1) + text + "\n" + m.group(2), doc)
        if n == 0:
            print(f"report: no block '{name}' in {a.update}", file=sys.stderr)
    with open(a.update, "w") as f:
        f.write(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
