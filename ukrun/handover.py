"""The handover without the exec: what ``ukrun cni`` and ``ukrun hook`` do for a pod whose
guest a later, unprivileged ``ukrun TARGET ...`` starts, and how they give it back.

``hand_over`` is a run's plan (ukrun.handover.plan_handover: the same checks, survey and
wiring steps) carried out by the run's ``ukrun.runner.apply``, under the run's namespace lock:
a persistent tap given to the pod's uid/gid, the wiring, the record, the interface's
addresses moved. It returns the ``Applied``, whose ``undo()`` reverts it exactly in this
process. ``give_back`` is the undo a later process does (CNI DEL comes in a new one): from
the tap's record alone (ukrun.network.release), idempotent, never touching a link that is
not ukrun's. Both work in the calling thread's network namespace; ``entered(path)`` joins
the pod's first (ukrun.kernel.netns).
"""
from __future__ import annotations

from ukrun.errors import NetworkError
from ukrun.kernel import netns
from ukrun.kernel.nslock import NamespaceLock
from ukrun.runner import Applied, apply

# The IPv6 address generation mode new links of this namespace get: what an interface is
# given back (/proc/sys/net reads the namespace of the thread that opens it).
GEN_MODE_DEFAULT = "/proc/sys/net/ipv6/conf/default/addr_gen_mode"


class HandoverPlan:
    """What ``apply`` carries out for a handover alone: its Handovers, no program."""

    def __init__(self, handovers: tuple):
        self.handovers = handovers

    @property
    def steps(self) -> list:
        return [step for h in self.handovers for step in h.steps]


# The target a handover for no particular guest is planned as: one that sets the guest's MAC,
# so that the record says eth0's (the guest of a later run inherits it, as an hvt run's does).
HANDOVER_TARGET = "spt"


def plan_handover(interface="eth0", tap=None, wiring: str = "tc", owner: int | None = None,
                  group: int | None = None) -> tuple:
    """The Handovers (ukrun.planning.Handover, one per interface) that hand ``interface``
    (one name or a tuple) over to its tap, for a guest that a later run starts: a run's
    checks, survey and wiring (ukrun.planning.handover_for), a new tap given to ``owner`` and
    ``group`` (None: none), the record written, the tap left closed. Changes nothing;
    ``hand_over`` carries it out. Needs CAP_NET_ADMIN."""
    from ukrun import preflight
    from ukrun.kernel import caps, devices
    from ukrun.kernel.rtnl import Rtnl
    from ukrun.network.survey import read_kernel
    from ukrun.options import per_interface
    from ukrun.planning import Options, handover_for

    fields = dict(interface=interface, wiring=wiring, keep_caps=("none",))
    if tap is not None:
        fields["tap"] = tap
    o = Options(HANDOVER_TARGET, "", **fields)
    target = preflight.check_options(o)
    each = per_interface(o, target)
    devices.check_tun()
    caps.check_capabilities(frozenset())
    notes = []
    with Rtnl() as rtnl:
        # A record found on the tap must be one this handover's guest can attach to.
        found = read_kernel(rtnl, o, each, notes,
                            attacher=(owner, set() if group is None else {group}))
    return tuple(handover_for(o, target, e, view, network, notes, (owner, group))
                 for e, (view, network) in zip(each, found))


def hand_over(interface="eth0", tap=None, wiring: str = "tc", owner: int | None = None,
              group: int | None = None) -> Applied:
    """Hand ``interface`` over to its tap, for a guest started later (needs CAP_NET_ADMIN).
    ``owner``/``group``: the uid/gid that alone may attach to the tap without CAP_NET_ADMIN;
    with neither, any process of the namespace that can open /dev/net/tun may. A second call
    finds the first one's record and changes nothing more (a restart takes it over)."""
    with NamespaceLock():
        handovers = plan_handover(interface, tap, wiring, owner, group)
        applied = apply(HandoverPlan(handovers))
    return applied


def _gen_mode() -> int | None:
    try:
        with open(GEN_MODE_DEFAULT) as f:
            return int(f.read())
    except (OSError, ValueError):  # no IPv6 in this kernel or namespace
        return None


def release_plan(interface: str = "eth0", tap: str = "tap0") -> list:
    """The steps ``give_back`` would take now (ukrun.network.release.release_steps); changes
    nothing. RecordError (a ValueError) when the tap's record does not validate."""
    from ukrun.kernel.rtnl import Rtnl
    from ukrun.network import discovery
    from ukrun.network.release import release_steps

    with Rtnl() as rtnl:
        snapshot = discovery.read(rtnl, (interface,), tc_links=(interface,))
    return release_steps(snapshot, interface, tap, _gen_mode())


def give_back(interface: str = "eth0", tap: str = "tap0") -> list:
    """Undo the handover of ``interface`` to ``tap`` from the tap's record; returns the steps
    done (none when there is nothing of ukrun's left: a second call). NetworkError names the
    step that failed; RecordError when the record does not validate (nothing is changed)."""
    from ukrun.kernel.rtnl import Rtnl
    from ukrun.network.executor import Kernel

    with NamespaceLock():
        steps = release_plan(interface, tap)
        kernel = Kernel(Rtnl())
        try:
            for step in steps:
                try:
                    kernel.do(step)
                except OSError as e:
                    raise NetworkError("%s: %s" % (step.text, e.strerror or e),
                                       "giving %s back stopped there" % interface) from e
        finally:
            kernel.close_taps()
            kernel.rtnl.close()
    return steps


def entered(path: str | None) -> bool:
    """Join the network namespace ``path`` (None or "": stay); False when it is gone."""
    if not path:
        return True
    try:
        netns.enter(path)
    except FileNotFoundError:
        return False
    return True
