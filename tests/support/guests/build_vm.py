"""Build the Linux VM guest for the qemu/kvm targets: a Debian cloud kernel + a busybox initramfs.

    python tests/support/guests/build_vm.py [--force]     prints {"kernel": ..., "initrd": ...}

Everything comes from Debian packages: the kernel through `apt-get download` (the current one,
resolved through the `linux-image-cloud-amd64` metapackage), busybox from the installed
busybox-static. The result is cached in `.cache/guests/` (git-ignored) under a key made of the
kernel package and this file's own init script, so a second run costs a few milliseconds.

The guest's /init loads the virtio modules, reads `--ipv4=ADDR/N` and `--ipv4-gateway=GW` from
/proc/cmdline (what ukrun appends), configures eth0, serves HTTP on port 8080 with a page naming
its address, and prints `UKRUN-GUEST-READY ip=... gw=... mac=...` on the console.
"""
from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CACHE = os.path.join(ROOT, ".cache", "guests")
METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX = "/bin/busybox"
READY = "UKRUN-GUEST-READY"
HTTP_PORT = 8080

# Load order matters: each module needs the ones before it (no modprobe/depmod in the guest).
MODULES = ("virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio",
           "virtio_pci", "failover", "net_failover", "virtio_net")

# Directories of the initramfs (part of the cache key, with the init and the modules).
DIRS = ("bin", "dev", "etc", "proc", "sys", "tmp", "modules", "www")

INIT = r"""#!/bin/busybox sh
# ukrun test guest: network from the kernel command line, HTTP on port %(port)d.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in %(modules)s; do
    # A module the kernel has built in has no file here; that is fine.
    [ -f /modules/$m.ko ] && insmod /modules/$m.ko
done

# The kernel hands unknown name=value words to init as environment variables (ip= among
# them: this kernel has no CONFIG_IP_PNP), so every variable starts empty here.
ip=; gw=; ip6=; gw6=; dns=; dev=eth0; host=; fmt=; failed=

# The kernel's ip=CLIENT:SERVER:GW:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1:NTP0, static only.
linux_ip() {
    saved_ifs=$IFS; IFS=:
    set -f; set -- $1; set +f
    IFS=$saved_ifs
    case "$7" in ""|off|none) ;; *) failed="$failed,autoconf-$7"; return ;; esac
    [ -n "$1" ] || { failed="$failed,ip-client"; return; }
    mask=$4
    if [ -z "$mask" ]; then   # the kernel's default: the address's old class
        first=${1%%%%.*}
        if [ "$first" -lt 128 ]; then mask=8; elif [ "$first" -lt 192 ]; then mask=16; else mask=24; fi
    fi
    ip="$1/$mask"; gw=$3; fmt=linux
    [ -n "$5" ] && host=$5
    [ -n "$6" ] && dev=$6
    dns="$8 $9"
}

for word in $(cat /proc/cmdline); do
    case "$word" in
        --ipv4=*) ip="${word#--ipv4=}" ;;
        --ipv4-gateway=*) gw="${word#--ipv4-gateway=}" ;;
        --ipv6=*) ip6="${word#--ipv6=}" ;;
        --ipv6-gateway=*) gw6="${word#--ipv6-gateway=}" ;;
        ip=*) linux_ip "${word#ip=}" ;;
    esac
done
n=0
while [ ! -e /sys/class/net/$dev ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
# No duplicate address detection: the address must answer once the ready line is out.
echo 0 > /proc/sys/net/ipv6/conf/$dev/accept_dad
ip link set lo up
ip link set $dev up
[ -n "$ip" ] && { ip addr add "$ip" dev $dev || failed="$failed,ip"; }
# onlink: the gateway need not be inside the prefix (a /32 address, Calico's 169.254.1.1).
[ -n "$gw" ] && { ip route add default via "$gw" dev $dev onlink || failed="$failed,gw"; }
[ -n "$ip6" ] && { ip -6 addr add "$ip6" dev $dev || failed="$failed,ip6"; }
# A link-local gateway needs only the device; a global one outside the prefix needs onlink.
[ -n "$gw6" ] && { ip -6 route add default via "$gw6" dev $dev 2>/dev/null \
    || ip -6 route add default via "$gw6" dev $dev onlink || failed="$failed,gw6"; }
[ -n "$host" ] && hostname "$host"
: > /etc/resolv.conf
for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done

# Report what the kernel holds, not what was asked for.
ip=$(ip -4 addr show dev $dev | awk '$1 == "inet" { print $2; exit }')
gw=$(ip -4 route show default | awk '{ print $3; exit }')
ip6=$(ip -6 addr show dev $dev | awk '$1 == "inet6" && $2 !~ /^fe80:/ { print $2; exit }')
gw6=$(ip -6 route show default | awk '{ print $3; exit }')
dns=$(awk '{ printf "%%s%%s", sep, $2; sep = "," }' /etc/resolv.conf)
mac=$(cat /sys/class/net/$dev/address)
# Fields past mac only when set, so a guest given only --ipv4 reports the line it always did.
extra=
for field in ip6=$ip6 gw6=$gw6 dns=$dns host=$host fmt=$fmt failed=${failed#,}; do
    [ -n "${field#*=}" ] && extra="$extra $field"
done
[ "$dev" != eth0 ] && extra="$extra dev=$dev"
mkdir -p /www
echo "ukrun guest ip=$ip gw=$gw mac=$mac$extra" > /www/index.html
cp /etc/resolv.conf /www/resolv.conf
httpd -p %(port)d -h /www
echo "%(ready)s ip=$ip gw=$gw mac=$mac$extra"
# PID 1 must never exit (the kernel would panic); qemu is killed from outside.
while :; do sleep 3600; done
""" % {"port": HTTP_PORT, "modules": " ".join(MODULES), "ready": READY}


