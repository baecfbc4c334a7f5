"""Dual stack, DNS and every --ip-args format end to end (one interface): real guests
started through the `ukrun` CLI in docker-like containers that hold IPv6 too.

The Docker-host namespace's docker0 holds 172.30.0.1/16, 2001:db8::1/64 and fe80::1/64, so a
container's IPv6 default route can point at a global or a link-local gateway that exists. The
host pings the guest over IPv4 and IPv6 and talks UDP echo to it; the guest (uguest) reports
the words it was given and what it made of them in its ready line. DNS comes from the file
`ip netns exec` bind-mounts over /etc/resolv.conf (/etc/netns/NS/resolv.conf), removed
afterwards. Every wait is bounded, every process is stopped in a finalizer, and the
namespaces' removal kills whatever is left.
"""
import json
import os
import shlex
import shutil
import time

import pytest

from guests import UkrunRun, http_get, ping, ping_once, stop, udp_echo, vm_guest
from snapshots import snapshot
from clirun import raw_ukrun
from files import write

pytestmark = pytest.mark.e2e

HOST6, GUEST6 = "2001:db8::1", "2001:db8::2"
LINK_GATEWAY6 = "fe80::1"
CALICO_GATEWAY4 = "169.254.1.1"
DOCKER_RESOLV = """\
nameserver 127.0.0.11
search example.com
options ndots:0

# Based on host file: '/etc/resolv.conf' (internal resolver)
# ExtServers: [host(192.0.2.53)]
# Overrides: []
"""
EMBEDDED_ONLY_RESOLV = "nameserver 127.0.0.11\noptions ndots:0\n"
UPSTREAM = "192.0.2.53"


# --- containers --------------------------------------------------------------------------------

@pytest.fixture
def host6(docker_host):
    """The Docker host with IPv6 on docker0: a global and a link-local gateway, no DAD."""
    for address in (HOST6 + "/64", LINK_GATEWAY6 + "/64"):
        docker_host.ip("-6", "addr", "add", address, "dev", "docker0", "nodad")
    return docker_host


def add_ipv6(container, gateway6=LINK_GATEWAY6, prefix=64):
    container.ip("-6", "addr", "add", "%s/%d" % (GUEST6, prefix), "dev", "eth0", "nodad")
    container.ip("-6", "route", "add", "default", "via", gateway6, "dev", "eth0")
    return container


def remove_ipv4(container):
    """No IPv4 at all: the address goes, and its routes with it."""
    container.ip("-4", "addr", "flush", "dev", "eth0")
    assert container.ip_json("-4", "route", "show", "table", "all", "dev", "eth0") == []


def calico(container):
    """Calico's shape: a /32 (and a /128) whose gateways are reached on-link only."""
    container.ip("-4", "addr", "flush", "dev", "eth0")
    container.ip("addr", "add", "%s/32" % container.ip4, "dev", "eth0")
    container.ip("route", "add", CALICO_GATEWAY4, "dev", "eth0", "scope", "link")
    container.ip("route", "add", "default", "via", CALICO_GATEWAY4, "dev", "eth0", "onlink")
    add_ipv6(container, LINK_GATEWAY6, prefix=128)


def ipv6_only(container):
    remove_ipv4(container)
    add_ipv6(container)


# The containers a pod network makes (what eth0 holds before ukrun runs), and what the guest
# must then be given, in uguest's names.
SHAPES = {
    "dual-stack": (add_ipv6, dict(ipv4="172.30.0.2/16", gateway="172.30.0.1",
                                  ipv6=GUEST6 + "/64", gateway6=LINK_GATEWAY6)),
    "ipv6-only": (ipv6_only, dict(ipv4=None, gateway=None, ipv6=GUEST6 + "/64",
                                  gateway6=LINK_GATEWAY6)),
    "calico": (calico, dict(ipv4="172.30.0.2/32", gateway=CALICO_GATEWAY4,
                            ipv6=GUEST6 + "/128", gateway6=LINK_GATEWAY6)),
}


@pytest.fixture
def resolv(container):
    """write(text): the container's /etc/resolv.conf as `ip netns exec` shows it."""
    directory = "/etc/netns/%s" % container.name
    os.makedirs(directory)

    def write_resolv(text):
        with open(os.path.join(directory, "resolv.conf"), "w") as fh:
            fh.write(text)

    try:
        yield write_resolv
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def link(ns, name):
    return ns.ip_json("-d", "link", "show", name)[0]


