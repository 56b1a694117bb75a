#!/usr/bin/env python3
"""Load tests on loopback: SIPp's built-in uac -> target -> SIPp's uas.

Targets: the escalator host over UDP and TCP, the host with the escalation
plugin loaded (calls that do not escalate), and Kamailio as a minimal
transaction-stateful proxy (kamailio.cfg), measured in the same run.

  python3 examples/load/load.py            # capacity ramp + latency, all targets
  python3 examples/load/load.py --memory 10000 --memory 100000
  python3 examples/load/load.py --escalation 200   # calls that all escalate

Every SIPp run is bounded (-m calls, -timeout) and everything stays on
127.0.0.0/8: client 127.0.0.1, host 127.0.0.2, core (uas) 127.0.0.3,
Kamailio 127.0.0.4. Needs sipp, kamailio and a release build
(`cargo build --release -p escalator-host`).
"""

import argparse
import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "escalator")
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT, HOST, CORE, KAM = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
WORK = tempfile.mkdtemp(prefix="escalator-load-")
CHILDREN = []


def spawn(args, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=WORK, **kw)
    CHILDREN.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup(*_):
    for p in CHILDREN:
        stop(p)
    # kamailio forks: make sure its workers are gone too
    subprocess.run(["pkill", "-f", f"kamailio.*{HERE}"], check=False)


def mode(transport):
    return "t1" if transport == "tcp" else "u1"


_next_port = [20000]


def port():
    _next_port[0] += 1
    return _next_port[0]


def start_uas(transport):
    p_port = port()
    p = spawn(["sipp", "-sf", os.path.join(HERE, "core-uas.xml"), "-i", CORE, "-p", str(p_port),
               "-t", mode(transport), "-nostdin", "-m", "10000000"])
    time.sleep(0.3)
    return p, p_port


def start_escalator(transport, uas_port, plugin=False, uas_extra_core=None):
    host_port = port()
    cfg = os.path.join(WORK, f"escalator-{host_port}.toml")
    text = (
        f'[listen]\nudp = ["{HOST}:{host_port}"]\ntcp = ["{HOST}:{host_port}"]\n'
        f'[core]\naddress = "{CORE}:{uas_port}"\ntransport = "{transport}"\nsources = ["{CORE}"]\n'
        f'[log]\nlevel = "error"\n[shutdown]\ngrace_ms = 200\n'
    )
    if plugin:
        text += (f'[[plugins]]\npath = "builtin:escalation"\n[plugins.config]\n'
                 f'policy = "{os.path.join(ROOT, "policies", "default.toml")}"\n')
    with open(cfg, "w") as f:
        f.write(text)
    p = spawn([BIN, "run", "--config", cfg])
    time.sleep(0.5)
    return p, f"{HOST}:{host_port}"


def start_kamailio(transport, uas_port):
    k_port = port()
    uas = f'"sip:{CORE}:{uas_port};transport={transport}"'
    p = spawn(["kamailio", "-DD", "-E", "-f", os.path.join(HERE, "kamailio.cfg"), "-A", f"UAS={uas}",
               "-l", f"udp:{KAM}:{k_port}", "-l", f"tcp:{KAM}:{k_port}", "-m", "512", "-M", "32"])
    time.sleep(1.5)
    return p, f"{KAM}:{k_port}"


def run_uac(target, transport, rate, calls, scenario=None, extra=()):
    """Returns successful, failed, elapsed seconds."""
    tag = f"uac-{port()}"
    stats = os.path.join(WORK, f"{tag}.csv")
    args = ["sipp", target, "-i", CLIENT, "-p", str(port()), "-t", mode(transport), "-nostdin",
            "-r", str(rate), "-m", str(calls), "-l", str(max(1000, rate * 4)),
            "-timeout", "120s", "-timeout_error", "-trace_stat", "-fd", "1", "-stf", stats, *extra]
    args += ["-sf", scenario or os.path.join(HERE, "uac.xml")]
    start = time.time()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=WORK, check=False)
    elapsed = time.time() - start
    ok, failed = read_stats(stats)
    return ok, failed, elapsed


