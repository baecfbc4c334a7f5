"""How the kernel finds the interpreter of a file that is no ELF program, as pure functions
over bytes: binfmt_script's ``#!`` line and binfmt_misc's entries. ukrun.guest.programs follows them
to tell, before the network is touched, that the execve of a script (or of a file an emulator
takes) would fail; a run that execs an ELF program loads none of this. Nothing here reads a
file or raises a ukrun error.
"""
from __future__ import annotations

from ukrun.valueclass import value_class

# --- #! lines (fs/binfmt_script.c) ----------------------------------------------------------

_SPACETAB = b" \t"


class ShebangError(ValueError):
    """A ``#!`` line the kernel refuses: ENOEXEC, or EACCES for an empty interpreter name."""


@value_class(frozen=True)
class Shebang:
    interpreter: bytes  # the path the kernel opens
    argument: bytes | None  # everything after it, as ONE argument, or None

    @property
    def dos_line_end(self) -> bool:
        """The line ended in CR LF: the CR stuck to the last word."""
        return (self.argument if self.argument is not None else self.interpreter).endswith(b"\r")


def _next_non_spacetab(buf, first, last):
    for i in range(first, last + 1):
        if buf[i] not in _SPACETAB:
            return i
    return None


def _next_terminator(buf, first, last):
    for i in range(first, last + 1):
        if buf[i] in _SPACETAB or buf[i] == 0:
            return i
    return None


def parse_shebang(buf: bytes) -> Shebang | None:
    """The interpreter and argument the kernel takes from ``buf``, None when it is no script.

    ``buf`` is what the kernel reads: the file's first BINPRM_BUF_SIZE bytes, padded with NULs.
    Mirrors load_script(): the line ends at the first newline; the interpreter runs up to a
    space, tab or NUL; the rest, trimmed, is one argument. Without a newline the interpreter
    must end inside the buffer (the kernel will not exec a cut path). ShebangError otherwise.
    """
    if buf[:2] != b"#!":
        return None
    last = len(buf) - 1
    end = buf.find(b"\n")
    if end < 0:
        start = _next_non_spacetab(buf, 2, last)
        if start is None:
            raise ShebangError("its #! line names no interpreter")
        if _next_terminator(buf, start, last) is None:
            raise ShebangError("its #! line is longer than the %d bytes the kernel reads"
                               % len(buf))
        end = last
    while buf[end - 1] in _SPACETAB:
        end -= 1
    name = _next_non_spacetab(buf, 2, end)
    if name is None or name == end:
        raise ShebangError("its #! line names no interpreter")
    sep = _next_terminator(buf, name, end)
    if sep == name:  # a NUL right away: the kernel looks up "" (and fails with EACCES)
        raise ShebangError("its #! line names no interpreter")
    argument = None
    if sep is not None and buf[sep] != 0:
        start = _next_non_spacetab(buf, sep, end)
        if start is not None:
            argument = bytes(buf[start:end]).split(b"\0", 1)[0]
    return Shebang(interpreter=bytes(buf[name:end if sep is None else sep]), argument=argument)


# --- binfmt_misc (fs/binfmt_misc.c) ---------------------------------------------------------

@value_class(frozen=True)
class BinfmtEntry:
    enabled: bool
    extension: bytes | None  # matched against the file name, or None for magic matching
    offset: int
    magic: bytes
    mask: bytes | None


def parse_binfmt_entry(text: str) -> BinfmtEntry:
    """A /proc/sys/fs/binfmt_misc/NAME file as entry_status() writes it. ValueError if not."""
    lines = text.split("\n")
    if lines[0] not in ("enabled", "disabled"):
        raise ValueError("binfmt_misc entry starts with %r" % lines[0][:40])
    fields = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value
    if "extension" in fields:
        ext = fields["extension"]
        if not ext.startswith("."):
            raise ValueError("binfmt_misc extension %r" % ext[:40])
        return BinfmtEntry(enabled=lines[0] == "enabled", extension=ext[1:].encode(),
                           offset=0, magic=b"", mask=None)
    if "offset" not in fields or "magic" not in fields:
        raise ValueError("binfmt_misc entry with neither extension nor magic")
    offset = int(fields["offset"], 10)
    magic = bytes.fromhex(fields["magic"])
    mask = bytes.fromhex(fields["mask"]) if "mask" in fields else None
    if offset < 0 or not magic or (mask is not None and len(mask) != len(magic)):
        raise ValueError("binfmt_misc magic at %d of %d bytes" % (offset, len(magic)))
    return BinfmtEntry(enabled=lines[0] == "enabled", extension=None, offset=offset,
                       magic=magic, mask=mask)


def binfmt_matches(entry: BinfmtEntry, buf: bytes, filename: bytes) -> bool:
    """Whether the kernel hands this file to ``entry``'s interpreter (check_file())."""
    if not entry.enabled:
        return False
    if entry.extension is not None:
        dot = filename.rfind(b".")
        return dot >= 0 and filename[dot + 1:] == entry.extension
    window = bytes(buf[entry.offset:entry.offset + len(entry.magic)])
    if len(window) != len(entry.magic):
        return False
    mask = entry.mask or b"\xff" * len(entry.magic)
    return all((b ^ m) & k == 0 for b, m, k in zip(window, entry.magic, mask))
