"""Each target's command line, against the documented ones and the old runner's (DESIGN.md)."""

import pytest

from ukrun.guest.targets import TAP_FD, TARGETS, Launch, Nic

IP = ("--ipv4=172.30.0.2/16", "--ipv4-gateway=172.30.0.1")
MAC = "02:42:ac:1e:00:02"
MAC1 = "02:00:0a:00:00:02"

CASES = {
    # The old runner's unix line, word for word.
    "unix": (
        dict(unikernel="/unikernel/mir-stackv4", args=("-l", "*:debug")),
        ["/unikernel/mir-stackv4", "--interface=tap0", "-l", "*:debug", *IP],
    ),
    "unix ignores mac": (
        dict(unikernel="./k", mac=MAC),
        ["./k", "--interface=tap0", *IP],
    ),
    "hvt by name": (
        dict(unikernel="k.hvt", tender="/usr/bin/solo5-hvt", mac=MAC, args=("--hello",)),
        ["/usr/bin/solo5-hvt", "--net:service=tap0", "--net-mac:service=" + MAC,
         "--", "k.hvt", "--hello", *IP],
    ),
    "hvt everything": (
        dict(unikernel="k.hvt", tender="solo5-hvt", mac=MAC, mem=64, net_name="service0",
             tap="tapX", tender_args=("--block:storage=disk.img",), tap_fd=TAP_FD),
        ["solo5-hvt", "--mem=64", "--net:service0=@3", "--net-mac:service0=" + MAC,
         "--block:storage=disk.img", "--", "k.hvt", *IP],
    ),
    "spt": (
        dict(unikernel="k.spt", tender="solo5-spt", mac=MAC),
        ["solo5-spt", "--net:service=tap0", "--net-mac:service=" + MAC, "--", "k.spt", *IP],
    ),
    # The old runner's ukvm line.
    "ukvm": (
        dict(unikernel="/unikernel/k.ukvm", tender="/unikernel/ukvm", tap_fd=TAP_FD,
             args=("a",)),
        ["/unikernel/ukvm", "--net=@3", "--", "/unikernel/k.ukvm", "a", *IP],
    ),
    # The old runner's qemu line, -no-acpi replaced by -machine acpi=off.
    "qemu": (
        dict(unikernel="k.virtio", tender="/usr/bin/qemu-system-x86_64", mac=MAC,
             args=("--x", "y")),
        ["/usr/bin/qemu-system-x86_64", "-nodefaults", "-machine", "acpi=off", "-display",
         "none", "-serial", "stdio", "-m", "512", "-cpu", "Westmere",
         "-device", "virtio-net-pci,netdev=n0,mac=" + MAC,
         "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
         "-kernel", "k.virtio", "-append", "--x y " + " ".join(IP)],
    ),
    "kvm": (
        dict(unikernel="k", tender="qemu", mac=MAC),
        ["qemu", "-nodefaults", "-machine", "acpi=off", "-display", "none", "-serial",
         "stdio", "-m", "512", "-enable-kvm", "-cpu", "host",
         "-device", "virtio-net-pci,netdev=n0,mac=" + MAC,
         "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
         "-kernel", "k", "-append", " ".join(IP)],
    ),
    "kvm with fd, cpu, mem, initrd": (
        dict(unikernel="bzImage", tender="qemu", mac=MAC, tap_fd=TAP_FD, cpu="max", mem=256,
             tender_args=("-initrd", "initrd.cpio"), ip_args=()),
        ["qemu", "-nodefaults", "-machine", "acpi=off", "-display", "none", "-serial",
         "stdio", "-m", "256", "-enable-kvm", "-cpu", "max",
         "-device", "virtio-net-pci,netdev=n0,mac=" + MAC, "-netdev", "tap,id=n0,fd=3",
         "-kernel", "bzImage", "-append", "", "-initrd", "initrd.cpio"],
    ),
    # Several devices: one --net/--net-mac pair each, one -device/-netdev pair each.
    "spt with two devices": (
        dict(unikernel="k.spt", tender="solo5-spt", mac=MAC,
             more_nics=(Nic("tap1", mac=MAC1, net_name="service1"),)),
        ["solo5-spt", "--net:service=tap0", "--net-mac:service=" + MAC, "--net:service1=tap1",
         "--net-mac:service1=" + MAC1, "--", "k.spt", *IP],
    ),
    "hvt with three devices as fds, one MAC left to the guest": (
        dict(unikernel="k.hvt", tender="solo5-hvt", mac=MAC, tap_fd=TAP_FD,
             more_nics=(Nic("tap1", TAP_FD + 1, MAC1, "private"), Nic("tap2", TAP_FD + 2,
                                                                      net_name="x"))),
        ["solo5-hvt", "--net:service=@3", "--net-mac:service=" + MAC, "--net:private=@4",
         "--net-mac:private=" + MAC1, "--net:x=@5", "--", "k.hvt", *IP],
    ),
    "qemu with two devices": (
        dict(unikernel="k", tender="qemu", mac=MAC, more_nics=(Nic("tap,1", mac=MAC1),)),
        ["qemu", "-nodefaults", "-machine", "acpi=off", "-display", "none", "-serial",
         "stdio", "-m", "512", "-cpu", "Westmere",
         "-device", "virtio-net-pci,netdev=n0,mac=" + MAC,
         "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
         "-device", "virtio-net-pci,netdev=n1,mac=" + MAC1,
         "-netdev", "tap,id=n1,ifname=tap,,1,script=no,downscript=no",
         "-kernel", "k", "-append", " ".join(IP)],
    ),
    "kvm with two devices as fds": (
        dict(unikernel="k", tender="qemu", tap_fd=TAP_FD,
             more_nics=(Nic("tap1", TAP_FD + 1),)),
        ["qemu", "-nodefaults", "-machine", "acpi=off", "-display", "none", "-serial",
         "stdio", "-m", "512", "-enable-kvm", "-cpu", "host",
         "-device", "virtio-net-pci,netdev=n0", "-netdev", "tap,id=n0,fd=3",
         "-device", "virtio-net-pci,netdev=n1", "-netdev", "tap,id=n1,fd=4",
         "-kernel", "k", "-append", " ".join(IP)],
    ),
    "qemu escapes commas in the tap name": (
        dict(unikernel="k", tender="qemu", tap="a,b", ip_args=()),
        ["qemu", "-nodefaults", "-machine", "acpi=off", "-display", "none", "-serial",
         "stdio", "-m", "512", "-cpu", "Westmere", "-device", "virtio-net-pci,netdev=n0",
         "-netdev", "tap,id=n0,ifname=a,,b,script=no,downscript=no",
         "-kernel", "k", "-append", ""],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_command_line(case):
    fields, expected = CASES[case]
    target = case.split()[0]
    fields.setdefault("ip_args", IP)
    assert TARGETS[target].build(Launch(**fields)) == expected


def test_user_args_pass_untouched():
    odd = ("--", "-v", "--ipv4=1.2.3.4/8", "", "a b")
    argv = TARGETS["unix"].build(Launch(unikernel="k", args=odd, ip_args=IP))
    assert argv == ["k", "--interface=tap0", *odd, *IP]


def test_ukvm_refuses_a_tap_by_name():
    with pytest.raises(ValueError):
        TARGETS["ukvm"].build(Launch(unikernel="k", tender="ukvm"))


@pytest.mark.parametrize("target", ["unix", "ukvm"])
def test_one_device_targets_refuse_a_second(target):
    # The runner refuses earlier, with a usage error; the builder alone must not drop one.
    assert TARGETS[target].max_interfaces == 1
    with pytest.raises(ValueError, match="the %s target takes one network device, not 2"
                       % target):
        TARGETS[target].build(Launch(unikernel="k", tender="t", tap_fd=TAP_FD,
                                     more_nics=(Nic("tap1", TAP_FD + 1),)))


def test_nics_lists_the_first_device_then_the_others():
    launch = Launch(unikernel="k", tap="a", mac=MAC, net_name="n",
                    more_nics=(Nic("b", 4, MAC1, "m"),))
    assert launch.nics == (Nic("a", None, MAC, "n"), Nic("b", 4, MAC1, "m"))


def launch(target, **fields):
    tap_fd = TAP_FD if TARGETS[target].tap_fd == "always" else None
    return Launch(unikernel="k", tender="t", tap_fd=tap_fd, **fields)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_kernel_parameters_go_before_the_guests_words(target):
    # Unikraft and Linux read their parameters only before the "--" of the application's.
    words = ("a", "--", "b")
    first = TARGETS[target].build(launch(target, args=words, ip_args=("ip=X",),
                                         ip_args_first=True))
    last = TARGETS[target].build(launch(target, args=words, ip_args=("ip=X",)))
    if target in ("qemu", "kvm"):
        first, last = first[first.index("-append") + 1], last[last.index("-append") + 1]
        assert (first, last) == ("ip=X a -- b", "a -- b ip=X")
    else:
        assert first[-4:] == ["ip=X", "a", "--", "b"] and last[-4:] == ["a", "--", "b", "ip=X"]


def test_table_says_what_each_target_needs():
    assert {n for n, t in TARGETS.items() if t.needs_kvm} == {"hvt", "ukvm", "kvm"}
    assert {n for n, t in TARGETS.items() if not t.sets_mac} == {"unix", "ukvm"}
    assert TARGETS["ukvm"].tap_fd == "always" and TARGETS["unix"].tap_fd == "never"
    assert TARGETS["hvt"].default_tender == "solo5-hvt"
    assert TARGETS["spt"].default_tender == "solo5-spt"
    assert TARGETS["ukvm"].default_tender == "/unikernel/ukvm"
    assert TARGETS["unix"].default_tender is None
    assert {n for n, t in TARGETS.items() if t.max_interfaces == 1} == {"unix", "ukvm"}
    assert all(t.max_interfaces is None for n, t in TARGETS.items() if n not in ("unix", "ukvm"))
