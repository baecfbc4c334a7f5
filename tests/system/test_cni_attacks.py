"""``ukrun cni`` against what it must refuse, with nothing changed: a configuration it cannot
use (a CNI error result on stdout, non-zero exit), a foreign link named like the tap, and a
forged record. Chained after Debian's bridge plugin in namespaces the test makes.
"""
import json

import pytest
from hypothesis import given, settings, strategies as st

import cnihost  # noqa: E402
from snapshots import snapshot  # noqa: E402

from ukrun import cni  # noqa: E402

needs_plugins = pytest.mark.skipif(cnihost.missing() is not None, reason=str(cnihost.missing()))


def refused(pod, config, code, words, command="ADD"):
    before = snapshot(pod.pod)
    status, result, err = pod.ukrun(command, config)
    assert status != 0, result
    assert set(result) >= {"cniVersion", "code", "msg"} and result["code"] == code, result
    assert words in result["msg"], result
    assert snapshot(pod.pod) == before
    return result


@needs_plugins
@pytest.mark.parametrize("change, code, words", [
    (dict(prevResult=None), 7, "no prevResult"),
    (dict(prevResult={"cniVersion": "1.0.0", "ips": []}), 7, "no ips"),
    (dict(prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "net1"}],
                      "ips": [{"address": "10.0.0.2/24"}]}), 7, "no interface eth0"),
    (dict(prevResult="eth0"), 7, "no prevResult"),
    (dict(cniVersion="9.9.9"), 1, "cniVersion"),
    (dict(owner=-1), 7, "owner"),
    (dict(owner="1000"), 7, "owner"),
    (dict(group=2 ** 32 - 1), 7, "group"),
    (dict(tap="tap/0"), 7, "tap"),
    (dict(wiring="macvtap"), 7, "wiring"),
    (dict(name=""), 7, "no name"),
])
def test_bad_configuration(pod, change, code, words):
    refused(pod, pod.ukrun_config(**change), code, words)


@needs_plugins
def test_not_json(pod):
    refused(pod, "{", 6, "not JSON")
    refused(pod, "[]", 6, "not a JSON object")


@needs_plugins
def test_unknown_command_and_version(pod):
    status, result, _ = pod.ukrun("VERSION", "")
    assert status == 0 and "1.0.0" in result["supportedVersions"], result
    refused(pod, pod.ukrun_config(), 4, "CNI_COMMAND", command="GET")


@needs_plugins
def test_foreign_link_named_like_the_tap(pod):
    pod.pod.ip("link", "add", "tap0", "type", "bridge")  # no dummy module here
    refused(pod, pod.ukrun_config(), 100, "not made by ukrun")
    before = snapshot(pod.pod)
    assert pod.ukrun("DEL", pod.ukrun_config())[0] == 0  # not ukrun's: left alone
    assert snapshot(pod.pod) == before
    assert pod.ukrun("CHECK", pod.ukrun_config())[0] == 1


@needs_plugins
def test_forged_record(pod):
    """A tap whose record names a bridge ukrun did not make (the node's side cannot see it,
    but anything with NET_ADMIN in the pod could write it): ADD and DEL leave everything."""
    pod.pod.ip("tuntap", "add", "tap0", "mode", "tap")
    pod.pod.ip("link", "add", "victim0", "type", "bridge")
    (eth0,) = pod.pod.ip_json("link", "show", "eth0")
    mac = eth0["address"]
    pod.pod.ip("link", "set", "tap0", "alias", "ukrun:1 i=eth0 w=bridge b=victim0 "
               "4=%s/24 g=%s o=0 m=%s e=%s" % (cnihost.POD_IP, cnihost.GATEWAY, mac, mac))
    refused(pod, pod.ukrun_config(), 100, "victim0")
    before = snapshot(pod.pod)
    status, result, err = pod.ukrun("DEL", pod.ukrun_config())
    assert (status, result) == (0, None) and "leaves tap0 as it is" in err, err
    assert snapshot(pod.pod) == before
    pod.pod.ip("link", "set", "tap0", "alias", "ukrun:1 i=eth0 w=tc nonsense")
    before = refused(pod, pod.ukrun_config(), 100, "record") and snapshot(pod.pod)
    assert pod.ukrun("DEL", pod.ukrun_config())[0] == 0
    assert snapshot(pod.pod) == before


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["cniVersion", "name", "tap", "wiring",
                                                       "owner", "group", "prevResult",
                                                       "type", "x"]), inner, max_size=8),
                    max_leaves=12),
       st.sampled_from(["ADD", "DEL", "CHECK"]))
def test_parse_config_fuzz(value, command):
    """Any JSON value: a checked config or a CniError, never another exception."""
    try:
        config = cni.parse_config(json.dumps(value).encode(), command)
    except cni.CniError as e:
        assert e.code in (cni.INCOMPATIBLE_VERSION, cni.DECODE_FAILED, cni.INVALID_CONFIG)
        return
    assert config["cniVersion"] in cni.VERSIONS and config["wiring"] in cni.WIRINGS
    assert command != "ADD" or isinstance(config["prevResult"], dict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_parse_config_bytes(data):
    try:
        cni.parse_config(data, "ADD")
    except cni.CniError:
        pass
