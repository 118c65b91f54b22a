#!/usr/bin/env python3
"""Helper of scripts/bench.sh: parses one run's client output into a JSON line, and turns the
collected JSON lines into the markdown report.

  benchstat.py record --kind wrk|ws|hs|h2load|big --file OUT ... --results results.jsonl   -> prints a summary
  benchstat.py idle --target T ... --results results.jsonl                   -> prints a summary
  benchstat.py report --results results.jsonl --meta meta.txt                -> markdown on stdout
  benchstat.py sampler --exclude PID --out FILE   (until SIGTERM) CPU of processes outside PID's tree
"""
import argparse
import json
import os
import re
import statistics
import sys

PHASES = [
    ("ka64", "HTTP/1.1 keep-alive, wrk -t2 -c64", "req/s"),
    ("ka1000", "HTTP/1.1 keep-alive, wrk -t2 -c1000", "req/s"),
    ("close", "HTTP/1.1 new TCP connection per request (Connection: close), wrk -t2 -c64", "req/s"),
    ("tls", "HTTPS keep-alive (ECDSA P-256, TLS 1.3), wrk -t2 -c64", "req/s"),
    ("tlsclose", "HTTPS Connection: close, TLS session resumption allowed (wrk resumes), ECDSA P-256",
     "hs/s"),
    ("hs", "Full TLS 1.3 handshakes, ECDSA P-256 (tls-hs-client.py: never resumes; one GET per "
           "connection; unit = handshake)", "hs/s"),
    ("hsrsa", "Full TLS 1.3 handshakes, RSA-2048 (tls-hs-client.py: never resumes; one GET per "
              "connection; unit = handshake)", "hs/s"),
    ("h2", "HTTP/2 to the proxy over TLS (ECDSA P-256, ALPN h2), h2load -t2 -c{h2conns} -m{h2streams} "
           "({h2total} streams in flight); HTTP/1.1 to the origin", "req/s"),
    ("bigdown", "Large download through the proxy: {bigmib} MiB bodies, one at a time (unit = MiB)", "MiB/s"),
    ("bigup", "Large upload through the proxy: {bigmib} MiB bodies, one at a time (unit = MiB)", "MiB/s"),
    ("ws", "WebSocket echo ping-pong, {conns} connections, {msg}-byte messages (unit = round trip)",
     "round trips/s"),
    # traffic policy (nginx and Portico only)
    ("ka64limit", "HTTP/1.1 keep-alive, wrk -t2 -c64, route with a rate limit that never triggers "
                  "(nginx limit_req, Portico limit_rate)", "req/s"),
    ("gzip4k", "HTTP/1.1 keep-alive, wrk -t2 -c64, 4 KiB text response gzipped by the proxy "
               "(level 6, min length 256)", "req/s"),
]
TARGETS = ["direct", "nginx", "haproxy", "portico", "portico_metrics"]
PROXIES = ["nginx", "haproxy", "portico", "portico_metrics"]


def wrk_time_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(text):
    out = {"units": 0, "secs": None, "rate": 0.0, "p50": None, "p99": None, "errors": 0,
           "socket_errors": 0, "non2xx": 0}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        out["units"] = int(m.group(1))
        out["secs"] = wrk_time_ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rate"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        if m:
            out[key] = wrk_time_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    out["errors"] = out["socket_errors"] + out["non2xx"]
    return out


def parse_ws(text):
    out = {"units": 0, "secs": None, "rate": 0.0, "p50": None, "p99": None, "errors": 0}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                continue
            out.update(units=j.get("round_trips", 0), secs=j.get("duration_s"),
                       rate=float(j.get("rt_per_s", 0)), p50=j.get("p50_ms"), p99=j.get("p99_ms"),
                       errors=j.get("errors", 0))
    return out


def parse_hs(text):
    """bench/tls-hs-client.py: one JSON line with handshakes, errors, secs."""
    out = {"units": 0, "secs": None, "rate": 0.0, "p50": None, "p99": None, "errors": 0}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                continue
            out.update(units=j.get("handshakes", 0), secs=j.get("secs"),
                       rate=float(j.get("hs_per_s", 0)), errors=j.get("errors", 0))
    return out


