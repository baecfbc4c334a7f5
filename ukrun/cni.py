"""``ukrun cni`` (installed as ``ukrun-cni``): the handover as a chained CNI plugin (spec 1.0.0).

A runtime runs it after the pod network's own plugin (bridge, ptp, macvlan, Calico...), with
the network configuration on stdin, the previous plugin's result as its ``prevResult``, and
CNI_COMMAND, CNI_NETNS, CNI_IFNAME, CNI_CONTAINERID, CNI_PATH in the environment.

- ADD enters CNI_NETNS and hands CNI_IFNAME over (ukrun.handover.hand_over: a run's plan and
  apply), then prints ``prevResult`` unchanged, so the runtime still reports the pod's IP.
- DEL gives it back from the tap's record (ukrun.handover.give_back): idempotent, and a
  success when the namespace, the tap or the record are gone already.
- CHECK says what is missing from the handover; VERSION lists the versions it speaks.

The plugin's own keys: ``tap`` (default tap0), ``wiring`` (tc or bridge), ``owner`` and
``group``: the uid and gid that alone may attach to the tap without CAP_NET_ADMIN (neither:
any process in the pod's namespace that can open /dev/net/tun may). An error is a CNI error
result on stdout (``{"cniVersion", "code", "msg", "details"}``) and a non-zero exit, and ADD
changes nothing on an error.
"""
from __future__ import annotations

import os
import sys

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
WIRINGS = ("tc", "bridge")
_UID_MAX = 2 ** 32 - 2  # (uid_t)-1 is no uid

# The spec's error codes, and ukrun's own (100 and up, as the spec reserves them).
INCOMPATIBLE_VERSION, BAD_ENV, TRY_AGAIN = 1, 4, 11
DECODE_FAILED, INVALID_CONFIG = 6, 7
HANDOVER_REFUSED = 100


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def result(self, version: str) -> dict:
        error = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            error["details"] = self.details
        return error


def _uid(config: dict, key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= _UID_MAX:
        raise CniError(INVALID_CONFIG, "%s must be a uid/gid from 0 to %d, not %r"
                       % (key, _UID_MAX, value))
    return value


def parse_config(text: bytes, command: str) -> dict:
    """The network configuration on stdin, checked; CniError for anything wrong with it.
    Returns the config with the plugin's own keys resolved (``tap``, ``wiring``, ``owner``,
    ``group``)."""
    import json

    from ukrun.kernel.ifname import validate_ifname

    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise CniError(DECODE_FAILED, "the network configuration is not JSON", str(e)) from None
    if not isinstance(config, dict):
        raise CniError(DECODE_FAILED, "the network configuration is not a JSON object")
    version = config.get("cniVersion")
    if version not in VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, "cniVersion %r is not one of %s"
                       % (version, ", ".join(VERSIONS)))
    if not isinstance(config.get("name"), str) or not config["name"]:
        raise CniError(INVALID_CONFIG, "the network configuration has no name")
    tap = config.get("tap", "tap0")
    try:
        validate_ifname(tap)
    except (TypeError, ValueError) as e:
        raise CniError(INVALID_CONFIG, "tap %r is no interface name: %s" % (tap, e)) from None
    wiring = config.get("wiring", "tc")
    if wiring not in WIRINGS:
        raise CniError(INVALID_CONFIG, "wiring %r is not one of %s" % (wiring, ", ".join(WIRINGS)))
    previous = config.get("prevResult")
    if command == "ADD" and not isinstance(previous, dict):
        raise CniError(INVALID_CONFIG, "no prevResult: ukrun-cni is a chained plugin and runs "
                       "after the plugin that makes the pod's interface")
    if previous is not None and not isinstance(previous, dict):
        raise CniError(INVALID_CONFIG, "prevResult is not a JSON object")
    return dict(config, tap=tap, wiring=wiring, owner=_uid(config, "owner"),
                group=_uid(config, "group"))


