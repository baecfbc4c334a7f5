"""ukrun under a real Docker engine: images built from what the project ships, real containers.

One dockerd per session, in a network namespace of its own (tests/support/engine.py). The images are
the Debian example (examples/debian/Dockerfile, adapted only in FROM and in where ukrun's wheel
comes from) and `ukrun dockerfile TARGET --from` that image; every container gets exactly the
flags `ukrun docker-args TARGET` prints, plus what the test is about. The guests are the test
suite's: uguest (tests/support/guests/uguest.py) as the unix unikernel or as a Solo5 tender, the Linux
VM under QEMU, and tests/support/engine/pinger.py when a guest must reach out. Traffic flows only
between the engine's namespace and its containers.
"""
import datetime
import json
import os
import re
import shutil
import tempfile

import pytest

from engine import (BASE_IMAGE, IMAGE_PYTHON, IMAGE_UKRUN, Engine, EngineUnavailable, Images,
                    adapt_debian_example, dockerd_error, missing_tools)
from containerbox import Box
from guests import VM_READY, ping, ping_once, udp_echo
import muslimage
from nsutil import kvm_usable, run, unique

pytestmark = pytest.mark.engine

from tree import ROOT
NET_BIND_SERVICE = 1 << 10   # bit 10 of /proc/PID/status's capability masks
NET_ADMIN = 1 << 12
GATEWAY = "172.30.0.1"       # the engine's docker0 (tests/support/engine.py BRIDGE_CIDR)
STOP_LIMIT = 1.0             # seconds from `docker stop` to the container's end


# ---- the engine, its images, and containers that go away after each test ----

@pytest.fixture(scope="session")
def engine():
    why = missing_tools()
    if why:
        pytest.skip(why)
    workdir = tempfile.mkdtemp(prefix="ukde-", dir="/tmp")   # short: socket paths
    try:
        eng = Engine.start(workdir)
    except EngineUnavailable as e:
        pytest.skip("the Docker engine cannot start here: %s" % e)
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture(scope="session")
def images(engine):
    imgs = Images(engine, os.path.join(engine.workdir, "contexts"))
    yield imgs
    print("\nengine image build seconds: %s" % json.dumps(imgs.seconds))


@pytest.fixture(scope="session")
def docker_args(ukrun_exe):
    """TARGET -> the flags `ukrun docker-args TARGET` prints on this host."""
    def flags(target):
        return run(ukrun_exe, "docker-args", target).stdout.split()
    return flags


@pytest.fixture
def start(engine):
    """start(image, flags, args=()) -> Box; every container and network goes at the end."""
    made, networks = [], []

    def start(image, flags, args=()):
        cid = engine.docker("run", "-d", *flags, image, *args).stdout.strip()
        made.append(Box(engine.docker, cid))
        return made[-1]

    def network(subnet):
        name = unique("uknet")
        engine.docker("network", "create", "--subnet", subnet, name)
        networks.append(name)
        return name

    start.network = network
    yield start
    if made:
        engine.docker("rm", "-f", *[b.id for b in made], check=False)
    for name in networks:
        engine.docker("network", "rm", name, check=False)


def assert_answers(engine, address, udp=True):
    ping(engine.ns, address, timeout=10)
    if udp:
        udp_echo(engine.ns.name, address, 7, os.urandom(1000), timeout=10)


def assert_kept(status, kept=NET_BIND_SERVICE):
    for mask in ("CapEff", "CapPrm"):
        assert int(status[mask], 16) == kept, status


def stop_and_time(engine, box, grace=10):
    """(seconds from `docker stop` to the container's end as dockerd recorded it, exit code)."""
    began = datetime.datetime.now(datetime.timezone.utc)
    engine.docker("stop", "-t", str(grace), box.id, timeout=grace + 30)
    finished = box.inspect("{{.State.FinishedAt}}")
    # RFC 3339 with nanoseconds; Python's parser takes microseconds.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", finished).replace("Z", "+00:00")
    ended = datetime.datetime.fromisoformat(stamp)
    return (ended - began).total_seconds(), int(box.inspect("{{.State.ExitCode}}"))


def one_error_line(box):
    out, err = box.logs()
    lines = [l for l in (out + err).splitlines() if l.strip()]
    assert "Traceback" not in out + err, box.explain()
    assert len(lines) == 1 and lines[0].startswith("ukrun: error: "), box.explain()
    return lines[0]


# ---- the images come from what the project ships ----