def read_stats(path):
    try:
        with open(path) as f:
            rows = list(csv.reader(f, delimiter=";"))
    except OSError:
        return 0, 0
    head, last = rows[0], rows[-1]
    get = lambda name: int(last[head.index(name)]) if name in head else 0
    return get("SuccessfulCall(C)"), get("FailedCall(C)")


def passes(target, transport, rate, seconds=3):
    calls = max(300, rate * seconds)
    ok, failed, elapsed = run_uac(target, transport, rate, calls)
    kept_pace = elapsed <= seconds * 1.3 + 3
    return failed == 0 and ok == calls and kept_pace


def ramp(target, transport):
    """Highest rate (calls/s) with 0 failed calls: doubling, then bisection."""
    good, bad, rate = 0, None, 250
    while bad is None and rate <= 32000:
        if passes(target, transport, rate):
            good, rate = rate, rate * 2
        else:
            bad = rate
    if bad is None:
        return good
    for _ in range(3):
        mid = (good + bad) // 2
        if mid - good < 50:
            break
        if passes(target, transport, mid):
            good = mid
        else:
            bad = mid
    return good


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(target, transport, rate, seconds=4):
    """Per-hop delay from kernel timestamps on lo: INVITE in -> INVITE out and
    200 in -> 200 out, paired by the X-Call header and the Call-ID mapping
    (a B2BUA changes Call-IDs, a proxy does not). UDP only."""
    ip = target.split(":")[0]
    pcap = os.path.join(WORK, f"lat-{port()}.pcap")
    cap = spawn(["tshark", "-i", "lo", "-f", f"udp and host {ip}", "-w", pcap, "-q"])
    for _ in range(100):
        if os.path.exists(pcap) and os.path.getsize(pcap) > 0:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    _, failed, _ = run_uac(target, transport, rate, rate * seconds)
    time.sleep(0.5)
    stop(cap)
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "sip", "-T", "fields", "-E", "separator=/t",
                          "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "sip.Method",
                          "-e", "sip.Status-Code", "-e", "sip.CSeq.method", "-e", "sip.Call-ID",
                          "-e", "sip.msg_hdr"], capture_output=True, text=True, check=False).stdout
    inv_in, inv_out, ok_in, ok_out, b_to_a = {}, {}, {}, {}, {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 8:
            continue
        t, src, dst, method, status, cseq, callid, hdr = float(f[0]), f[1], f[2], f[3], f[4], f[5], f[6], f[7]
        xcall = re.search(r"X-Call: (\d+)", hdr)
        if method == "INVITE" and xcall:
            side = inv_in if dst == ip else inv_out
            side.setdefault(xcall.group(1), (t, callid))
        elif status == "200" and cseq == "INVITE":
            (ok_in if dst == ip else ok_out).setdefault(callid, t)
    hop_invite, hop_ok = [], []
    for x, (t_in, call_a) in inv_in.items():
        if x in inv_out:
            t_out, call_b = inv_out[x]
            hop_invite.append((t_out - t_in) * 1000)
            if call_b in ok_in and call_a in ok_out:
                hop_ok.append((ok_out[call_a] - ok_in[call_b]) * 1000)
    both = hop_invite + hop_ok
    return percentile(both, 0.5), percentile(both, 0.99), failed, len(hop_invite)


def capacity(transports):
    results = []
    for transport in transports:
        uas, uas_port = start_uas(transport)
        targets = []
        host, host_addr = start_escalator(transport, uas_port)
        targets.append(("escalator", host, host_addr))
        host_p, host_p_addr = start_escalator(transport, uas_port, plugin=True)
        targets.append(("escalator + escalation plugin", host_p, host_p_addr))
        kam, kam_addr = start_kamailio(transport, uas_port)
        targets.append(("kamailio (tm proxy)", kam, kam_addr))
        for name, proc, addr in targets:
            max_rate = ramp(addr, transport)
            half = max(50, max_rate // 2)
            if transport == "udp":
                p50, p99, lat_failed, pairs = latency(addr, transport, half)
            else:
                p50 = p99 = float("nan")
                lat_failed = pairs = 0
            results.append((transport, name, max_rate, half, p50, p99, lat_failed, pairs))
            print(f"{transport} {name}: max {max_rate} calls/s with 0 failed; per-hop delay at {half}/s "
                  f"p50 {p50:.3f} ms p99 {p99:.3f} ms ({pairs} INVITEs paired, {lat_failed} failed)", flush=True)
            stop(proc)
        stop(uas)
    print("\n| transport | target | max calls/s, 0 failed | latency run calls/s | per-hop p50 ms | per-hop p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} | {r[5]:.3f} |")
    for transport in transports:
        rows = {r[1]: r for r in results if r[0] == transport}
        e, k, p = rows["escalator"][2], rows["kamailio (tm proxy)"][2], rows["escalator + escalation plugin"][2]
        print(f"{transport}: escalator / kamailio = {e / k:.2f}; with plugin / without = {p / e:.2f}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory(calls):
    """Resident memory of the host holding `calls` established idle calls."""
    uas, uas_port = start_uas("udp")
    host, addr = start_escalator("udp", uas_port)
    base = rss_kib(host.pid)
    stats = os.path.join(WORK, f"mem-{calls}.csv")
    rate = 2000
    uac = spawn(["sipp", addr, "-sn", "uac", "-i", CLIENT, "-p", str(port()), "-t", "u1", "-nostdin",
                 "-r", str(rate), "-m", str(calls), "-l", str(calls), "-d", "3600000",
                 "-timeout", "600s", "-trace_stat", "-fd", "1", "-stf", stats])
    deadline = time.time() + calls / rate + 120
    current = 0
    while time.time() < deadline:
        time.sleep(2)
        try:
            with open(stats) as f:
                rows = list(csv.reader(f, delimiter=";"))
            current = int(rows[-1][rows[0].index("CurrentCall")])
        except (OSError, ValueError, IndexError):
            continue
        if current >= calls:
            break
    # Let the last transactions end (64*T1 = 32 s) so only the calls remain.
    time.sleep(35)
    used = rss_kib(host.pid)
    per_call = (used - base) * 1024 / max(1, calls)
    print(f"memory: {calls} established calls (SIPp says {current}): host RSS {base} KiB idle -> "
          f"{used} KiB, {per_call:.0f} bytes per call", flush=True)
    for p in (uac, host, uas):
        stop(p)
    return per_call


def escalation_load(calls):
    """Every call escalates: uac = legacy client doing REFER, uas = core (bob and the focus)."""
    uas, uas_port = start_uas("udp")
    host, addr = start_escalator("udp", uas_port, plugin=True)
    for rate in (10, 50, 100, 200, 400, 800, 1600):
        n = min(calls, rate * 4)
        ok, failed, elapsed = run_uac(addr, "udp", rate, n, scenario=os.path.join(HERE, "legacy-uac.xml"))
        print(f"escalation: {n} calls at {rate}/s, each REFERs and escalates: {ok} successful, {failed} failed, "
              f"{elapsed:.1f} s", flush=True)
        if failed or ok != n:
            break
    stop(host)
    stop(uas)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transport", action="append", choices=["udp", "tcp"])
    ap.add_argument("--memory", action="append", type=int, metavar="CALLS")
    ap.add_argument("--escalation", type=int, metavar="CALLS")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, cleanup)
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p escalator-host")
    try:
        if args.memory:
            for n in args.memory:
                memory(n)
        elif args.escalation:
            escalation_load(args.escalation)
        else:
            capacity(args.transport or ["udp", "tcp"])
    finally:
        cleanup()


if __name__ == "__main__":
    main()