def _check_previous(previous: dict, ifname: str) -> None:
    """prevResult must list the interface to hand over and give it an address."""
    interfaces = previous.get("interfaces", [])
    ips = previous.get("ips")
    if not isinstance(interfaces, list) or not isinstance(ips, list) or not ips:
        raise CniError(INVALID_CONFIG, "prevResult holds no ips: the previous plugin gave "
                       "%s no address to hand over" % ifname)
    names = [i.get("name") for i in interfaces if isinstance(i, dict)]
    if interfaces and ifname not in names:
        raise CniError(INVALID_CONFIG, "prevResult lists no interface %s (it lists %s)"
                       % (ifname, ", ".join(map(str, names)) or "none"))


def _env(name: str, required: bool = True) -> str:
    value = os.environ.get(name, "")
    if required and not value:
        raise CniError(BAD_ENV, "%s is not set" % name)
    return value


def _refused(e: Exception) -> CniError:
    from ukrun.errors import NetworkError

    code = TRY_AGAIN if isinstance(e, NetworkError) and "has not finished" in str(e) else (
        HANDOVER_REFUSED)
    return CniError(code, str(e))


def add(config: dict) -> dict:
    from ukrun import handover
    from ukrun.errors import UkrunError

    ifname, netns = _env("CNI_IFNAME"), _env("CNI_NETNS")
    _env("CNI_CONTAINERID")
    _check_previous(config["prevResult"], ifname)
    try:
        if not handover.entered(netns):
            raise CniError(BAD_ENV, "CNI_NETNS %s does not exist" % netns)
        handover.hand_over(ifname, config["tap"], config["wiring"], config["owner"],
                           config["group"]).close()
    except (UkrunError, OSError, ValueError) as e:
        raise _refused(e) from None
    return dict(config["prevResult"], cniVersion=config["cniVersion"])


def delete(config: dict) -> None:
    from ukrun import handover
    from ukrun.errors import UkrunError

    ifname, netns = _env("CNI_IFNAME"), _env("CNI_NETNS", required=False)
    try:
        if not handover.entered(netns):
            return  # the namespace is gone, and everything ADD made in it with it
        handover.give_back(ifname, config["tap"])
    except ValueError as e:  # a record that does not validate: not ukrun's to touch
        sys.stderr.write("ukrun-cni: DEL leaves %s as it is: %s\n" % (config["tap"], e))
    except (UkrunError, OSError) as e:
        raise _refused(e) from None


def check(config: dict) -> None:
    from ukrun import handover
    from ukrun.kernel.rtnl import Rtnl
    from ukrun.network import discovery
    from ukrun.network.release import handover_problem

    ifname, netns = _env("CNI_IFNAME"), _env("CNI_NETNS")
    if not isinstance(config.get("prevResult"), dict):
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    try:
        if not handover.entered(netns):
            raise CniError(BAD_ENV, "CNI_NETNS %s does not exist" % netns)
        with Rtnl() as rtnl:
            snapshot = discovery.read(rtnl, (ifname,), tc_links=(ifname, config["tap"]))
        problem = handover_problem(snapshot, ifname, config["tap"])
    except (OSError, ValueError) as e:
        raise _refused(e) from None
    if problem:
        raise CniError(HANDOVER_REFUSED, "the handover of %s is not complete: %s"
                       % (ifname, problem))


def run(command: str, stdin: bytes) -> tuple:
    """(exit status, the JSON value to print or None) for CNI_COMMAND ``command``."""
    version = "1.0.0"
    try:
        if command == "VERSION":
            return 0, {"cniVersion": version, "supportedVersions": list(VERSIONS)}
        if command not in ("ADD", "DEL", "CHECK"):
            raise CniError(BAD_ENV, "CNI_COMMAND %r is not ADD, DEL, CHECK or VERSION"
                           % command)
        config = parse_config(stdin, command)
        version = config["cniVersion"]
        if command == "ADD":
            return 0, add(config)
        (delete if command == "DEL" else check)(config)
        return 0, None
    except CniError as e:
        return 1, e.result(version)


def main(argv=None) -> int:
    import json

    status, answer = run(os.environ.get("CNI_COMMAND", ""), sys.stdin.buffer.read())
    if answer is not None:
        json.dump(answer, sys.stdout)
        sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
