#!/usr/bin/env python3
"""Load tests on loopback: SIPp's built-in uac -> target -> SIPp's uas.

Targets: the escalator host over UDP and TCP, the host with the escalation
plugin loaded (calls that do not escalate), and Kamailio as a minimal
transaction-stateful proxy (kamailio.cfg), measured in the same run.

  python3 examples/load/load.py            # capacity ramp + latency, all targets
  python3 examples/load/load.py --memory 10000 --memory 100000
  python3 examples/load/load.py --escalation 200   # calls that all escalate
  python3 examples/load/load.py --latency 2750     # per-hop latency only, at one rate
  (latency) --generator sipp|loadgen|both: SIPp's bursts, or escalator-loadgen's
            paced calls (--arrivals poisson|even); both by default
  python3 examples/load/load.py --check 6000 --repeat 3   # pass/fail at one fixed rate
  python3 examples/load/load.py --escalation-core 200 --repeat 2   # escalations, both
            parties behind the host, through Kamailio
  python3 examples/load/load.py --flood 45000 --repeat 1   # 5 s of new calls at 45000/s,
            overload control on and off, an established call's MESSAGEs meanwhile
  python3 examples/load/load.py --core 3000 --repeat 3   # through Kamailio as the core
            (examples/core/kamailio.cfg): the UAS registered at Kamailio, and the
            hairpin (the UAS registered through the host), beside the direct path
  (any mode) --shards N: the host's runtime.shards
  (any mode) --baseline PATH: another escalator binary (e.g. the previous
            commit built in a git worktree) measured beside this one, turn
            about, in the same run
  (any mode) --targets escalator,baseline,plugin,kamailio,dialog: which to measure
            (dialog: Kamailio as a dialog-stateful proxy, kamailio-dialog.cfg)
  (any mode) --binary PATH: the escalator binary (default target/release/escalator)

Every SIPp run is bounded (-m calls, -timeout) and everything stays on
127.0.0.0/8: client 127.0.0.1, host 127.0.0.2, core (uas) 127.0.0.3,
Kamailio 127.0.0.4. Needs sipp, kamailio and a release build
(`cargo build --release -p escalator -p escalator-loadgen`).
"""

import argparse
import collections
import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "escalator")
LOADGEN = os.path.join(ROOT, "target", "release", "escalator-loadgen")
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT, HOST, CORE, KAM = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
WORK = tempfile.mkdtemp(prefix="escalator-load-")
PIN = False  # --pin: latency runs with the target alone on CPU 1
SHARDS = 0  # --shards: the host's runtime.shards (0 = one per CPU)
METRICS = {}  # escalator address -> its metrics endpoint
RECEIVERS = 0  # --receivers: listen.udp_receivers of the measured host (0: its default)
BASELINE = None  # --baseline: another escalator binary measured beside BIN
TARGETS = ("escalator", "baseline", "plugin", "kamailio", "dialog")  # --targets
GENERATORS = ("sipp", "loadgen")  # --generator: who makes the latency runs' calls
ARRIVALS = "poisson"  # --arrivals: the loadgen's schedule
CHILDREN = []
# SIPp's sockets default to 64 KiB buffers: a generator stalled for a few
# tens of ms would drop the target's messages and measure its own losses.
SIPP_BUFFERS = ["-buff_size", "4194304"]


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


def terminated(*_):
    """SIGTERM: stop the children and exit, rather than carry on."""
    cleanup()
    sys.exit(143)


def cleanup():
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
               "-t", mode(transport), "-nostdin", "-m", "10000000", *SIPP_BUFFERS])
    time.sleep(0.3)
    return p, p_port