def parse_h2load(text):
    """h2load's summary: 'finished in 10.00s, 45678.90 req/s, ...', the requests line and the
    status codes line; every request that did not succeed with a 2xx counts as an error."""
    out = {"units": 0, "secs": None, "rate": 0.0, "p50": None, "p99": None, "errors": 0}
    m = re.search(r"finished in ([\d.]+)(us|ms|s|m), ([\d.]+) req/s", text)
    if m:
        out["secs"] = wrk_time_ms(m.group(1) + m.group(2)) / 1000.0
        out["rate"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    ok2xx = None
    c = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if c:
        ok2xx = int(c.group(1))
    if m:
        done, succeeded = int(m.group(3)), int(m.group(4))
        out["units"] = succeeded if ok2xx is None else min(succeeded, ok2xx)
        out["errors"] = int(m.group(5)) + int(m.group(6)) + int(m.group(7)) + (done - out["units"]
                                                                               if done > out["units"] else 0)
    if out["secs"] and not out["rate"]:
        out["rate"] = out["units"] / out["secs"]
    return out


def parse_big(text):
    """bench/big-client.sh: one JSON line with bytes, transfers, secs, errors; unit = MiB."""
    out = {"units": 0, "secs": None, "rate": 0.0, "p50": None, "p99": None, "errors": 0}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                continue
            mib = j.get("bytes", 0) / 1048576.0
            secs = j.get("secs") or None
            out.update(units=mib, secs=secs, rate=mib / secs if secs else 0.0, errors=j.get("errors", 0))
    return out


def proc_table(with_comm=False):
    """pid -> (ppid, starttime, own ticks, reaped children's ticks[, comm]) for user-space
    processes."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                s = f.read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        flags = int(f[6])
        if flags & 0x00200000:  # PF_KTHREAD: kernel threads are not "other workloads"
            continue
        row = (int(f[1]), f[19], int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
        if with_comm:
            row += (s[s.index("(") + 1:s.rindex(")")],)
        table[int(name)] = row
    return table


def ours(table, root):
    """The bench script's process tree, its ancestors and this process."""
    skip = set()
    p = root
    while p > 1 and p in table:  # ancestors: their children's time only lands when we exit
        skip.add(p)
        p = table[p][0]
    children = {}
    for pid, row in table.items():
        children.setdefault(row[0], []).append(pid)
    stack = [root, os.getpid()]
    while stack:
        p = stack.pop()
        skip.add(p)
        stack.extend(children.get(p, []))
    return skip


def cmd_sampler(a):
    """Runs until SIGTERM: samples every process's own CPU ticks outside the bench's tree a few
    times a second (so processes that start or end during the run are counted too), then
    writes {"ticks": N, "top": [[comm, ticks], ...]}."""
    import signal
    import time

    clk = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        t_start = float(f.read().split()[0]) * clk
    first, last, comm = {}, {}, {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def sample():
        table = proc_table(with_comm=True)
        skip = ours(table, a.exclude)
        for pid, row in table.items():
            if pid in skip:
                continue
            key = (pid, row[1])
            if key not in first:
                first[key] = 0 if int(row[1]) >= t_start else row[2]
            last[key] = row[2]
            comm[key] = row[4]

    sample()
    while not stop:
        time.sleep(a.interval)
        sample()
    per = {}
    for k, v in last.items():
        per[comm[k]] = per.get(comm[k], 0) + max(0, v - first[k])
    top = sorted(((c, t) for c, t in per.items() if t > 0), key=lambda x: -x[1])[:5]
    with open(a.out, "w") as f:
        json.dump({"ticks": sum(per.values()), "top": top}, f)


def foreign_sample(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def cmd_record(a):
    text = open(a.file, encoding="utf-8", errors="replace").read()
    r = {"wrk": parse_wrk, "ws": parse_ws, "hs": parse_hs, "h2load": parse_h2load,
         "big": parse_big}[a.kind](text)
    if a.died:
        r["errors"] = max(r["errors"], 1)
    if r["units"] == 0 and a.rc != 0:
        r["errors"] = max(r["errors"], 1)
    t0, b0, st0 = (int(x) for x in a.stat0.split())
    t1, b1, st1 = (int(x) for x in a.stat1.split())
    total, busy, steal = max(1, t1 - t0), b1 - b0, st1 - st0
    proxy = a.proxy[1] - a.proxy[0]
    origin = a.origin[1] - a.origin[0]
    ours = proxy + origin + a.client
    unaccounted = max(0, busy - ours) * 100.0 / total
    fs = foreign_sample(a.foreign_file) if a.foreign_file else None
    foreign = unaccounted if fs is None else fs["ticks"] * 100.0 / total
    units = r["units"] if a.kind == "big" and r["units"] > 0 else max(1, r["units"])
    us = lambda ticks: ticks * 1e6 / a.clk / units  # noqa: E731
    proxy_measured = a.target != "direct" and not a.died
    rec = dict(kind="load", round=a.round, target=a.target, phase=a.phase, attempt=a.attempt,
               rc=a.rc, units=r["units"], secs=r["secs"], rate=r["rate"], p50=r["p50"],
               p99=r["p99"], errors=r["errors"],
               proxy_us=us(proxy) if proxy_measured else None,
               proxy_sys_us=us(a.proxy_sys[1] - a.proxy_sys[0]) if proxy_measured else None,
               died=bool(a.died),
               origin_us=us(origin), client_us=us(a.client),
               busy=busy * 100.0 / total, steal=steal * 100.0 / total, foreign=foreign,
               unaccounted=unaccounted, foreign_top=fs["top"] if fs else None)
    rec["contaminated"] = foreign > a.foreign_max
    rec["final"] = (not rec["contaminated"]) or bool(a.last)
    with open(a.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    pu = "-" if rec["proxy_us"] is None else "%.1f" % rec["proxy_us"]
    msg = "%s/s %.0f, p50 %s ms, p99 %s ms, errors %d, proxy CPU %s us/unit, busy %.0f%%, foreign %.1f%%" % (
        {"ws": "rt", "hs": "hs", "big": "MiB"}.get(a.kind, "req"), r["rate"], fmt(r["p50"], 2), fmt(r["p99"], 2),
        r["errors"], pu, rec["busy"], foreign)
    if rec["contaminated"]:
        if fs and fs["top"]:
            msg += " (%s)" % ", ".join("%s %.1fs" % (c, t / a.clk) for c, t in fs["top"][:3])
        msg += " -> contaminated" + ("" if a.last else ", repeating")
    print(msg)


def cmd_idle(a):
    opened = failed = 0
    for path in a.files:
        try:
            for line in open(path, encoding="utf-8", errors="replace"):
                if '"all_open"' in line:
                    j = json.loads(line)
                    opened += j.get("opened", 0)
                    failed += j.get("failed", 0)
        except OSError:
            pass
    r0, r1, r2 = a.rss
    q0, q1, q2 = a.pss
    n = max(1, opened)
    half = max(1, opened - (opened // 2))
    rec = dict(kind="idle", round=a.round, target=a.target, requested=a.requested, opened=opened,
               failed=failed, established=a.established, rss=[r0, r1, r2], pss=[q0, q1, q2],
               rss_avg=(r2 - r0) / n, rss_marg=(r2 - r1) / half, pss_avg=(q2 - q0) / n,
               pss_marg=(q2 - q1) / half, final=True)
    with open(a.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    print("opened %d/%d (failed %d), established %d, RSS %.1f -> %.1f -> %.1f MiB, %.1f KiB/conn avg, %.1f marginal"
          % (opened, a.requested, failed, a.established, r0 / 1024, r1 / 1024, r2 / 1024,
             rec["rss_avg"], rec["rss_marg"]))


def fmt(v, nd=1, thousands=False):
    if v is None:
        return "–"
    if thousands:
        return "{:,.0f}".format(v)
    return "%.*f" % (nd, v)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def minmax(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def ratio_line(by_round, pairs):
    parts = []
    for num, den in pairs:
        rs = [r[num] / r[den] for r in by_round.values() if r.get(num) and r.get(den)]
        if rs:
            parts.append("%s/%s %.2f (%.2f–%.2f)" % (num, den, med(rs), min(rs), max(rs)))
    return "; ".join(parts)


def cpu_split_line(rows, cpu):
    """The proxies' CPU per unit split into user space and kernel (stime), medians, and
    Portico's kernel time alone as a share of nginx's whole CPU per unit: no user-space
    saving can take the Portico / nginx ratio below that share."""
    parts, sys_med = [], {}
    for t in PROXIES:
        ks = [r["proxy_sys_us"] for r in rows if r["target"] == t and r.get("proxy_sys_us") is not None]
        if ks and cpu.get(t):
            sys_med[t] = med(ks)
            parts.append("%s %.1f + %.1f" % (t, cpu[t] - sys_med[t], sys_med[t]))
    if not parts:
        return ""
    line = "proxy CPU µs/unit, user + kernel (medians): " + "; ".join(parts)
    if "portico" in sys_med and cpu.get("nginx"):
        line += ("; Portico's kernel time alone is **%.2f** of nginx's whole CPU per unit "
                 "(the floor of the Portico / nginx ratio for user-space work)" % (sys_med["portico"] / cpu["nginx"]))
    return line


def report_phase(out, key, title, unit, recs):
    rows = [r for r in recs if r["kind"] == "load" and r["phase"] == key and r["final"]]
    if not rows:
        return {}
    out.append("## " + title + "\n")
    out.append("| target | %s median | min – max (spread) | p50 ms | p99 ms (min – max) | proxy CPU µs/unit "
               "| origin CPU µs/unit | client CPU µs/unit | vs direct | errors | n |" % unit)
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    meds = {}
    cpu = {}
    for t in TARGETS:
        rs = [r for r in rows if r["target"] == t]
        if rs:
            meds[t] = med([r["rate"] for r in rs])
            cpu[t] = med([r["proxy_us"] for r in rs])
    for t in TARGETS:
        rs = [r for r in rows if r["target"] == t]
        if not rs:
            continue
        rates = [r["rate"] for r in rs]
        lo, hi = minmax(rates)
        spread = (hi - lo) * 100.0 / meds[t] if meds[t] else 0
        p99lo, p99hi = minmax([r["p99"] for r in rs])
        vs = "–" if t == "direct" or "direct" not in meds or not meds["direct"] else "%.2f" % (meds[t] / meds["direct"])
        flagged = sum(1 for r in rs if r["contaminated"])
        n = "%d" % len(rs) + (" (%d disturbed)" % flagged if flagged else "")
        out.append("| %s | %s | %s – %s (%.0f%%) | %s | %s (%s – %s) | %s | %s | %s | %s | %d | %s |" % (
            t, fmt(meds[t], thousands=True), fmt(lo, thousands=True), fmt(hi, thousands=True), spread,
            fmt(med([r["p50"] for r in rs]), 2), fmt(med([r["p99"] for r in rs]), 2), fmt(p99lo, 2),
            fmt(p99hi, 2), fmt(cpu[t]), fmt(med([r["origin_us"] for r in rs])),
            fmt(med([r["client_us"] for r in rs])), vs, sum(r["errors"] for r in rs), n))
    out.append("")
    if "portico" in meds:
        bits = []
        for other in ("nginx", "haproxy"):
            if meds.get(other):
                s = "portico / %s (median %s): **%.2f**" % (other, unit, meds["portico"] / meds[other])
                if cpu.get(other) and cpu.get("portico"):
                    s += ", proxy CPU per unit **%.2f**" % (cpu["portico"] / cpu[other])
                bits.append(s)
        if bits:
            out.append("; ".join(bits) + "\n")
    by_round = {}
    cpu_round = {}
    for r in rows:
        by_round.setdefault(r["round"], {})[r["target"]] = r["rate"]
        if r["proxy_us"]:
            cpu_round.setdefault(r["round"], {})[r["target"]] = r["proxy_us"]
    pairs = [("nginx", "direct"), ("haproxy", "direct"), ("portico", "direct"), ("portico", "nginx"),
             ("portico", "haproxy"), ("nginx", "haproxy"), ("portico_metrics", "portico")]
    line = ratio_line(by_round, pairs)
    if line:
        out.append("per-round ratios of %s, median (min–max): %s\n" % (unit, line))
    line = ratio_line(cpu_round, [("portico", "nginx"), ("portico", "haproxy"), ("nginx", "haproxy"),
                                  ("portico_metrics", "portico")])
    if line:
        out.append("per-round ratios of proxy CPU µs/unit, median (min–max): %s\n" % line)
    split_line = cpu_split_line(rows, cpu)
    if split_line:
        out.append(split_line + "\n")
    busy = [r["busy"] for r in rows]
    foreign = [r["foreign"] for r in rows]
    allruns = [r for r in recs if r["kind"] == "load" and r["phase"] == key]
    out.append("machine CPU busy during runs: median %.0f%%; max steal %.1f%%; other workloads' CPU share: "
               "median %.1f%%, max %.1f%%; runs repeated because of other workloads: %d; kept runs "
               "with >5%% foreign CPU: %d/%d\n" % (
                   med(busy), max(r["steal"] for r in rows), med(foreign), max(foreign),
                   len(allruns) - len(rows), sum(1 for f in foreign if f > 5), len(rows)))
    return {"rate": meds, "cpu": cpu, "foreign": med(foreign)}


def report_idle(out, recs):
    rows = [r for r in recs if r["kind"] == "idle"]
    if not rows:
        return {}
    out.append("## Idle WebSocket connections through the proxy: proxy memory (fresh proxy process)\n")
    out.append("| proxy | opened | established at proxy | RSS MiB at 0 → n/2 → n | RSS/conn avg (0→n) "
               "| RSS/conn marginal (n/2→n) | PSS/conn avg | PSS/conn marginal | n |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    res = {}
    for t in PROXIES:
        rs = [r for r in rows if r["target"] == t]
        if not rs:
            continue
        rss = [med([r["rss"][i] for r in rs]) / 1024 for i in range(3)]
        res[t] = {k: med([r[k] for r in rs]) for k in ("rss_avg", "rss_marg", "pss_avg", "pss_marg")}
        out.append("| %s | %s | %s | %.1f → %.1f → %.1f | %.1f KiB | %.1f KiB | %.1f KiB | %.1f KiB | %d |" % (
            t, "/".join(sorted({str(r["opened"]) for r in rs})),
            "/".join(sorted({str(r["established"]) for r in rs})), rss[0], rss[1], rss[2],
            res[t]["rss_avg"], res[t]["rss_marg"], res[t]["pss_avg"], res[t]["pss_marg"], len(rs)))
    out.append("\n(median over rounds; opened/established list the distinct counts seen)\n")
    return res


def verdict(ok):
    return "**met**" if ok else "**not met**"


def cmd_report(a):
    recs = [json.loads(line) for line in open(a.results, encoding="utf-8") if line.strip()]
    for r in recs:
        r.setdefault("kind", "load")
    meta = open(a.meta, encoding="utf-8").read().strip() if a.meta else ""
    conns = msg = "?"
    m = re.search(r"WS_CONNS=(\d+) WS_MSG=(\d+)", meta)
    if m:
        conns, msg = m.groups()
    h2conns = h2streams = h2total = bigmib = "?"
    m = re.search(r"H2_CONNS=(\d+) H2_STREAMS=(\d+) BIG_BYTES=(\d+)", meta)
    if m:
        h2conns, h2streams = m.group(1), m.group(2)
        h2total = str(int(h2conns) * int(h2streams))
        bigmib = "%g" % (int(m.group(3)) / 1048576.0)
    body = []
    summary = {}
    for key, title, unit in PHASES:
        summary[key] = report_phase(body, key, title.format(conns=conns, msg=msg, h2conns=h2conns,
                                                        h2streams=h2streams, h2total=h2total,
                                                        bigmib=bigmib), unit, recs)
    idle = report_idle(body, recs)

    loads = [r for r in recs if r["kind"] == "load"]
    out = ["# Portico benchmark: Portico vs nginx vs HAProxy, same machine, same run\n"]
    out.append("%d measurements (%d kept; %d repeated because other workloads used more than the "
               "threshold of CPU).\n" % (len(loads), sum(1 for r in loads if r["final"]),
                                         sum(1 for r in loads if not r["final"])))
    out.append("```\n" + meta + "\n```\n")
    restarts = [r["target"] for r in recs if r["kind"] == "restart"]
    if restarts:
        out.append("**Proxy processes that died during the run and were started again: %s**\n"
                   % ", ".join("%s ×%d" % (t, restarts.count(t)) for t in sorted(set(restarts))))
    out.append("## Targets\n")
    ka = summary.get("ka64") or {}
    cpu, rate = ka.get("cpu", {}), ka.get("rate", {})
    if cpu.get("portico") and cpu.get("nginx"):
        out.append("- proxy CPU per request, HTTP keep-alive c64: portico %.1f µs vs nginx %.1f µs "
                   "(target ≤ nginx): %s" % (cpu["portico"], cpu["nginx"], verdict(cpu["portico"] <= cpu["nginx"])))
    if cpu.get("portico") and cpu.get("portico_metrics"):
        r = cpu["portico_metrics"] / cpu["portico"]
        out.append("- what the metrics cost, HTTP keep-alive c64: proxy CPU per request with the admin API "
                   "on %.2f µs vs off %.2f µs, ratio %.3f (target ≤ 1.03): %s"
                   % (cpu["portico_metrics"], cpu["portico"], r, verdict(r <= 1.03)))
    if idle.get("portico") and idle.get("haproxy"):
        p, h = idle["portico"]["rss_avg"], idle["haproxy"]["rss_avg"]
        pm, hm = idle["portico"]["rss_marg"], idle["haproxy"]["rss_marg"]
        out.append("- idle WebSocket memory per connection (RSS, average 0→n): portico %.2f KiB vs "
                   "HAProxy %.2f KiB (target ≤ HAProxy; 4.5 KiB in the reference run): %s; "
                   "marginal (n/2→n): portico %.2f KiB vs HAProxy %.2f KiB: %s"
                   % (p, h, verdict(p <= h), pm, hm, verdict(pm <= hm)))
    if rate.get("portico") and rate.get("nginx"):
        r = rate["portico"] / rate["nginx"]
        out.append("- throughput, HTTP keep-alive c64: portico/nginx %.2f× (product goal ≥ 1.25×): %s"
                   % (r, verdict(r >= 1.25)))
    for key, name in (("hs", "ECDSA P-256"), ("hsrsa", "RSA-2048")):
        cc = (summary.get(key) or {}).get("cpu", {})
        if cc.get("portico") and cc.get("nginx"):
            out.append("- proxy CPU per full TLS 1.3 handshake, %s: portico %.0f µs vs nginx %.0f µs, "
                       "HAProxy %s (target ≤ nginx; nginx 270 µs ECDSA in the reference run): %s" % (
                           name, cc["portico"], cc["nginx"],
                           "%.0f µs" % cc["haproxy"] if cc.get("haproxy") else "–",
                           verdict(cc["portico"] <= cc["nginx"])))
    for key, _, _ in PHASES[1:]:
        s = summary.get(key) or {}
        rr, cc = s.get("rate", {}), s.get("cpu", {})
        if rr.get("portico") and rr.get("nginx"):
            out.append("- %s: portico/nginx throughput %.2f×, proxy CPU/unit %s" % (
                key, rr["portico"] / rr["nginx"],
                "%.2f×" % (cc["portico"] / cc["nginx"]) if cc.get("portico") and cc.get("nginx") else "–"))
    noisy = sorted(k for k, v in summary.items() if v and (v.get("foreign") or 0) > 5)
    if noisy:
        out.append("\n**Caution**: other workloads used a median of more than 5%% of the machine's CPU "
                   "during the %s runs. Throughput (units/s) and latency then measure how much CPU each "
                   "target happened to get; **proxy CPU µs per unit** is the figure that stays "
                   "comparable." % ", ".join(noisy))
    out.append("")
    print("\n".join(out + body))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--kind", choices=["wrk", "ws", "hs", "h2load", "big"], required=True)
    r.add_argument("--file", required=True)
    r.add_argument("--rc", type=int, default=0)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--phase", required=True)
    r.add_argument("--attempt", type=int, default=1)
    r.add_argument("--died", type=int, default=0, help="1: the proxy died during the run")
    r.add_argument("--stat0", required=True)
    r.add_argument("--stat1", required=True)
    r.add_argument("--proxy", type=int, nargs=2, required=True)
    r.add_argument("--proxy-sys", type=int, nargs=2, required=True)
    r.add_argument("--origin", type=int, nargs=2, required=True)
    r.add_argument("--client", type=int, required=True)
    r.add_argument("--clk", type=int, default=100)
    r.add_argument("--foreign-max", type=float, default=5.0)
    r.add_argument("--last", type=int, default=1)
    r.add_argument("--foreign-file", help="output of benchstat.py sampler for this run")
    r.add_argument("--results", required=True)
    sn = sub.add_parser("sampler")
    sn.add_argument("--exclude", type=int, required=True)
    sn.add_argument("--interval", type=float, default=0.25)
    sn.add_argument("--out", required=True)
    i = sub.add_parser("idle")
    i.add_argument("--round", type=int, required=True)
    i.add_argument("--target", required=True)
    i.add_argument("--requested", type=int, required=True)
    i.add_argument("--files", nargs="+", required=True)
    i.add_argument("--established", type=int, required=True)
    i.add_argument("--rss", type=int, nargs=3, required=True)
    i.add_argument("--pss", type=int, nargs=3, required=True)
    i.add_argument("--results", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("--results", required=True)
    rp.add_argument("--meta")
    a = p.parse_args()
    {"record": cmd_record, "idle": cmd_idle, "report": cmd_report, "sampler": cmd_sampler}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
