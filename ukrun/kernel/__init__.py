"""What talks to Linux: the cffi core, the netlink codec and the route-netlink socket with the
objects it reports, taps, capabilities, signals, the process handed over, the namespace lock,
and the values those calls take (addresses, MACs, interface names). Imports nothing of ukrun
but ukrun.errors and ukrun.valueclass.
"""