def start_escalator(transport, uas_port, plugin=False, binary=None, core_ip=CORE, limits=""):
    host_port = port()
    cfg = os.path.join(WORK, f"escalator-{host_port}.toml")
    text = (
        f'[listen]\nudp = ["{HOST}:{host_port}"]\ntcp = ["{HOST}:{host_port}"]\n'
        f'[core]\naddress = "{core_ip}:{uas_port}"\ntransport = "{transport}"\nsources = ["{core_ip}"]\n'
        f'[log]\nlevel = "error"\n[shutdown]\ngrace_ms = 200\n'
        f'[metrics]\nlisten = "{HOST}:{host_port + 1000}"\n'
        f'[runtime]\nshards = {SHARDS}\n'
    )
    if limits:
        text += "[limits]\n" + limits
    if RECEIVERS and binary is None:
        text = text.replace("[core]", f"udp_receivers = {RECEIVERS}\n[core]", 1)
    if plugin:
        text += (f'[[plugins]]\npath = "builtin:escalation"\n[plugins.config]\n'
                 f'policy = "{os.path.join(ROOT, "policies", "default.toml")}"\n')
    with open(cfg, "w") as f:
        f.write(text)
    p = spawn([binary or BIN, "run", "--config", cfg])
    time.sleep(0.5)
    METRICS[f"{HOST}:{host_port}"] = f"http://{HOST}:{host_port + 1000}/metrics"
    return p, f"{HOST}:{host_port}"


def handling_quantiles(addr):
    """The host's own p50/p99 from receiving a message to having handled it
    (escalator_inbound_handling_seconds, over the exporter's window), in ms."""
    url = METRICS.get(addr)
    if not url:
        return float("nan"), float("nan")
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return float("nan"), float("nan")
    q = dict(re.findall(r'escalator_inbound_handling_seconds\{quantile="([0-9.]+)"\} ([0-9.e+-]+)', text))
    get = lambda k: float(q[k]) * 1000 if k in q else float("nan")
    return get("0.5"), get("0.99")


def start_kamailio(transport, uas_port, cfg="kamailio.cfg"):
    k_port = port()
    uas = f'"sip:{CORE}:{uas_port};transport={transport}"'
    p = spawn(["kamailio", "-DD", "-E", "-f", os.path.join(HERE, cfg), "-A", f"UAS={uas}",
               "-l", f"udp:{KAM}:{k_port}", "-l", f"tcp:{KAM}:{k_port}", "-m", "512", "-M", "32",
               # the same UDP receive buffer as the host's default (Kamailio probes up to this)
               "-b", "4194304"])
    time.sleep(1.5)
    return p, f"{KAM}:{k_port}"


def run_uac(target, transport, rate, calls, scenario=None, extra=(), cpus=None):
    """Returns successful, failed, elapsed seconds, retransmissions."""
    tag = f"uac-{port()}"
    stats = os.path.join(WORK, f"{tag}.csv")
    args = (["taskset", "-c", cpus] if cpus else []) + ["sipp", target, "-i", CLIENT, "-p", str(port()), "-t", mode(transport), "-nostdin",
            "-r", str(rate), "-m", str(calls), "-l", str(max(1000, rate * 4)),
            "-timeout", "120s", "-timeout_error", "-trace_stat", "-fd", "1", "-stf", stats, *SIPP_BUFFERS, *extra]
    args += ["-sf", scenario or os.path.join(HERE, "uac.xml")]
    start = time.time()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=WORK, check=False)
    elapsed = time.time() - start
    ok, failed, retransmissions = read_stats(stats)
    return ok, failed, elapsed, retransmissions


def read_stats(path):
    try:
        with open(path) as f:
            rows = list(csv.reader(f, delimiter=";"))
    except OSError:
        return 0, 0, 0
    head, last = rows[0], rows[-1]
    get = lambda name: int(last[head.index(name)]) if name in head else 0
    return get("SuccessfulCall(C)"), get("FailedCall(C)"), get("Retransmissions(C)")


def passes(target, transport, rate, seconds=3):
    calls = max(300, rate * seconds)
    ok, failed, elapsed, retransmissions = run_uac(target, transport, rate, calls)
    kept_pace = elapsed <= seconds * 1.3 + 3
    # A retransmission means a request went unanswered for T1 (500 ms): the
    # target fell behind and the calls only completed from queues (both
    # sides have deep socket buffers), which a longer run would not.
    passed = failed == 0 and ok == calls and kept_pace and retransmissions == 0
    if not passed:
        print(f"  {target} at {rate}/s: {ok} of {calls} successful, {failed} failed, "
              f"{retransmissions} retransmissions, {elapsed:.1f} s", flush=True)
    return passed


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


def set_cpus(pids, cpus):
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


