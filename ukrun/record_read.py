"""Reading the restart record (ukrun.record) back from a tap's alias: ``Record.from_alias``
for an alias that starts "ukrun:". Only a run that finds a record (a restart) loads this.
"""
from __future__ import annotations

from ukrun import inet
from ukrun.record import _KEYS_BY_VERSION, RECORD_PREFIX, RecordError


def read_alias(cls, alias: str, tap: str | None):
    """The ``cls`` (Record) that ``alias``, starting "ukrun:", holds, every field checked;
    RecordError when it does not hold exactly what ``to_alias`` writes for a valid record."""
    if alias.startswith(RECORD_PREFIX + "{"):
        return _from_json(cls, alias[len(RECORD_PREFIX):], tap)
    version, *words = alias[len(RECORD_PREFIX):].split(" ")
    keys = _KEYS_BY_VERSION.get(version)
    if keys is None:
        raise RecordError("version %r is not one of %s" % (
            version, ", ".join(_KEYS_BY_VERSION)), tap)
    data = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or len(key) != 1 or key not in keys:
            raise RecordError("%r is not one of the words %s" % (
                word, " ".join(k + "=" for k in keys)), tap)
        if key in data:
            raise RecordError("%s= comes twice" % key, tap)
        data[key] = value
    missing = [key + "=" for key in keys if key not in data]
    if missing:
        raise RecordError("%s missing" % " ".join(missing), tap)
    record = cls(data["i"], data["w"], data["b"] or None,
                 _ip_word("4", data["4"], 4, tap, True),
                 _ip_word("g", data["g"], 4, tap, False), _onlink_word(data["o"], tap),
                 data["m"] or None, data["e"],
                 _ip_word("6", data.get("6", ""), 6, tap, True),
                 _ip_word("h", data.get("h", ""), 6, tap, False)).check(tap)
    written = record.to_alias()
    if written != alias:  # e.g. 4=10.0.0.2/255.0.0.0 or 4=10.0.0.2, words reordered
        raise RecordError("not written the way ukrun writes it (%r)" % written, tap)
    return record


def _from_json(cls, text: str, tap: str | None):
    """The JSON record ukrun wrote before its words (``{"v":1,"i":"eth0",...}``), still
    found in pods that kept their namespace across an upgrade: read with the same checks,
    then rewritten as words by the run that takes it over."""
    import json  # only for this upgrade path

    try:
        data = json.loads(text)
    except ValueError:
        raise RecordError("not JSON nor words", tap) from None
    keys = set(_KEYS_BY_VERSION["1"]) | {"v"}
    if not isinstance(data, dict) or set(data) != keys or data["v"] != 1:
        raise RecordError("a JSON record, but not the one ukrun wrote (keys %s, v 1)"
                          % " ".join(sorted(keys)), tap)
    texts = [data[key] for key in "iwb4gme"]
    if not all(value is None or isinstance(value, str) for value in texts) or (
            type(data["o"]) is not int):
        raise RecordError("a JSON record with a value of the wrong type", tap)
    return cls(data["i"], data["w"], data["b"],
               _ip_word("4", data["4"] or "", 4, tap, True),
               _ip_word("g", data["g"] or "", 4, tap, False),
               _onlink_word(str(data["o"]), tap),
               data["m"], data["e"]).check(tap)


def _ip_word(key: str, text: str, version: int, tap, prefix: bool):
    """The address (with its prefix when ``prefix``) in word ``key``; None when it is empty."""
    if not text:
        return None
    try:
        return inet.interface(text, version) if prefix else inet.address(text, version)
    except ValueError:
        raise RecordError("%s=%r is not an IPv%d address%s" % (
            key, text, version, "/prefix" if prefix else ""), tap) from None


def _onlink_word(text: str, tap) -> bool:
    if text not in ("0", "1"):
        raise RecordError("o=%r is neither 0 nor 1" % text, tap)
    return text == "1"
