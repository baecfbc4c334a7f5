"""What the guest is given, on two axes: ``targets`` (one module per tender family: how its
command line is built) and ``formats`` (one module per family of guest: how it is told its
network), plus the checks that execve will take the program (programs, elf, binfmt,
execrules). Pure but for reading the program's file; imports ukrun.kernel, never
ukrun.network.
"""