def ipv6_addresses(ns, name):
    return [a["local"] for entry in ns.ip_json("-6", "addr", "show", "dev", name)
            for a in entry.get("addr_info", [])]


def ipv6_state(ns, name="eth0"):
    """Everything of NAME's own IPv6: generation mode, addresses with their flags and
    lifetimes (less "tentative": duplicate address detection ends by itself), and the IPv6
    routes through it, in every table (default route included)."""
    addresses = [dict((k, v) for k, v in a.items() if k != "tentative")
                 for entry in ns.ip_json("-6", "addr", "show", "dev", name)
                 for a in entry.get("addr_info", [])]
    return {"mode": link(ns, name).get("inet6_addr_gen_mode"), "addresses": addresses,
            "routes": ns.ip_json("-6", "route", "show", "table", "all", "dev", name)}


def assert_ipv6_left_to_the_guest(container):
    """While a guest runs: eth0 has no IPv6 address (link-local included) and generates none,
    and no link in the container but lo holds one (the tap and a bridge stay silent too)."""
    assert link(container, "eth0").get("inet6_addr_gen_mode") == "none"
    assert ipv6_addresses(container, "eth0") == []
    holders = {entry["ifname"]: [a["local"] for a in entry.get("addr_info", [])]
               for entry in container.ip_json("-6", "addr", "show")}
    assert {name: addrs for name, addrs in holders.items() if addrs} == {"lo": ["::1"]}
    assert not [r for r in container.ip_json("-6", "route", "show") if r.get("gateway")]


def settle(container, timeout=5):
    """Wait until every link with carrier is IPv6-ready (its ff00::/8 route is there): the
    kernel reports carrier changes a moment later (linkwatch), and a snapshot taken before
    would differ from one taken after for no fault of ukrun's."""
    deadline = time.monotonic() + timeout
    while True:
        carrier = {l["ifname"] for l in container.ip_json("link", "show")
                   if "LOWER_UP" in l["flags"] and l["ifname"] != "lo"}
        ready = {r.get("dev") for r in container.ip_json("-6", "route", "show", "table", "local")
                 if r.get("dst") == "ff00::/8"}
        if carrier <= ready:
            return
        assert time.monotonic() < deadline, (carrier, ready)
        time.sleep(0.05)


# --- runs ----------------------------------------------------------------------------------------

Run = UkrunRun


@pytest.fixture
def start(tmp_path, ukrun_exe):
    runs = []

    def start(container, *argv):
        runs.append(Run(container, tmp_path, ukrun_exe, [str(a) for a in argv]))
        return runs[-1]

    yield start
    for run in runs:
        stop(run.proc)


