"""A strict Dockerfile reader for the tests: what Docker accepts, minus what it accepts by
accident (an exec form that is not valid JSON silently becomes a shell form)."""
import json

INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                "WORKDIR"}
JSON_FORM = {"ADD", "CMD", "COPY", "ENTRYPOINT", "RUN", "SHELL", "VOLUME"}
COPY_FLAGS = {"--from", "--chown", "--chmod", "--link"}


def parse_dockerfile(text):
    """[(INSTRUCTION, flags dict, value)]; value is a list for the JSON form, else the text.

    Raises AssertionError where Docker would fail or, worse, silently read something else
    (a '[' that is not valid JSON falls back to the shell form).
    """
    assert text.endswith("\n") and "\t" not in text and "\r" not in text
    logical, pending = [], ""
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue  # comments end nothing: Docker drops them even inside a continuation
        assert line.strip(), "line %d: empty continuation line" % number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the file ends inside a continuation"

    result, stages, seen_from = [], [], False
    for line in logical:
        word, _, rest = line.strip().partition(" ")
        assert word in INSTRUCTIONS, "unknown instruction %r" % word
        rest, flags = rest.strip(), {}
        if word in ("COPY", "ADD"):
            while rest.startswith("--"):
                flag, _, rest = rest.partition(" ")
                name, eq, value = flag.partition("=")
                assert name in COPY_FLAGS and eq and value, "bad flag %r" % flag
                flags[name] = value
                rest = rest.strip()
        assert rest, "%s without arguments" % word
        if word in JSON_FORM and rest.startswith("["):
            value = json.loads(rest)  # must be valid: Docker would fall back to a shell form
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
        else:
            value = rest
        if word == "FROM":
            seen_from = True
            parts = value.split()
            assert len(parts) in (1, 3), value
            if len(parts) == 3:
                assert parts[1].upper() == "AS" and parts[2] not in stages, value
                stages.append(parts[2])
        else:
            assert seen_from or word == "ARG", "%s before the first FROM" % word
        if "--from" in flags:
            assert flags["--from"] in stages, "COPY --from an unknown stage %r" % flags["--from"]
        if word in ("COPY", "ADD"):
            assert len(value if isinstance(value, list) else value.split()) >= 2, line
        result.append((word, flags, value))
    assert seen_from, "no FROM"
    return result