def test_debian_example_adapted_only_in_from_and_wheel():
    with open(os.path.join(ROOT, "examples", "debian", "Dockerfile")) as fh:
        original = fh.read()
    adapted = adapt_debian_example(original)
    removed = [l for l in original.splitlines() if l not in adapted.splitlines()]
    added = [l for l in adapted.splitlines() if l not in original.splitlines()]
    assert added == ["FROM %s AS ukrun-build" % BASE_IMAGE, 'COPY ["wheels", "/wheels"]',
                     "FROM %s" % BASE_IMAGE]
    assert [l.split()[0] for l in removed] == ["FROM", "COPY", "&&", "FROM"]
    assert "pip wheel" in removed[2]


@pytest.mark.parametrize("log,said", [
    ('level=info msg="Starting up"\nlevel=error msg="x"\nfailed to start daemon: Devices '
     'cgroup isn\'t mounted\n', "failed to start daemon: Devices cgroup isn't mounted"),
    ('Status: invalid argument "300.1.2.3/24" for "--bip" flag\nSee \'dockerd --help\'., '
     'Code: 125\n', 'Status: invalid argument "300.1.2.3/24" for "--bip" flag'),
    ("mount: /sys/fs/cgroup: permission denied.\n", "mount: /sys/fs/cgroup: permission denied."),
    ("", "no output"),
])
def test_skip_message_is_dockerds_own_error(log, said):
    assert dockerd_error(log) == said


# ---- each target, each wiring ----

def assert_unix_guest_answers(engine, box):
    """The unix guest got the container's address on tap0, kept only its capabilities, and
    answers from the engine's side."""
    ready = box.ready()
    ip = box.ip()
    assert ready["ipv4"] == ip + "/24" and ready["gateway"] == GATEWAY, ready
    assert ready["attach"]["tap"] == "tap0"
    assert_kept(ready["status"])
    assert_answers(engine, ip)


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_unix_guest(engine, images, start, docker_args, wiring):
    box = start(images["unix" if wiring == "tc" else "unix-bridge"], docker_args("unix"))
    assert_unix_guest_answers(engine, box)


def test_musl_image_runs_the_unix_guest(engine, images, start, docker_args):
    """`ukrun dockerfile unix`'s Alpine build on a base of musl's loader, the musl CPython and
    BusyBox alone (tests/support/muslimage.py): the guest answers, and ukrun's extension in
    the image is musl's. Prints the image sizes beside the Debian example's."""
    from guests import UGUEST_SOURCE

    assert muslimage.glibc_files(muslimage.rootfs()) == []
    tag = muslimage.build_image(engine, images.context("musl"), UGUEST_SOURCE)
    box = start(tag, docker_args("unix"))
    assert_unix_guest_answers(engine, box)
    probe = engine.docker("run", "--rm", "--entrypoint", muslimage.IMAGE_PYTHON, tag, "-c",
                          "import sysconfig, ukrun._core as c; "
                          "print(sysconfig.get_config_var('MULTIARCH'), c.__file__)").stdout
    assert probe.split()[0] == "x86_64-linux-musl", probe
    sizes = {name: muslimage.image_size(engine, image) for name, image in (
        ("musl image", tag), ("musl base", muslimage.BASE),
        ("debian example", images["example"]), ("debian base", images["base"]))}
    print("\nimage sizes (MB): %s" % json.dumps({k: round(v / 1e6, 1) for k, v in sizes.items()}))


def test_spt_with_docker_args_alone(engine, images, start, docker_args):
    """`ukrun docker-args spt` is all the container needs; the guest keeps eth0's MAC."""
    flags = docker_args("spt")
    assert sorted(flags) == ["--cap-add=NET_ADMIN", "--device=/dev/net/tun:/dev/net/tun"]
    box = start(images["spt"], flags)
    ready = box.ready()
    assert ready["mac"] == box.mac() and ready["ipv4"] == box.ip() + "/24", ready
    assert_kept(ready["status"])
    assert_answers(engine, box.ip())


def test_hvt_debian_example(engine, images, start, docker_args):
    """examples/debian as built: ukrun hvt, with uguest standing in for solo5-hvt."""
    if not kvm_usable():
        pytest.skip("/dev/kvm is not usable here (hvt needs it; ukrun checks it first)")
    flags = docker_args("hvt")
    assert "--device=/dev/kvm:/dev/kvm" in flags
    box = start(images["example"], flags)
    ready = box.ready()
    assert ready["unikernel"] == "/unikernel/www.hvt" and ready["tender"]["mem"] == 64
    assert ready["mac"] == box.mac(), ready
    assert_answers(engine, box.ip())


