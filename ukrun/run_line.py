"""A run's command line (``ukrun TARGET [OPTION]... UNIKERNEL [ARG]...``), read with
ukrun.options' table and without argparse: what every run goes through. Help, the other
commands and every error go to ukrun.parser, which finds UNIKERNEL the same way.
"""
from __future__ import annotations

from ukrun.guest.targets import TARGETS
from ukrun.options import Namespace, all_flags, run_options, value_flags


def split_at_unikernel(takes_value: set, words: list, flags=()):
    """(ukrun's words, [UNIKERNEL, ARG...]); options with a value become --opt=value.

    ``takes_value``: the flags that take a value; the next word is the value, even when it
    starts with '-' (--tender-arg -initrd), unless it is one of ukrun's own options
    (``takes_value`` or ``flags``): "--tender --dry-run" is a slip, and joined it would turn a
    dry run into a real one. The option is then left without its value, for argparse to refuse.
    """
    own = frozenset(takes_value) | frozenset(flags)
    head, i = [], 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return head, words[i + 1:]
        if not word.startswith("-") or word == "-":
            return head, words[i:]
        if word in takes_value and i + 1 < len(words) and (
                words[i + 1].partition("=")[0] not in own):
            head.append("%s=%s" % (word, words[i + 1]))
            i += 2
        else:
            head.append(word)
            i += 1
    return head, []


def fast_parse(argv: list):
    """The namespace for ``TARGET [OPTION]... UNIKERNEL [ARG]...``, or None when argv is
    anything else (no target, --help, an option or value argparse would refuse): for those,
    argparse parses and words the error."""
    if not argv or argv[0] not in TARGETS:
        return None
    options = run_options(argv[0])
    head, rest = split_at_unikernel(value_flags(options), argv[1:], all_flags(options))
    if not rest:
        return None
    by_flag = {flag: option for option in options for flag in option.flags}
    values = {option.dest: option.cli_default for option in options}
    for word in head:
        flag, equals, text = word.partition("=")
        option = by_flag.get(flag)
        if option is None or option.takes_value != bool(equals):
            return None
        if not option.takes_value:
            values[option.dest] = True
            continue
        if option.choices is not None and text not in option.choices:
            return None
        if option.convert is not None:
            try:
                text = option.convert(text)
            except ValueError:
                return None
        if option.action == "append":
            values[option.dest] = (values[option.dest] or []) + [text]
        else:
            values[option.dest] = text
    return Namespace(command=argv[0], unikernel=rest[0], args=rest[1:], **values)