def recipe_sha():
    """What the initramfs is made of besides busybox: a change to any of it is a new guest."""
    return hashlib.sha256(repr((INIT, DIRS, MODULES)).encode()).hexdigest()


def log(msg):
    print("build_vm: %s" % msg, file=sys.stderr, flush=True)


def resolve_kernel_package():
    """The kernel package the metapackage currently depends on, e.g. linux-image-6.1.0-56-cloud-amd64."""
    for attempt in (0, 1):
        proc = subprocess.run(["apt-cache", "show", "--no-all-versions", METAPACKAGE],
                              capture_output=True, text=True, timeout=60)
        for line in proc.stdout.splitlines():
            if line.startswith("Depends:"):
                for dep in line.split(":", 1)[1].split(","):
                    name = dep.split()[0]
                    if name.startswith("linux-image-"):
                        return name
        if attempt == 0:
            # A fresh machine (or container image) may have no package lists yet.
            log("%s unknown to apt-cache; running apt-get update" % METAPACKAGE)
            subprocess.run(["apt-get", "update", "-q"], check=True, timeout=300,
                           stdout=subprocess.DEVNULL)
    raise RuntimeError("cannot resolve %s through apt-cache: %s" % (METAPACKAGE, proc.stderr.strip()))


def download(package, dest):
    """apt-get download PACKAGE into DEST; returns the .deb path (reused when already there)."""
    os.makedirs(dest, exist_ok=True)
    debs = [f for f in os.listdir(dest) if f.startswith(package + "_") and f.endswith(".deb")]
    if not debs:
        log("downloading %s" % package)
        subprocess.run(["apt-get", "download", "-q", package], cwd=dest, check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        debs = [f for f in os.listdir(dest) if f.startswith(package + "_") and f.endswith(".deb")]
    if not debs:
        raise RuntimeError("apt-get download %s left no .deb in %s" % (package, dest))
    return os.path.join(dest, sorted(debs)[-1])


def find_modules(tree):
    """{name: bytes} of MODULES found in an unpacked kernel package (.ko, .ko.xz decompressed)."""
    import lzma  # here, not at the top: a musl CPython built without liblzma reuses the cache

    found = {}
    builtin = set()
    for dirpath, _, files in os.walk(os.path.join(tree, "lib", "modules")):
        for f in files:
            path = os.path.join(dirpath, f)
            if f == "modules.builtin":
                with open(path) as fh:
                    builtin |= {os.path.basename(l.strip()).split(".ko")[0] for l in fh}
            for suffix, opener in ((".ko", open), (".ko.xz", lzma.open)):
                name = f[:-len(suffix)] if f.endswith(suffix) else None
                if name in MODULES:
                    # busybox insmod may not read compressed modules: store them plain.
                    with opener(path, "rb") as fh:
                        found[name] = fh.read()
    missing = [m for m in MODULES if m not in found and m.replace("_", "-") not in builtin
               and m not in builtin]
    if missing:
        raise RuntimeError("kernel package lacks modules: %s" % " ".join(missing))
    return found


def cpio_newc(entries):
    """A cpio archive in the kernel's initramfs format ("newc"), from (name, mode, data, rdev).

    Written here rather than with cpio(1) so a device node (/dev/console, needed before any
    devtmpfs is mounted) can be included without mknod and the archive is reproducible.
    """
    out = io.BytesIO()
    for ino, (name, mode, data, rdev) in enumerate(list(entries) + [("TRAILER!!!", 0, b"", (0, 0))], 1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08x" % f for f in fields) + encoded)
        out.write(b"\0" * (-out.tell() % 4))   # header + name pad to 4 bytes
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))   # data pads to 4 bytes
    return out.getvalue()