def ukrun_json(container, ukrun_exe, *argv):
    proc = container.exec(ukrun_exe, *argv, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_answers(docker_host, ipv4=None, ipv6=None, udp=True):
    """The Docker host reaches the guest: ping, then UDP echo, over each family given."""
    for address in (a for a in (ipv4, ipv6) if a):
        ping(docker_host, address, timeout=10)
        if udp:
            udp_echo(docker_host.name, address, 7, os.urandom(1200), timeout=10)


# --- 1. dual stack -----------------------------------------------------------------------------

@pytest.mark.parametrize("gateway6", [LINK_GATEWAY6, HOST6])
@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_dual_stack_guest_answers_over_both_families(host6, container, start, uguest, wiring,
                                                     gateway6):
    add_ipv6(container, gateway6)
    run = start(container, "unix", "-v", "--wiring", wiring, uguest)
    ready = run.ready_json()
    assert (ready["format"], ready["ipv4"], ready["gateway"], ready["ipv6"],
            ready["gateway6"]) == ("mirage", "172.30.0.2/16", "172.30.0.1", GUEST6 + "/64",
                                   gateway6), ready
    assert ready["accept_ra"] is False and ready["warnings"] == []
    assert_answers(host6, container.ip4, GUEST6)
    # Its link-local address (EUI-64 of the MAC the unix guest picks itself) answers too.
    ping(host6, "%s%%docker0" % ready["link_local"], timeout=5)
    assert_ipv6_left_to_the_guest(container)
    assert run.proc.poll() is None, run.stderr()


# --- 2. IPv6 only -------------------------------------------------------------------------------

@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_ipv6_only_container(host6, container, start, uguest, wiring):
    ipv6_only(container)
    run = start(container, "unix", "-v", "--wiring", wiring, uguest)
    ready = run.ready_json()
    assert "--ipv6-only=true" in ready["argv"], ready["argv"]
    assert not [w for w in ready["argv"] if w.startswith("--ipv4")], ready["argv"]
    assert (ready["ipv4"], ready["gateway"], ready["ipv6"], ready["gateway6"],
            ready["ipv6_only"], ready["warnings"]) == \
        (None, None, GUEST6 + "/64", LINK_GATEWAY6, True, [])
    assert_answers(host6, ipv6=GUEST6)
    assert not ping_once(host6, container.ip4, wait=1)   # nothing answers IPv4
    assert_ipv6_left_to_the_guest(container)


def test_ipv6_only_json_says_null(host6, container, uguest, ukrun_exe):
    ipv6_only(container)
    inspected = ukrun_json(container, ukrun_exe, "inspect")
    planned = ukrun_json(container, ukrun_exe, "unix", "--dry-run", uguest)["network"]
    for network in (inspected, planned):
        assert (network["ipv6"], network["gateway6"]) == (GUEST6 + "/64", LINK_GATEWAY6)
        assert (network["ipv4"], network["gateway4"]) == (None, None), network


# --- 3. link-local IPv6 gateway, Calico-like /32 ---------------------------------------------

# The words each format must give for the Calico-like container, as uguest reports them.
CALICO_WORDS = {
    "mirage": dict(ipv4="172.30.0.2/32", gateway=CALICO_GATEWAY4, ipv6=GUEST6 + "/128",
                   gateway6=LINK_GATEWAY6),
    "unikraft": dict(ipv4="172.30.0.2/32", gateway=CALICO_GATEWAY4, ipv6=None),
    "linux": dict(ipv4="172.30.0.2/32", gateway=CALICO_GATEWAY4, ipv6=None),
}


@pytest.mark.parametrize("fmt", sorted(CALICO_WORDS))
def test_calico_like_container_with_link_local_ipv6_gateway(host6, container, start, uguest,
                                                            ukrun_exe, fmt):
    calico(container)
    plan = ukrun_json(container, ukrun_exe, "unix", "--dry-run", "--ip-args", fmt, uguest)
    assert plan["network"]["gateway4_onlink"] is True
    assert (plan["network"]["ipv6"], plan["network"]["gateway6"]) == \
        (GUEST6 + "/128", LINK_GATEWAY6)
    if fmt == "linux":   # the kernel's own ip= autoconfiguration would drop such a gateway
        assert any("outside 172.30.0.2/32" in note for note in plan["notes"]), plan["notes"]
    run = start(container, "unix", "-v", "--ip-args", fmt, uguest)
    ready = run.ready_json()
    assert ready["format"] == fmt
    assert {key: ready[key] for key in CALICO_WORDS[fmt]} == CALICO_WORDS[fmt], ready
    assert_answers(host6, container.ip4, GUEST6 if fmt == "mirage" else None)
    assert_ipv6_left_to_the_guest(container)


# --- 4. restart in the kept namespace ----------------------------------------------------------

def spt_argv(wiring, uguest, unikernel, *options):
    """uguest as the Solo5 tender: spt sets the guest's MAC (eth0's, from the record on a
    restart), so the Docker host's neighbour entries stay right across restarts. The unix
    target cannot: a restarted guest there picks a new MAC the host learns only later."""
    return ["spt", "-v", "--wiring", wiring, *options, "--tender", uguest, unikernel]


# Every shape with tc wiring, and the bridge once: a restart waits a second for a guest that
# may just have started (ukrun.runner.TAKEOVER_WAIT), so each costs seconds.
@pytest.mark.parametrize("shape,wiring", [(shape, "tc") for shape in sorted(SHAPES)]
                         + [("dual-stack", "bridge")])
def test_restart_hands_over_the_same_addresses(host6, container, start, uguest, unikernel,
                                               ukrun_exe, wiring, shape):
    make, wanted = SHAPES[shape]
    make(container)
    ipv4 = container.ip4 if wanted["ipv4"] else None
    first = start(container, *spt_argv(wiring, uguest, unikernel))
    ready1 = first.ready_json()
    assert {k: ready1[k] for k in wanted} == wanted
    assert ready1["mac"] == container.mac
    assert_answers(host6, ipv4, GUEST6, udp=False)
    first.proc.kill()   # a guest that dies: the pod restarts the container in its namespace
    first.exit_status()
    # eth0 is empty now; only the record on the tap knows what was moved, IPv6 included.
    assert ipv6_addresses(container, "eth0") == []
    assert container.ip_json("-4", "addr", "show", "dev", "eth0") == []
    words = link(container, "tap0").get("ifalias", "").split()
    assert "6=%s" % wanted["ipv6"] in words and "h=%s" % LINK_GATEWAY6 in words, words
    plan = ukrun_json(container, ukrun_exe, *spt_argv(wiring, uguest, unikernel, "--dry-run"))
    assert plan["network"]["source"] == "recorded"
    # (An IPv6-only network's "ipv4" is checked by test_ipv6_only_json_says_null.)
    assert {k: plan["network"][k] for k in ("ipv6", "gateway6", "gateway4")} == \
        {"ipv6": wanted["ipv6"], "gateway6": wanted["gateway6"], "gateway4": wanted["gateway"]}
    if ipv4:
        assert plan["network"]["ipv4"] == wanted["ipv4"]
    second = start(container, *spt_argv(wiring, uguest, unikernel))
    ready2 = second.ready_json()
    assert {k: ready2[k] for k in wanted} == wanted
    assert (ready2["guest_args"], ready2["mac"]) == (ready1["guest_args"], ready1["mac"])
    assert_answers(host6, ipv4, GUEST6)
    assert_ipv6_left_to_the_guest(container)


# --- 5. DNS ----------------------------------------------------------------------------------

def test_docker_ext_servers_replace_the_embedded_resolver(host6, container, resolv, start, uguest,
                                                          ukrun_exe):
    add_ipv6(container)
    resolv(DOCKER_RESOLV)
    plan = ukrun_json(container, ukrun_exe, "unix", "--dry-run", "--ip-args", "mirage-dns",
                      uguest)
    assert plan["dns"] == {"servers": [UPSTREAM], "search": ["example.com"]}
    assert any("ExtServers" in n and UPSTREAM in n for n in plan["notes"]), plan["notes"]
    assert "--dns_servers=tcp:%s" % UPSTREAM in plan["argv"], plan["argv"]
    inspected = ukrun_json(container, ukrun_exe, "inspect")
    assert inspected["dns"] == plan["dns"]
    assert any("ExtServers" in n and UPSTREAM in n for n in inspected["notes"])
    assert (inspected["ipv4"], inspected["ipv6"]) == ("172.30.0.2/16", GUEST6 + "/64")
    run = start(container, "unix", "-v", "--ip-args", "mirage-dns", uguest)
    ready = run.ready_json()
    assert (ready["format"], ready["dns"], ready["ipv6"]) == ("mirage", [UPSTREAM],
                                                              GUEST6 + "/64")
    assert "ExtServers" in run.stderr(), run.stderr()
    assert_answers(host6, container.ip4, GUEST6, udp=False)


def no_usable_nameserver(notes):
    return [n for n in notes if "no usable nameserver" in n]


def test_only_the_embedded_resolver_is_said(host6, container, resolv, start, uguest, ukrun_exe):
    resolv(EMBEDDED_ONLY_RESOLV)
    plan = ukrun_json(container, ukrun_exe, "unix", "--dry-run", "--ip-args", "mirage-dns",
                      uguest)
    assert plan["dns"]["servers"] == [] and no_usable_nameserver(plan["notes"]), plan["notes"]
    assert not [w for w in plan["argv"] if w.startswith("--dns_servers")]
    inspected = ukrun_json(container, ukrun_exe, "inspect")
    assert inspected["dns"]["servers"] == [] and no_usable_nameserver(inspected["notes"])
    run = start(container, "unix", "-v", "--ip-args", "mirage-dns", uguest)
    ready = run.ready_json()
    assert ready["dns"] == []
    assert no_usable_nameserver(run.stderr().splitlines()), run.stderr()


# --- 6. every format, with a guest configuring itself -------------------------------------------

TEMPLATE = ("--ipv4={ipv4_address}/{ipv4_prefix} --ipv4-gateway={gateway4} --ipv6={ipv6} "
            "--ipv6-gateway={gateway6} --dns_servers=udp:{dns0},tcp:{dns1} "
            "--resolver=udp:{dns0} --ipv4={1.ipv4} --mac={mac} --udp-port={mtu} "
            "--no-garp={search1?}")

# format -> (extra ukrun options, the words uguest gets, what it must make of them). The
# container is dual-stack with one nameserver and one search domain; only MirageOS's words and
# a template can say IPv6. Kernel parameters come before the guest's own words (--app-arg),
# MirageOS's after them.
FORMATS = {
    "unikraft": ((), ["netdev.ip=172.30.0.2/16:172.30.0.1:%s:::example.com" % UPSTREAM,
                      "--app-arg"],
                 dict(format="unikraft", ipv4="172.30.0.2/16", gateway="172.30.0.1",
                      dns=[UPSTREAM], domain="example.com", ipv6=None)),
    "unikraft-lwip": ((), ["netdev.ipv4_addr=172.30.0.2", "netdev.ipv4_gw_addr=172.30.0.1",
                           "netdev.ipv4_subnet_mask=255.255.0.0", "--app-arg"],
                      dict(format="unikraft-lwip", ipv4="172.30.0.2/16", gateway="172.30.0.1",
                           dns=[], ipv6=None)),
    "linux": ((), ["ip=172.30.0.2::172.30.0.1:255.255.0.0:::off:%s" % UPSTREAM, "--app-arg"],
              dict(format="linux", ipv4="172.30.0.2/16", gateway="172.30.0.1", dns=[UPSTREAM],
                   ipv6=None)),
    # Words whose placeholder has no value are left out: {dns1} (one server), {1.ipv4} (one
    # interface) and {mac} (the unix target sets no MAC: the guest picks its own). {search1?}
    # has none either but keeps its word, empty: --no-garp= (uguest then stays silent).
    "template": (("--ip-template=" + TEMPLATE,),
                 ["--app-arg", "--ipv4=172.30.0.2/16", "--ipv4-gateway=172.30.0.1",
                  "--ipv6=%s/64" % GUEST6, "--ipv6-gateway=" + LINK_GATEWAY6,
                  "--resolver=udp:" + UPSTREAM, "--udp-port=1500", "--no-garp="],
                 dict(format="mirage", ipv4="172.30.0.2/16", gateway="172.30.0.1",
                      ipv6=GUEST6 + "/64", gateway6=LINK_GATEWAY6, dns=[UPSTREAM],
                      mac_source="random", udp_port=1500, garp=False)),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_guest_configures_itself_from_each_format(host6, container, resolv, start, uguest, fmt):
    add_ipv6(container)
    resolv("nameserver %s\nsearch example.com\n" % UPSTREAM)
    options, words, expected = FORMATS[fmt]
    run = start(container, "unix", "-v", "--ip-args", fmt, *options, uguest, "--app-arg")
    ready = run.ready_json()
    assert ready["guest_args"] == ["--interface=tap0"] + words
    assert {key: ready[key] for key in expected} == expected, ready
    assert ready["warnings"] == [] and ready["unknown_args"] == ["--app-arg"]
    ping(host6, container.ip4, timeout=10)
    udp_echo(host6.name, container.ip4, ready["udp_port"], timeout=10)
    if ready["ipv6"]:
        ping(host6, GUEST6, timeout=10)
        udp_echo(host6.name, GUEST6, ready["udp_port"], timeout=10)
    else:   # the IPv6 it was not told about is still off eth0: nothing answers there
        assert "--ip-args %s has no IPv6" % fmt in run.stderr(), run.stderr()
        assert not ping_once(host6, GUEST6, wait=1)
    assert_ipv6_left_to_the_guest(container)


def test_ip_args_none_gives_the_guest_no_words(host6, container, start, uguest, ukrun_exe):
    add_ipv6(container)
    plan = ukrun_json(container, ukrun_exe, "unix", "--dry-run", "--ip-args", "none", uguest,
                      "--app-arg")
    assert plan["argv"] == [uguest, "--interface=tap0", "--app-arg"]
    run = start(container, "unix", "-v", "--ip-args", "none", uguest, "--app-arg")
    # uguest refuses to guess an address, as a unikernel without its words would be lost.
    assert run.exit_status() == 1, run.stderr()
    assert "uguest: error: no network configuration" in run.stderr(), run.stderr()
    assert not ping_once(host6, container.ip4, wait=1)


def test_linux_vm_configures_itself_from_the_ip_word(host6, container, resolv, start):
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    add_ipv6(container)
    resolv(DOCKER_RESOLV)
    vm = vm_guest()
    run = start(container, "qemu", "-v", "--mem", "256", "--ip-args", "linux",
                "--tender-arg=-initrd", "--tender-arg=%s" % vm["initrd"], vm["kernel"],
                "console=ttyS0", "quiet")
    ready = run.vm_ready(timeout=60)
    # ip= carries IPv4 and DNS; IPv6 is not in ip=, so the VM has none (and ukrun said so).
    assert ready == {"ip": "172.30.0.2/16", "gw": "172.30.0.1", "mac": container.mac,
                     "dns": UPSTREAM, "fmt": "linux"}, ready
    # Kernel parameters first, then the guest's own command line.
    append = "ip=172.30.0.2::172.30.0.1:255.255.0.0::eth0:off:%s console=ttyS0 quiet" % UPSTREAM
    assert "-append %s " % shlex.quote(append) in run.stderr(), run.stderr()
    assert "--ip-args linux has no IPv6" in run.stderr(), run.stderr()
    ping(host6, container.ip4, timeout=10)
    body, _ = http_get(host6.name, container.ip4, timeout=20)
    assert "ip=172.30.0.2/16" in body and "fmt=linux" in body, body


# --- 7. a failure at the last step ------------------------------------------------------------

def assert_execve_failure_gives_everything_back(container, *argv):
    settle(container)
    before = (snapshot(container), ipv6_state(container))
    proc = raw_ukrun(container, *argv)
    assert proc.returncode == 127, proc.stderr
    assert "eth0 was given back" in proc.stderr, proc.stderr
    settle(container)
    # The snapshot leaves out the address generation mode; ipv6_state has it, with every
    # IPv6 address (link-local included: flags, lifetimes) and route (the default included).
    assert (snapshot(container), ipv6_state(container)) == before


@pytest.mark.parametrize("init", ["never", "always"])
@pytest.mark.parametrize("wiring", ["tc", "bridge"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_failed_execve_gives_back_every_ipv6_detail(host6, container, tmp_path, shape, wiring,
                                                      init):
    SHAPES[shape][0](container)
    state = ipv6_state(container)
    links_local = [a["local"] for a in state["addresses"] if a["local"].startswith("fe80:")]
    assert state["mode"] == "eui64" and len(links_local) == 1, state
    assert [r.get("gateway") for r in state["routes"] if r["dst"] == "default"] == \
        [LINK_GATEWAY6], state["routes"]
    program = write(str(tmp_path), "noshell", "#!/no/such/shell\n")
    assert_execve_failure_gives_everything_back(container, "unix", "--wiring", wiring,
                                                "--init", init, program)


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_a_failed_execve_on_restart_leaves_the_recorded_state(host6, container, start, uguest,
                                                              unikernel, tmp_path, wiring):
    """A restart whose execve fails: eth0 stays as the first run left it (empty, its IPv6 off)
    and the record stays, so the next restart still hands over both families."""
    add_ipv6(container)
    first = start(container, *spt_argv(wiring, uguest, unikernel))
    ready1 = first.ready_json()
    first.proc.kill()
    first.exit_status()
    tender = write(str(tmp_path), "noshell", "#!/no/such/shell\n")
    assert_execve_failure_gives_everything_back(container, "spt", "--wiring", wiring,
                                                "--tender", tender, unikernel)
    assert link(container, "eth0").get("inet6_addr_gen_mode") == "none"
    ready2 = start(container, *spt_argv(wiring, uguest, unikernel)).ready_json()
    assert (ready2["ipv4"], ready2["ipv6"], ready2["mac"]) == \
        (ready1["ipv4"], ready1["ipv6"], ready1["mac"])
    assert_answers(host6, container.ip4, GUEST6, udp=False)
