"""3. Data path: host namespace <-> guest through tc wiring, bridge wiring and a bare veth.

The guest is csrc/reflector.c (ARP, ICMP echo, UDP echo in C):
  - tc / bridge: `ukrun unix --wiring tc|bridge reflector --mac=ETH0_MAC` in a fresh container
    (ukrun appends --interface=tap0 --ipv4=... as for a MirageOS unix unikernel);
  - veth (meant as the ceiling): the same reflector on an AF_PACKET socket on the container's
    eth0 (address flushed, so only the reflector answers): no tap, no redirect, no bridge. The
    path is shorter, but a packet socket costs the reflector more per frame than a tap fd, so
    tc wiring can come out ahead on packets/s; the round-trip times show the path itself.
csrc/udpclient.c in the Docker host's namespace measures round trips one datagram at a time
(percentiles) and packets/s with a window of datagrams in flight; 64-byte payloads.
"""
import json
import os
import subprocess

from common import WORKDIR, Host, deployed, compile_c, popen_in, stats, table

RTT_COUNT = 5000
FLOOD_COUNT = 200000
WINDOW = 32
ROUNDS = 3


def client(host, c, reflector_mode, *args):
    out = host.exec(compile_c("udpclient"), c.ip4, "7", *args, check=False, timeout=30)
    if out.returncode != 0:
        raise RuntimeError("%s: udpclient %s failed: %s%s"
                           % (reflector_mode, args, out.stdout, out.stderr))
    return json.loads(out.stdout)


def start(host, mode, reflector):
    c = host.fresh()
    mac = c.mac
    if mode == "bridge":
        # The unix target cannot set the guest's MAC, so eth0 keeps its own on the bridge (which
        # keeps frames for a port's MAC for itself): the guest takes another, as uguest would.
        mac = "02:42:ac:1f:00:%02x" % host.index_of[c.name]
    host.pin_neighbour(c, mac)
    log = open(os.path.join(WORKDIR, "reflector-%s.log" % c.name), "wb")
    if mode == "veth":
        c.ip("addr", "flush", "dev", "eth0")
        argv = [reflector, "--packet=eth0", "--mac=" + mac, "--ipv4=%s/16" % c.ip4]
    else:
        argv = [deployed().ukrun, "unix", "--wiring", mode, reflector, "--mac=" + mac]
    proc = popen_in(c.name, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    return c, proc


def main():
    reflector = compile_c("reflector")
    host = Host()
    modes = ["tc", "bridge", "veth"]
    samples = {m: {"pps": [], "p50_us": [], "p90_us": [], "p99_us": []} for m in modes}
    running = []
    try:
        pairs = {}
        for m in modes:
            c, proc = start(host, m, reflector)
            running.append(proc)
            pairs[m] = c
        for m, c in pairs.items():     # until the path answers: at most 10 tries of 1 s
            for attempt in range(10):
                try:
                    client(host, c, m, "rtt", "10")
                    break
                except RuntimeError:
                    if attempt == 9:
                        raise
        for _ in range(ROUNDS):        # interleaved rounds
            for m, c in pairs.items():
                rtt = client(host, c, m, "rtt", str(RTT_COUNT))
                flood = client(host, c, m, "flood", str(FLOOD_COUNT), str(WINDOW))
                for k in ("p50_us", "p90_us", "p99_us"):
                    samples[m][k].append(rtt[k])
                samples[m]["pps"].append(flood["pps"])
                samples[m].setdefault("loss", []).append(flood["sent"] - flood["received"])
    finally:
        for proc in running:
            proc.kill()
            proc.wait(timeout=10)
        host.delete()
    result = {m: {k: stats(v) for k, v in s.items()} for m, s in samples.items()}
    ceiling = result["veth"]
    rows = []
    for m in modes:
        r = result[m]
        rows.append([{"tc": "ukrun --wiring tc", "bridge": "ukrun --wiring bridge",
                      "veth": "direct veth (AF_PACKET)"}[m],
                     "%.0f" % r["pps"]["median"], "%.2f" % (r["pps"]["median"]
                                                          / ceiling["pps"]["median"]),
                     "%.1f" % r["p50_us"]["median"], "%.1f" % r["p90_us"]["median"],
                     "%.1f" % r["p99_us"]["median"],
                     "%.2f" % (r["p50_us"]["median"] / ceiling["p50_us"]["median"])])
    table("Data path: UDP echo host ns <-> C reflector, 64 B (median of %d rounds; %d-packet "
          "flood, window %d; %d sequential round trips)" % (ROUNDS, FLOOD_COUNT, WINDOW, RTT_COUNT),
          ["path", "pkt/s", "vs veth", "p50 us", "p90 us", "p99 us", "p50 vs veth"], rows)
    return result


if __name__ == "__main__":
    main()
