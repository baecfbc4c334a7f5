"""What moves where: discovery of a container's interface, the survey of what the kernel and an
earlier run left, the wiring as plans with undos and their executor, the restart record and
resolv.conf. Imports ukrun.kernel, never ukrun.guest: the same handover serves a run and any
other caller that wires a namespace.
"""