def make_initrd(modules):
    with open(BUSYBOX, "rb") as fh:
        busybox = fh.read()
    d = stat.S_IFDIR | 0o755
    entries = [(n, d, b"", (0, 0)) for n in DIRS]
    entries += [
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox, (0, 0)),
        ("init", stat.S_IFREG | 0o755, INIT.encode(), (0, 0)),
    ]
    entries += [("modules/%s.ko" % m, stat.S_IFREG | 0o644, modules[m], (0, 0))
                for m in MODULES if m in modules]
    return gzip.compress(cpio_newc(entries), mtime=0)


def prune(keep):
    """Drop older builds and kernel packages, so the cache holds one guest, not every kernel."""
    for name in os.listdir(CACHE):
        if name.startswith("vm-") and name not in keep:
            shutil.rmtree(os.path.join(CACHE, name), ignore_errors=True)
    debs = os.path.join(CACHE, "debs")
    for name in os.listdir(debs):
        if name.endswith(".deb") and name not in keep:
            os.unlink(os.path.join(debs, name))


def cache_key(package):
    with open(BUSYBOX, "rb") as fh:
        busybox = hashlib.sha256(fh.read()).hexdigest()
    return hashlib.sha256(("%s\n%s\n%s" % (package, recipe_sha(), busybox)).encode()).hexdigest()[:16]


def cached():
    """The last build, when it is still there; never touches apt (so offline reruns work)."""
    try:
        with open(os.path.join(CACHE, "vm.json")) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return None
    if info.get("recipe_sha") != recipe_sha():
        return None
    if all(os.path.exists(info.get(k, "")) for k in ("kernel", "initrd")):
        return info
    return None


def build(force=False):
    """Build (or reuse) the guest; returns {"kernel", "initrd", "package"}."""
    info = None if force else cached()
    if info:
        return info
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        # Two test runs building at once would race on the same files.
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = None if force else cached()
        return info or _build(force)


def _build(force):
    if not os.path.exists(BUSYBOX):
        raise RuntimeError("%s missing: apt-get install busybox-static" % BUSYBOX)
    package = resolve_kernel_package()
    out = os.path.join(CACHE, "vm-%s" % cache_key(package))
    kernel, initrd = os.path.join(out, "vmlinuz"), os.path.join(out, "initrd.gz")
    if force or not (os.path.exists(kernel) and os.path.exists(initrd)):
        deb = download(package, os.path.join(CACHE, "debs"))
        with tempfile.TemporaryDirectory(dir=CACHE) as tree:
            log("unpacking %s" % os.path.basename(deb))
            subprocess.run(["dpkg", "-x", deb, tree], check=True, timeout=300)
            vmlinuz = [f for f in os.listdir(os.path.join(tree, "boot")) if f.startswith("vmlinuz-")]
            if len(vmlinuz) != 1:
                raise RuntimeError("expected one vmlinuz in %s, found %s" % (deb, vmlinuz))
            modules = find_modules(tree)
            tmp = out + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            shutil.copyfile(os.path.join(tree, "boot", vmlinuz[0]), os.path.join(tmp, "vmlinuz"))
            with open(os.path.join(tmp, "initrd.gz"), "wb") as fh:
                fh.write(make_initrd(modules))
            shutil.rmtree(out, ignore_errors=True)
            os.rename(tmp, out)   # appears whole or not at all
        log("built %s" % out)
        prune(keep={os.path.basename(out), os.path.basename(deb)})
    info = {"kernel": kernel, "initrd": initrd, "package": package,
            "recipe_sha": recipe_sha()}
    with open(os.path.join(CACHE, "vm.json.tmp"), "w") as fh:
        json.dump(info, fh)
    os.replace(os.path.join(CACHE, "vm.json.tmp"), os.path.join(CACHE, "vm.json"))
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    info = build(force=parser.parse_args().force)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