def test_qemu_vm_answers_another_container(engine, images, start, docker_args):
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    box = start(images["qemu"], docker_args("qemu"))
    line = box.wait_line(lambda l: l.startswith(VM_READY), 120, what="VM ready line")
    ip = box.ip()
    ready = dict(word.split("=", 1) for word in line.split()[1:])
    assert ready == {"ip": ip + "/24", "gw": GATEWAY, "mac": box.mac()}, line
    # Another container on the same network: ping, then HTTP (retried: httpd comes last).
    client = (
        "import subprocess, sys, time, urllib.request\n"
        "subprocess.run(['ping', '-c', '1', '-W', '5', sys.argv[1]], check=True)\n"
        "for _ in range(60):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://%s:8080/' % sys.argv[1], timeout=3)"
        ".read().decode()); break\n"
        "    except OSError:\n"
        "        time.sleep(0.5)\n"
        "else:\n"
        "    sys.exit('no HTTP answer')\n")
    proc = engine.docker("run", "--rm", BASE_IMAGE, "python3", "-c", client, ip, timeout=120,
                         check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr + box.explain()
    assert "1 received" in proc.stdout and "ip=%s/24" % ip in proc.stdout, proc.stdout
    ping(engine.ns, ip, timeout=10)


# ---- the installed ukrun runs without site ----

def interpreters(stderr):
    """PYTHONVERBOSE's stderr as [set of modules imported] per Python started, in order: each
    one's first line is its `import _frozen_importlib`. The first is ukrun (PID 1); a Python
    guest it starts (uguest, with no -S) comes next."""
    runs = []
    for line in stderr.splitlines():
        m = re.match(r"import '?([\w.]+)'? # ", line)
        if m and m.group(1) == "_frozen_importlib":
            runs.append(set())
        if m and runs:
            runs[-1].add(m.group(1))
    return runs


def first_line(engine, image, path=IMAGE_UKRUN):
    return engine.docker("run", "--rm", "--entrypoint", "head", image, "-n", "1",
                         path).stdout.rstrip("\n")


@pytest.mark.parametrize("image, target", [("example", "hvt"), ("spt", "spt"),
                                           ("spt-plain", "spt")])
def test_installed_ukrun_runs_without_site(engine, images, start, docker_args, image, target):
    """examples/debian's ukrun, and `ukrun dockerfile --from` images on a base that has it
    (a no-op there) and on one with ukrun as pip wrote it: its first line is the venv's
    python with -S, and a whole run of the image's entrypoint imports no site. The guest, a
    Python started without -S, does: the same reading of the same log sees site."""
    if target == "hvt" and not kvm_usable():
        pytest.skip("/dev/kvm is not usable here (hvt needs it; ukrun checks it first)")
    tag = images[image]
    assert first_line(engine, tag) == "#!%s -S" % IMAGE_PYTHON
    box = start(tag, docker_args(target) + ["-e", "PYTHONVERBOSE=1"])
    box.ready()
    assert_answers(engine, box.ip(), udp=False)
    runs = interpreters(box.logs()[1])
    assert len(runs) >= 2, box.explain()
    ukrun, guest = runs[:2]
    assert "ukrun.cli" in ukrun and "ukrun.cli" not in guest, (sorted(ukrun), sorted(guest))
    assert "site" not in ukrun, sorted(ukrun)
    assert "site" in guest, sorted(guest)


def test_ukrun_as_pip_writes_it_runs_site(engine, images):
    """What the step in every image undoes: ukrun's first line as pip wrote it (the plain
    base, under spt-plain above) starts ukrun with site."""
    tag = images["plain"]
    assert first_line(engine, tag) == "#!%s" % IMAGE_PYTHON
    proc = engine.docker("run", "--rm", "-e", "PYTHONVERBOSE=1", "--entrypoint", "ukrun", tag,
                         "--version")
    (ukrun,) = interpreters(proc.stderr)
    assert "site" in ukrun and "ukrun.cli" in ukrun, sorted(ukrun)


# ---- docker stop: ukrun as PID 1 must not swallow the signal ----

@pytest.mark.parametrize("program", ["handler", "no-handler"])
def test_docker_stop(engine, images, start, docker_args, program):
    """Within a second, with the program's own exit status: 0 from uguest's SIGTERM handler,
    143 (128 + SIGTERM) for the pinger guest, which has none and dies of the signal.

    Both hold their tap before the stop: until the guest opens it, ukrun (PID 1, signals
    blocked) waits up to a second before it becomes the init that forwards them."""
    if program == "handler":
        box = start(images["spt"], docker_args("spt"))
    else:
        box = start(images["pinger"], docker_args("unix"))
    box.ready()
    seconds, status = stop_and_time(engine, box)
    print("docker stop, %s: %.2fs, exit status %d" % (program, seconds, status))
    assert seconds < STOP_LIMIT, "docker stop took %.1fs (status %d)" % (seconds, status)
    assert status == (0 if program == "handler" else 143)


# ---- restarts ----

def test_docker_restart(engine, images, start, docker_args):
    box = start(images["spt"], docker_args("spt"))
    box.ready()
    assert_answers(engine, box.ip(), udp=False)
    engine.docker("restart", "-t", "5", box.id, timeout=60)
    again = box.ready(nth=2)
    assert again["ipv4"] == box.ip() + "/24" and again["mac"] == box.mac(), again
    assert_answers(engine, box.ip())


def test_restart_in_pod_namespace(engine, images, start, docker_args):
    """Kubernetes' pod model: the unikernel container joins a pause container's namespace;
    restarted, it finds eth0 already handed over and rebuilds the same wiring."""
    pod = start(BASE_IMAGE, [], ["sleep", "infinity"])
    box = start(images["spt"], docker_args("spt") + ["--network", "container:" + pod.id])
    first = box.ready()
    assert first["ipv4"] == pod.ip() + "/24", first
    assert_answers(engine, pod.ip())
    engine.docker("restart", "-t", "5", box.id, timeout=60)
    second = box.ready(nth=2)
    assert (second["ipv4"], second["gateway"], second["mac"]) == \
        (first["ipv4"], first["gateway"], first["mac"])
    assert_answers(engine, pod.ip())


def descendants(pid):
    found = [pid]
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as fh:
            for child in fh.read().split():
                found += descendants(int(child))
    return found


def host_pid(box, ns_pid):
    """The machine's pid of the container's process NS_PID (its pid inside the container)."""
    for pid in descendants(int(box.inspect("{{.State.Pid}}"))):
        with open("/proc/%d/status" % pid) as fh:
            nspid = [l.split()[1:] for l in fh if l.startswith("NSpid:")][0]
        if int(nspid[-1]) == ns_pid:
            return pid
    raise AssertionError("no process %d in %s" % (ns_pid, box.explain()))


def test_restart_always_after_sigkill(engine, images, start, docker_args):
    box = start(images["spt"], docker_args("spt") + ["--restart", "always"])
    first = box.ready()
    os.kill(host_pid(box, first["pid"]), 9)
    second = box.ready(nth=2, timeout=60)
    assert int(box.inspect("{{.RestartCount}}")) >= 1
    assert second["ipv4"] == box.ip() + "/24", second
    assert_answers(engine, box.ip())


# ---- side by side ----

def test_two_unikernels_side_by_side(engine, images, start, docker_args):
    """On one user-defined network: the pinger guest resolves and pings the other guest and
    the host; the host's very first echo to each is answered; every MAC is different."""
    net = start.network("172.30.42.0/24")
    gateway = "172.30.42.1"
    quiet = start(images["spt"], docker_args("spt") + ["--network", net], ["--no-garp"])
    quiet_ready = quiet.ready()
    pinger = start(images["pinger"], docker_args("unix") + ["--network", net],
                   ["--probe=" + quiet.ip(), "--probe=" + gateway])
    report = pinger.ready(timeout=60)
    probes = report["probes"]
    assert probes[quiet.ip()].get("mac") == quiet_ready["mac"] == quiet.mac(), report
    assert "echo_ms" in probes[quiet.ip()] and "echo_ms" in probes[gateway], report
    assert report["mac"] != quiet_ready["mac"]
    for box in (quiet, pinger):
        # One echo request, no retry: answered at once, no ARP delay.
        assert ping_once(engine.ns, box.ip(), wait=1), box.explain()
    print("pinger probes: %s" % json.dumps(probes))


# ---- other run modes ----

def test_docker_run_init(engine, images, start, docker_args):
    """With docker's own init ukrun is not PID 1 and execs as it always did."""
    box = start(images["spt"], docker_args("spt") + ["--init"])
    box.ready()
    assert_answers(engine, box.ip())
    seconds, status = stop_and_time(engine, box)
    assert seconds < STOP_LIMIT and status == 0, (seconds, status)


def test_read_only_root(engine, images, start, docker_args):
    box = start(images["spt"], docker_args("spt") + ["--read-only"])
    assert_kept(box.ready()["status"])
    assert_answers(engine, box.ip())


def test_cap_drop_all_but_net_admin(engine, images, start):
    """Kubernetes' drop: [ALL], add: [NET_ADMIN]: NET_BIND_SERVICE is not held, so the guest
    keeps nothing, and still answers."""
    box = start(images["spt"], ["--cap-drop", "ALL", "--cap-add", "NET_ADMIN",
                                "--device", "/dev/net/tun:/dev/net/tun"])
    ready = box.ready()
    assert_kept(ready["status"], kept=0)
    assert_answers(engine, box.ip())


def test_non_root_user(engine, images, start, docker_args):
    """--user 1000 --cap-add NET_ADMIN --cap-add NET_BIND_SERVICE: the guest keeps
    NET_BIND_SERVICE where the engine hands a non-root user its capabilities as ambient ones;
    an engine that does not (Docker up to at least 20.10) leaves ukrun no NET_ADMIN at all, and
    then it must say so in one line."""
    flags = ["--user", "1000", "--cap-add", "NET_BIND_SERVICE"] + docker_args("spt")
    ambient = engine.docker("run", "--rm", *flags, BASE_IMAGE, "grep", "CapAmb",
                            "/proc/self/status").stdout.split()[1]
    box = start(images["spt"], flags)
    if int(ambient, 16) & NET_ADMIN:
        ready = box.ready()
        assert ready["status"]["Uid"].split()[0] == "1000"
        assert_kept(ready["status"])
        assert_answers(engine, box.ip())
    else:
        assert box.wait_exit() != 0
        line = one_error_line(box)
        # Either lack stops it: /dev/net/tun is root's 0600 node, NET_ADMIN is not held.
        assert "NET_ADMIN" in line or "/dev/net/tun" in line, line
        print("engine gives --user 1000 no ambient capabilities (CapAmb %s): %s"
              % (ambient, line))


# ---- bad setups: one line from ukrun, a non-zero exit, nothing changed ----

BAD_SETUPS = {
    "no-tun-device": ["--cap-add=NET_ADMIN"],
    "no-net-admin": ["--device=/dev/net/tun:/dev/net/tun"],
    "network-none": ["--network", "none"],
    "network-host": ["--network", "host"],
}


@pytest.mark.parametrize("setup", list(BAD_SETUPS))
def test_bad_setup(engine, images, start, docker_args, setup):
    flags = BAD_SETUPS[setup]
    if setup.startswith("network-"):
        flags = docker_args("spt") + flags
    before = engine.ns.snapshot()
    box = start(images["spt"], flags)
    status = box.wait_exit()
    line = one_error_line(box)
    print("%s: exit %d, %s" % (setup, status, line))
    assert status != 0
    if setup == "network-host":
        # "host" is the engine's namespace: nothing in it was touched.
        assert engine.ns.snapshot() == before


def test_network_host_refuses_a_real_nic(engine, images, start, docker_args):
    """--network host where the host has a NIC (netdevsim stands in: it has a parent device,
    as a real NIC does): ukrun must refuse it and leave its address alone."""
    if not os.path.exists("/sys/bus/netdevsim/new_device"):
        pytest.skip("no stand-in for a real NIC: this kernel has no netdevsim "
                    "(CONFIG_NETDEVSIM), and the machine's own NIC is not ours to use")
    device = 4000 + os.getpid() % 1000
    existing = {l["ifname"] for l in engine.ns.ip_json("link", "show")}
    engine.ns.exec("sh", "-c", "echo %d 1 > /sys/bus/netdevsim/new_device" % device)
    try:
        (nic,) = [l["ifname"] for l in engine.ns.ip_json("link", "show")
                  if l["ifname"] not in existing]
        engine.ns.ip("link", "set", nic, "name", "eth0")
        engine.ns.ip("addr", "add", "10.0.0.1/24", "dev", "eth0")
        engine.ns.ip("link", "set", "eth0", "up")
        box = start(images["spt"], docker_args("spt") + ["--network", "host"])
        assert box.wait_exit() != 0
        line = one_error_line(box)
        assert "physical" in line or "parent" in line, line
        addrs = engine.ns.ip_json("addr", "show", "eth0")[0]["addr_info"]
        assert any(a["local"] == "10.0.0.1" for a in addrs), addrs
    finally:
        with open("/sys/bus/netdevsim/del_device", "w") as fh:
            fh.write("%d" % device)