def target_pids(proc):
    """The target's processes: Kamailio forks its workers."""
    kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return [proc.pid] + [int(k) for k in kids]


def run_loadgen(target, rate, calls, server_port, cpus=None):
    """Paced calls from escalator-loadgen, which is also the server (the
    target's next hop) at CORE:server_port. Returns successful, failed and
    the generator's own per-hop p50/p99 in ms (client -> server through the
    target and back, its own send and receive included)."""
    args = (["taskset", "-c", cpus] if cpus else []) + [
        LOADGEN, "--target", target, "--client", f"{CLIENT}:{port()}", "--server", f"{CORE}:{server_port}",
        "--rate", str(rate), "--calls", str(calls), "--arrivals", ARRIVALS]
    out = subprocess.run(args, capture_output=True, text=True, cwd=WORK, check=False).stdout
    found = re.search(r"result successful=(\d+) failed=(\d+) hop_p50_ms=(\S+) hop_p99_ms=(\S+)", out)
    if not found:
        return 0, calls, float("nan"), float("nan")
    return int(found.group(1)), int(found.group(2)), float(found.group(3)), float(found.group(4))


def latency(target, transport, rate, seconds=4, pin=None, loadgen_port=None):
    """Per-hop delay from kernel timestamps on lo: INVITE in -> INVITE out and
    200 in -> 200 out, paired by the X-Call header and the Call-ID mapping
    (a B2BUA changes Call-IDs, a proxy does not). UDP only.

    pin = (target processes, uas process): the target gets CPU 1 to itself,
    SIPp and the capture share CPU 0, so the delay measured is the target's
    rather than the scheduler's (with everything on both cores, a datagram
    often waits for a CPU that SIPp holds).

    loadgen_port: the calls come from escalator-loadgen (paced), which also
    answers them at that port, instead of SIPp."""
    ip = target.split(":")[0]
    pcap = os.path.join(WORK, f"lat-{port()}.pcap")
    gen_cpus = None
    if pin:
        procs, uas = pin
        set_cpus(procs, "1")
        if uas:
            set_cpus([uas.pid], "0")
        gen_cpus = "0"
    cap = spawn((["taskset", "-c", gen_cpus] if gen_cpus else []) +
                ["tshark", "-i", "lo", "-f", f"udp and host {ip}", "-w", pcap, "-q"])
    for _ in range(100):
        if os.path.exists(pcap) and os.path.getsize(pcap) > 0:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    own_view = (float("nan"), float("nan"))
    if loadgen_port:
        _, failed, *own_view = run_loadgen(target, rate, rate * seconds, loadgen_port, cpus=gen_cpus)
    else:
        _, failed, _, _ = run_uac(target, transport, rate, rate * seconds, cpus=gen_cpus)
    time.sleep(0.5)
    stop(cap)
    if pin and pin[1]:
        set_cpus([pin[1].pid], f"0-{os.cpu_count() - 1}")
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "sip", "-T", "fields", "-E", "separator=/t",
                          "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "sip.Method",
                          "-e", "sip.Status-Code", "-e", "sip.CSeq.method", "-e", "sip.Call-ID",
                          "-e", "sip.msg_hdr"], capture_output=True, text=True, check=False).stdout
    inv_in, inv_out, ok_in, ok_out, b_to_a = {}, {}, {}, {}, {}
    arrivals = collections.Counter()
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 8:
            continue
        t, src, dst, method, status, cseq, callid, hdr = float(f[0]), f[1], f[2], f[3], f[4], f[5], f[6], f[7]
        if dst == ip:
            arrivals[int(t * 1000)] += 1
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
    print_burstiness(arrivals)
    if loadgen_port:
        print(f"  the generator's own view, per hop: p50 {own_view[0]:.3f} ms, p99 {own_view[1]:.3f} ms", flush=True)
    return percentile(both, 0.5), percentile(both, 0.99), failed, len(hop_invite), handling_quantiles(target)


def print_burstiness(per_ms):
    """How evenly the generator's messages reach the target: the per-hop
    delay is mostly queueing behind bursts (BENCHMARKS.md)."""
    if not per_ms:
        return
    first, last = min(per_ms), max(per_ms)
    counts = sorted(per_ms.get(ms, 0) for ms in range(first, last + 1))
    idle = sum(1 for c in counts if c == 0) * 100 // len(counts)
    print(f"  messages into the target per ms: p50 {percentile(counts, 0.5):.0f}, "
          f"p99 {percentile(counts, 0.99):.0f}, max {counts[-1]}; {idle} % of ms with none", flush=True)


def target_starters(transport):
    """(name, start) for each target; start(next_hop_port) returns (process,
    address), the target sending its calls on to CORE:next_hop_port."""
    all_targets = [
        ("escalator", "escalator", lambda p: start_escalator(transport, p)),
        ("baseline", "escalator (baseline)", lambda p: start_escalator(transport, p, binary=BASELINE)),
        ("plugin", "escalator + escalation plugin", lambda p: start_escalator(transport, p, plugin=True)),
        ("kamailio", "kamailio (tm proxy)", lambda p: start_kamailio(transport, p)),
        ("dialog", "kamailio (dialog-stateful proxy)",
         lambda p: start_kamailio(transport, p, cfg="kamailio-dialog.cfg")),
    ]
    return [(name, start) for key, name, start in all_targets
            if key in TARGETS and (key != "baseline" or BASELINE)]


def latency_runs(name, start, rate, uas, uas_port, warm_up):
    """The target's per-hop latency at `rate` with each generator, on a
    freshly started target each time: {generator: latency() result}."""
    results = {}
    for gen in GENERATORS:
        lg_port = port() if gen == "loadgen" else None
        proc, addr = start(lg_port or uas_port)
        if warm_up:
            if lg_port:
                run_loadgen(addr, rate, rate * 2, lg_port)
            else:
                run_uac(addr, "udp", rate, rate * 2)
        pin = (target_pids(proc), None if lg_port else uas) if PIN else None
        results[gen] = latency(addr, "udp", rate, pin=pin, loadgen_port=lg_port)
        p50, p99, failed, pairs, own = results[gen]
        print(f"udp {name} ({gen}): per-hop delay at {rate}/s p50 {p50:.3f} ms p99 {p99:.3f} ms; "
              f"own handling p50 {own[0]:.3f} ms p99 {own[1]:.3f} ms "
              f"({pairs} INVITEs paired, {failed} failed)", flush=True)
        stop(proc)
    return results


def capacity(transports):
    results = []
    for transport in transports:
        uas, uas_port = start_uas(transport)
        for name, start in target_starters(transport):
            proc, addr = start(uas_port)
            max_rate = ramp(addr, transport)
            stop(proc)
            print(f"{transport} {name}: max {max_rate} calls/s with 0 failed", flush=True)
            half = max(50, max_rate // 2)
            # A fresh target for each latency run, so it does not follow
            # the overloaded steps of the ramp.
            lat = latency_runs(name, start, half, uas, uas_port, warm_up=False) if transport == "udp" else {}
            results.append((transport, name, max_rate, half, lat))
        stop(uas)
    print("\n| transport | target | max calls/s, 0 failed | latency run calls/s | generator | per-hop p50 ms "
          "| per-hop p99 ms | own handling p50 ms | own handling p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for transport, name, max_rate, half, lat in results:
        if not lat:
            print(f"| {transport} | {name} | {max_rate} | | | | | | |")
        for gen, (p50, p99, _, _, own) in lat.items():
            print(f"| {transport} | {name} | {max_rate} | {half} | {gen} | {p50:.3f} | {p99:.3f} "
                  f"| {own[0]:.3f} | {own[1]:.3f} |")
    for transport in transports:
        rows = {r[1]: r[2] for r in results if r[0] == transport}
        e = rows.get("escalator")
        for other, label in (("kamailio (tm proxy)", "escalator / kamailio"),
                             ("kamailio (dialog-stateful proxy)", "escalator / kamailio dialog proxy"),
                             ("escalator (baseline)", "escalator / baseline"),
                             ("escalator + escalation plugin", "with plugin / without")):
            if e and rows.get(other):
                ratio = rows[other] / e if other.endswith("plugin") else e / rows[other]
                print(f"{transport}: {label} = {ratio:.2f}")


def latency_only(rate):
    """Per-hop latency of each target at one fixed rate, e.g. half of a
    maximum found earlier; each target gets a warm-up run first."""
    uas, uas_port = start_uas("udp")
    for name, start in target_starters("udp"):
        latency_runs(name, start, rate, uas, uas_port, warm_up=True)
    stop(uas)


def fixed_rate(rate, repeat, transport):
    """Whether each target passes `rate` (3 s of calls, 0 failed), `repeat`
    times, targets taking turns: finer than the ramp's steps."""
    uas, uas_port = start_uas(transport)
    passed = {}
    for _ in range(repeat):
        for name, start in target_starters(transport):
            proc, addr = start(uas_port)
            ok = passes(addr, transport, rate)
            # Overload control's 503s, where the target has it.
            shed = metric_total(addr, "escalator_overload_shed_total") if addr in METRICS else float("nan")
            stop(proc)
            passed.setdefault(name, []).append(ok)
            print(f"{transport} {name} at {rate}/s: {'pass' if ok else 'FAIL'}"
                  f"{'' if shed != shed or not shed else f' ({shed:.0f} shed 503)'}", flush=True)
    stop(uas)
    for name, runs in passed.items():
        print(f"{transport} {name}: passed {sum(runs)} of {len(runs)} runs at {rate}/s")


def start_core_proxy(trust_contact, focus=None):
    """Kamailio as the operator core (record-routing proxy and registrar);
    `trust_contact`: REGISTER Contacts saved as given, not by source;
    `focus`: where the conference factory is routed (ip:port)."""
    k_port = port()
    extra = ["-A", "TRUST_CONTACT"] if trust_contact else []
    if focus:
        extra += ["-A", f'FOCUS="sip:{focus}"']
    p = spawn(["kamailio", "-DD", "-E", "-f", os.path.join(ROOT, "examples", "core", "kamailio.cfg"),
               "-l", f"udp:{KAM}:{k_port}", "-n", "4", "-m", "512", "-M", "32", "-b", "4194304", *extra])
    time.sleep(1.5)
    return p, f"{KAM}:{k_port}"


def register(registrar, contact_host, contact_port, user="service"):
    """One REGISTER of `user` with the UAS's contact, sent to `registrar`
    (Kamailio, or the host, which relays it); True on 200."""
    import socket
    ip, p = registrar.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((CLIENT, 0))
    s.settimeout(3)
    me = "%s:%d" % s.getsockname()
    msg = (f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{port()}\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r1\r\nTo: <sip:{user}@example.com>\r\n"
           f"Call-ID: reg-{port()}@load\r\nCSeq: 1 REGISTER\r\n"
           f"Contact: <sip:{user}@{contact_host}:{contact_port}>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), (ip, int(p)))
    try:
        while True:
            data = s.recv(4096).decode(errors="replace")
            if " 100 " not in data.split("\r\n", 1)[0]:
                return data.startswith("SIP/2.0 200")
    except OSError:
        return False
    finally:
        s.close()


def through_core(rate, repeat):
    """SIPp's uac → host → Kamailio → SIPp's uas at a fixed rate: the UAS
    registered at Kamailio, and registered through the host (the hairpin:
    every call crosses the host twice), beside the direct path."""
    results = {}
    for mode in ("direct", "through kamailio", "hairpin"):
        uas, uas_port = start_uas("udp")
        if mode == "direct":
            host, addr = start_escalator("udp", uas_port)
            core = None
        else:
            core, core_addr = start_core_proxy(trust_contact=(mode == "through kamailio"))
            k_ip, k_port = core_addr.split(":")
            host, addr = start_escalator("udp", int(k_port), core_ip=k_ip)
            registrar = core_addr if mode == "through kamailio" else addr
            if not register(registrar, CORE, uas_port):
                print(f"{mode}: REGISTER failed", flush=True)
        programs = {"host": host, "uas": uas} | ({"kamailio": core} if core else {})
        for _ in range(repeat):
            cpu0, drops0 = cpu_seconds(programs), udp_drops()
            ok = passes(addr, "udp", rate)
            cpu, drops = cpu_seconds(programs), udp_drops()
            results.setdefault(mode, []).append(ok)
            print(f"udp {mode} at {rate}/s: {'pass' if ok else 'FAIL'}", flush=True)
            # Who gives first: CPU each program used in the step, and the
            # datagrams each local socket's kernel buffer dropped.
            used = ", ".join(f"{n} {cpu[n] - cpu0[n]:.1f}" for n in programs)
            lost = {a: n - drops0.get(a, 0) for a, n in drops.items() if n > drops0.get(a, 0)}
            print(f"  CPU seconds: {used}; socket drops: {lost or 'none'}", flush=True)
        for p in programs.values():
            stop(p)
    for mode, runs in results.items():
        print(f"udp {mode}: passed {sum(runs)} of {len(runs)} runs at {rate}/s")


def cpu_seconds(programs):
    """CPU seconds (user + system) used so far by each named program and the
    processes it forked (Kamailio's workers), by name."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(pid)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    out = {}
    for name, proc in programs.items():
        family, grew = {proc.pid}, True
        while grew:
            more = {p for p, (ppid, _) in stats.items() if ppid in family} - family
            family |= more
            grew = bool(more)
        out[name] = sum(stats[p][1] for p in family if p in stats)
    return out


def udp_drops():
    """Datagrams dropped on a full receive buffer, per local UDP address
    (ip:port) on 127.0.0.0/8, from /proc/net/udp."""
    out = {}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            ip_hex, port_hex = cols[1].split(":")
            ip = ".".join(str(int(ip_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))
            if ip.startswith("127.") and int(cols[-1]):
                key = f"{ip}:{int(port_hex, 16)}"
                out[key] = out.get(key, 0) + int(cols[-1])
    return out


def shared_socket_drops(addr):
    """Datagrams the kernel dropped on the host's shared UDP sockets at addr
    (ip:port): those not connected to one peer (a flooding peer's socket of
    its own is connected), from /proc/net/udp."""
    ip, port_ = addr.rsplit(":", 1)
    local = "".join(f"{int(b):02X}" for b in reversed(ip.split("."))) + f":{int(port_):04X}"
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[1] == local and cols[2] == "00000000:0000":
                total += int(cols[-1])
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory(calls, binary=None):
    """Resident memory of the host (`binary`, default the measured one)
    holding `calls` established idle calls."""
    uas, uas_port = start_uas("udp")
    host, addr = start_escalator("udp", uas_port, binary=binary)
    base = rss_kib(host.pid)
    stats = os.path.join(WORK, f"mem-{calls}.csv")
    rate = 2000
    uac = spawn(["sipp", addr, "-sn", "uac", "-i", CLIENT, "-p", str(port()), "-t", "u1", "-nostdin",
                 "-r", str(rate), "-m", str(calls), "-l", str(calls), "-d", "3600000",
                 "-timeout", "600s", "-trace_stat", "-fd", "1", "-stf", stats, *SIPP_BUFFERS])
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
    print(f"memory{' (baseline)' if binary else ''}: {calls} established calls (SIPp says {current}): "
          f"host RSS {base} KiB idle -> {used} KiB, {per_call:.0f} bytes per call", flush=True)
    for p in (uac, host, uas):
        stop(p)
    return per_call


def escalation_through_core(rate, repeat):
    """Escalations where both parties are behind the host: SIPp's legacy
    client (alice) → host → Kamailio → host → SIPp's UAS (bob, registered
    through the host); alice REFERs, and the conference INVITE leaves the
    host for Kamailio, which routes the factory to the same UAS as the
    focus. The focus answers without inviting anyone, so bob's 1-to-1 legs
    are hung up by the plugin after its stale-leg wait (30 s); the calls
    counted are alice's, each a 1-to-1 set up through the core, an
    escalation and a BYE to the focus."""
    uas, uas_port = start_uas("udp")
    core, core_addr = start_core_proxy(trust_contact=False, focus=f"{CORE}:{uas_port}")
    k_ip, k_port = core_addr.split(":")
    host, addr = start_escalator("udp", int(k_port), plugin=True, core_ip=k_ip)
    if not register(addr, CORE, uas_port, user="bob"):
        print("REGISTER of bob through the host failed", flush=True)
    results = []
    programs = {"host": host, "uas": uas, "kamailio": core}
    for _ in range(repeat):
        n = max(300, rate * 3)
        cpu0, drops0 = cpu_seconds(programs), udp_drops()
        ok, failed, elapsed, retransmissions = run_uac(addr, "udp", rate, n,
                                                       scenario=os.path.join(HERE, "legacy-uac.xml"))
        cpu, drops = cpu_seconds(programs), udp_drops()
        passed = failed == 0 and ok == n and retransmissions == 0
        results.append(passed)
        used = ", ".join(f"{k} {cpu[k] - cpu0[k]:.1f}" for k in programs)
        lost = {a: c - drops0.get(a, 0) for a, c in drops.items() if c > drops0.get(a, 0)}
        print(f"escalation, both behind the host, through Kamailio: {n} calls at {rate}/s: "
              f"{ok} successful, {failed} failed, {retransmissions} retransmissions, {elapsed:.1f} s: "
              f"{'pass' if passed else 'FAIL'}", flush=True)
        print(f"  CPU seconds: {used}; socket drops: {lost or 'none'}", flush=True)
    for p in programs.values():
        stop(p)
    print(f"escalation through the core: passed {sum(results)} of {len(results)} runs at {rate}/s")


def escalation_load(calls):
    """Every call escalates: uac = legacy client doing REFER, uas = core (bob and the focus)."""
    uas, uas_port = start_uas("udp")
    host, addr = start_escalator("udp", uas_port, plugin=True)
    for rate in (10, 50, 100, 200, 400, 800, 1600, 2400, 3200, 4800):
        n = min(calls, rate * 4)
        ok, failed, elapsed, retransmissions = run_uac(addr, "udp", rate, n,
                                                       scenario=os.path.join(HERE, "legacy-uac.xml"))
        print(f"escalation: {n} calls at {rate}/s, each REFERs and escalates: {ok} successful, {failed} failed, "
              f"{retransmissions} retransmissions, {elapsed:.1f} s", flush=True)
        if failed or ok != n:
            break
    stop(host)
    stop(uas)


OVERLOAD_OFF = ("shed_after_ms = 0\nnew_request_queue = 0\nshed_at_socket_fill_percent = 0\n"
                "isolate_flooding_peers = 0\n")


def metric_total(addr, name):
    """The sum of a counter's series on the host's metrics endpoint."""
    try:
        text = urllib.request.urlopen(METRICS[addr], timeout=5).read().decode()
    except (OSError, KeyError):
        return float("nan")
    return sum(float(v) for v in re.findall(rf'^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$', text, re.M))


def flood(rate, seconds=5, repeat=1):
    """New calls at RATE for SECONDS (escalator-loadgen --flood) while one
    established call sends a MESSAGE every 100 ms, then 200 calls/s for 3 s:
    the host with its overload control (defaults) and without, turn about."""
    for r in range(repeat):
        for label, limits in (("overload control on", ""), ("overload control off", OVERLOAD_OFF)):
            server_port = port()
            host, addr = start_escalator("udp", server_port, limits=limits)
            out = subprocess.run([LOADGEN, "--target", addr, "--server", f"{CORE}:{server_port}",
                                  "--rate", str(rate), "--calls", "1", "--flood", str(seconds),
                                  "--after-rate", "200", "--after", "3", "--linger", "40"],
                                 capture_output=True, text=True, check=False).stdout
            drops = metric_total(addr, "escalator_udp_receive_drops_total")
            shed = metric_total(addr, "escalator_overload_shed_total")
            isolations = metric_total(addr, "escalator_udp_isolations_total")
            shared_drops = shared_socket_drops(addr)
            stop(host)
            for line in out.splitlines():
                if not line.startswith("result"):
                    print(f"  {line}")
            result = dict(kv.split("=", 1) for kv in out.split("result ", 1)[-1].split() if "=" in kv)
            print(f"flood {rate}/s for {seconds} s, {label}: answered {result.get('answered_pct')} % ({result.get('answered_1s_pct')} % within 1 s) "
                  f"(relayed {result.get('relayed')}, shed {result.get('shed')}, unanswered {result.get('unanswered')}); "
                  f"MESSAGEs {result.get('probes_ok')}/{result.get('probes')} answered 200, "
                  f"{result.get('probes_retransmitted')} retransmitted, p50 {result.get('probe_p50_ms')} ms, "
                  f"max {result.get('probe_max_ms')} ms; full service {result.get('recovered_ms')} ms after; "
                  f"host: {shed:.0f} shed, {drops:.0f} datagrams dropped by the kernel "
                  f"({shared_drops} on the shared sockets; {isolations:.0f} peers moved to a socket of their own)",
                  flush=True)


def main():
    global PIN, SHARDS, GENERATORS, ARRIVALS, BASELINE, TARGETS, BIN, RECEIVERS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transport", action="append", choices=["udp", "tcp"])
    ap.add_argument("--memory", action="append", type=int, metavar="CALLS")
    ap.add_argument("--escalation", type=int, metavar="CALLS")
    ap.add_argument("--escalation-core", type=int, metavar="RATE",
                    help="only escalations with both parties behind the host, through Kamailio, "
                         "at this rate, --repeat times")
    ap.add_argument("--pin", action="store_true",
                    help="latency runs: the target alone on CPU 1, SIPp and tshark on CPU 0")
    ap.add_argument("--latency", type=int, metavar="RATE",
                    help="only the per-hop latency of every target at this rate (UDP)")
    ap.add_argument("--check", type=int, metavar="RATE",
                    help="only whether each target passes this fixed rate, --repeat times")
    ap.add_argument("--repeat", type=int, default=3, metavar="N")
    ap.add_argument("--flood", type=int, metavar="RATE",
                    help="only a flood of new calls at RATE for 5 s, with overload control on and off")
    ap.add_argument("--core", type=int, metavar="RATE",
                    help="only calls through Kamailio as the core (and the hairpin) at this rate, --repeat times")
    ap.add_argument("--shards", type=int, default=0, metavar="N",
                    help="the host's runtime.shards (default 0: one per CPU)")
    ap.add_argument("--generator", choices=["sipp", "loadgen", "both"], default="both",
                    help="latency runs: SIPp (bursty), escalator-loadgen (paced), or both (default)")
    ap.add_argument("--arrivals", choices=["poisson", "even"], default="poisson",
                    help="escalator-loadgen's schedule (default poisson)")
    ap.add_argument("--baseline", metavar="PATH",
                    help="another escalator binary, measured beside this one in the same run")
    ap.add_argument("--receivers", type=int, default=0, metavar="N",
                    help="listen.udp_receivers of the measured host (not the baseline); 0: its default")
    ap.add_argument("--binary", metavar="PATH", default=BIN,
                    help="the escalator binary to measure (default target/release/escalator)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma-separated: escalator,baseline,plugin,kamailio,dialog (default all)")
    args = ap.parse_args()
    BIN = os.path.abspath(args.binary)
    RECEIVERS = args.receivers
    BASELINE = os.path.abspath(args.baseline) if args.baseline else None
    TARGETS = tuple(t.strip() for t in args.targets.split(","))
    PIN = args.pin
    SHARDS = args.shards
    GENERATORS = ("sipp", "loadgen") if args.generator == "both" else (args.generator,)
    ARRIVALS = args.arrivals
    signal.signal(signal.SIGTERM, terminated)
    for path in (BIN, LOADGEN) + ((BASELINE,) if BASELINE else ()):
        if not os.path.exists(path):
            sys.exit(f"{path} missing: cargo build --release -p escalator -p escalator-loadgen")
    try:
        if args.memory:
            for n in args.memory:
                memory(n)
                if BASELINE:
                    memory(n, binary=BASELINE)
        elif args.escalation:
            escalation_load(args.escalation)
        elif args.latency:
            latency_only(args.latency)
        elif args.flood:
            flood(args.flood, repeat=args.repeat)
        elif args.core:
            through_core(args.core, args.repeat)
        elif args.escalation_core:
            escalation_through_core(args.escalation_core, args.repeat)
        elif args.check:
            for transport in args.transport or ["udp"]:
                fixed_rate(args.check, args.repeat, transport)
        else:
            capacity(args.transport or ["udp", "tcp"])
    finally:
        cleanup()


if __name__ == "__main__":
    main()
