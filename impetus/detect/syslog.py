"""Parsing raw syslog lines into records, and recognising the security events in them.

The ``security.syslog`` topic carries lines exactly as the collectors received them
(``schemas/security.syslog.json``). The cyber-detection job (IMPETUS's CTDR) calls
:func:`parse_document` (or :func:`parse_line`) on every message; a line that is not
syslog raises :class:`SyslogParseError`, whose message is the dead-letter reason.
:func:`security_event` then turns the record into the small event the step
functions of :mod:`impetus.detect.cyber` consume, or None for the many lines that
are fine but not security-relevant (cron, systemd, session bookkeeping...).

Formats understood:

* RFC 3164 (BSD): ``<PRI>Mmm dd hh:mm:ss host tag[pid]: msg``, PRI optional, day
  padded by a space or a zero. It has no year and no zone: the year is the one that
  puts the line closest to ``received_time`` (so a ``Dec 31`` line received on
  January 1st belongs to the previous year) and the time is read in ``tz`` (UTC by
  default). The same layout with an RFC 3339 timestamp instead (what rsyslog's
  ``RSYSLOG_ForwardFormat`` sends) is accepted too.
* RFC 5424: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD...] MSG`` with ``-`` for nil
  fields, structured data with ``\\"``, ``\\\\`` and ``\\]`` escapes, and the optional
  UTF-8 BOM before MSG. A nil timestamp falls back to ``received_time``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from impetus.alerts import parse_time, utc_iso

FORMATS = ("rfc3164", "rfc5424")
EVENT_KINDS = ("auth_failure", "auth_success", "sudo_command", "sudo_failure", "firewall_block")
MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
BOM = "\ufeff"
# OpenSSH >= 9.8 logs from the per-connection binary "sshd-session" (and 10.0 also from "sshd-auth").
SSHD_APPS = ("sshd", "sshd-session", "sshd-auth")

_PRI = re.compile(r"<(\d{1,3})>")
_BSD_TIMESTAMP = re.compile(r"([A-Za-z]{3}) ( ?\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?= |$)")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$")
_TAG = re.compile(r"([^\s\[\]:]{1,64})(?:\[([^\]\s]*)\])?:(?: |$)")
_SD_NAME = re.compile(r'[^= \]"]{1,32}')


class SyslogParseError(ValueError):
    """A line that is not syslog; ``str()`` says what is wrong and becomes the dead-letter reason."""


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return timezone.utc
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


def _received(received_time: str | None) -> datetime | None:
    if received_time is None:
        return None
    try:
        return parse_time(received_time)
    except ValueError:
        raise SyslogParseError(f"received_time {received_time!r} is not an ISO 8601 time with offset") from None


def _rfc3339(text: str, where: str) -> datetime:
    match = _RFC3339.match(text)
    if not match:
        raise SyslogParseError(
            f"{where} timestamp {_excerpt(text)} is not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] and Z or ±hh:mm)")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        zone = timezone.utc if offset == "Z" else timezone(
            (1 if offset[0] == "+" else -1) * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        int((fraction or "0").ljust(6, "0")), tzinfo=zone)
    except ValueError as err:
        raise SyslogParseError(f"{where} timestamp {text!r} is not a valid time: {err}") from None


def _bsd_time(month_name: str, day: int, hms: tuple[int, int, int], received: datetime | None,
              zone: tzinfo) -> datetime:
    """The moment of an RFC 3164 timestamp: the candidate year closest to the reception time."""
    month = MONTHS.get(month_name)
    if month is None:
        raise SyslogParseError(f"RFC 3164 timestamp has unknown month {month_name!r} (expected Jan..Dec)")
    if received is None:
        raise SyslogParseError("RFC 3164 line has no year and no received_time was given to infer it")
    hour, minute, second = hms
    if hour > 23 or minute > 59 or second > 59:
        raise SyslogParseError(f"RFC 3164 timestamp has an impossible time {hour:02d}:{minute:02d}:{second:02d}")
    received_year = received.astimezone(zone).year
    candidates = []
    for year in (received_year - 1, received_year, received_year + 1):
        try:
            candidates.append(datetime(year, month, day, hour, minute, second, tzinfo=zone))
        except ValueError:
            continue
    if not candidates:
        raise SyslogParseError(
            f"RFC 3164 date {month_name} {day} does not exist around {received_year} (received_time's year)")
    return min(candidates, key=lambda moment: abs((moment - received).total_seconds()))


def _record(fmt: str, pri: int | None, moment: datetime, host: str | None, app: str | None, pid: str | None,
            msgid: str | None, structured_data: dict | None, message: str) -> dict:
    return {
        "format": fmt,
        "facility": None if pri is None else pri // 8,
        "severity": None if pri is None else pri % 8,
        "event_time": utc_iso(moment),
        "host": host,
        "app": app,
        "pid": pid,
        "msgid": msgid,
        "structured_data": structured_data,
        "message": message,
    }


def _parse_bsd(pri: int | None, rest: str, received: datetime | None, zone: tzinfo) -> dict:
    bsd = _BSD_TIMESTAMP.match(rest)
    if bsd:
        month_name, day, hour, minute, second = bsd.groups()
        moment = _bsd_time(month_name, int(day), (int(hour), int(minute), int(second)), received, zone)
        rest = rest[bsd.end():]
    else:
        stamp = rest.split(" ", 1)[0]
        if stamp[:3] in MONTHS:
            raise SyslogParseError(f"RFC 3164 timestamp is incomplete or malformed (expected 'Mmm dd hh:mm:ss'): "
                                   f"{_excerpt(rest)}")
        if not re.match(r"\d{4}-\d{2}-\d{2}T", stamp):
            raise SyslogParseError(
                f"no syslog timestamp ('Mmm dd hh:mm:ss' or RFC 3339) at the start of {_excerpt(rest)}")
        moment = _rfc3339(stamp, "RFC 3164")
        rest = rest[len(stamp):]
    if not rest.strip():
        raise SyslogParseError("RFC 3164 line ends after the timestamp: no host, tag or message")
    if not rest.startswith(" "):
        raise SyslogParseError(f"RFC 3164 timestamp is not followed by a space but by {_excerpt(rest)}")
    rest = rest[1:]
    host = None
    # Lines written to a local socket carry no host: the first word is then already the tag.
    if not _TAG.match(rest):
        host, _, rest = rest.partition(" ")
        if not rest.strip():
            raise SyslogParseError(f"RFC 3164 line ends after the host {host!r}: no tag or message")
    tag = _TAG.match(rest)
    if tag:
        app, pid = tag.group(1), tag.group(2) or None
        message = rest[tag.end():]
    else:
        app, pid, message = None, None, rest
    if host is None and app is None:
        raise SyslogParseError("RFC 3164 line has neither a host nor a tag after the timestamp")
    return _record("rfc3164", pri, moment, host, app, pid, None, None, message)


def _parse_structured_data(text: str, position: int) -> tuple[dict | None, int]:
    """Structured data starting at ``text[position]``: (``{sd_id: {param: value}}`` or None, index after it)."""
    if text.startswith("-", position):
        return None, position + 1
    if not text.startswith("[", position):
        raise SyslogParseError(
            f"RFC 5424 structured data must be '-' or start with '[', found {_excerpt(text[position:])}")
    elements: dict[str, dict[str, str]] = {}
    while text.startswith("[", position):
        name = _SD_NAME.match(text, position + 1)
        if not name:
            raise SyslogParseError(
                f"RFC 5424 structured data element at character {position} of the structured data has no SD-ID")
        params = elements.setdefault(name.group(0), {})
        position = name.end()
        while True:
            if position >= len(text):
                raise SyslogParseError(f"RFC 5424 structured data element [{name.group(0)} is not closed with ']'")
            if text[position] == "]":
                position += 1
                break
            if text[position] != " ":
                raise SyslogParseError(
                    f"RFC 5424 structured data element [{name.group(0)} has {text[position]!r} at character "
                    f"{position} of the structured data where a space or ']' belongs")
            param = _SD_NAME.match(text, position + 1)
            if not param or not text.startswith('="', param.end()):
                raise SyslogParseError(
                    f"RFC 5424 structured data element [{name.group(0)} has a malformed parameter at character "
                    f"{position + 1} of the structured data (expected name=\"value\")")
            position = param.end() + 2
            value = []
            while True:
                if position >= len(text):
                    raise SyslogParseError(
                        f"RFC 5424 structured data parameter {param.group(0)} of [{name.group(0)} has no closing quote")
                char = text[position]
                if char == "\\" and position + 1 < len(text) and text[position + 1] in '"\\]':
                    value.append(text[position + 1])
                    position += 2
                elif char == '"':
                    position += 1
                    break
                else:
                    # RFC 5424 keeps a backslash before any other character as it is
                    value.append(char)
                    position += 1
            params[param.group(0)] = "".join(value)
    return elements, position


def _parse_5424(pri: int, rest: str, received: datetime | None) -> dict:
    version, _, rest = rest.partition(" ")
    if version != "1":
        raise SyslogParseError(f"unsupported RFC 5424 version {version!r} (only 1 exists)")
    header = rest.split(" ", 5)
    names = ("TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID", "STRUCTURED-DATA")
    if len(header) < 6 and header[-1] == "":
        # a line cut right after a space: the next field is missing, not empty
        header = header[:-1]
    if "" in header[:5]:
        raise SyslogParseError(f"RFC 5424 header field {names[header.index('')]} is empty (nil is '-')")
    if len(header) < 6:
        seen = (version + " " + rest).rstrip()
        raise SyslogParseError(f"RFC 5424 header is truncated: {names[len(header)]} is missing after {_excerpt(seen)}")
    stamp, host, app, procid, msgid, tail = header
    if stamp == "-":
        if received is None:
            raise SyslogParseError("RFC 5424 line has a nil timestamp and no received_time was given")
        moment = received
    else:
        moment = _rfc3339(stamp, "RFC 5424")
    structured_data, position = _parse_structured_data(tail, 0)
    if position < len(tail) and tail[position] != " ":
        raise SyslogParseError(
            f"RFC 5424 structured data is followed by {_excerpt(tail[position:])} instead of a space")
    message = tail[position + 1:]
    if message.startswith(BOM):
        message = message[len(BOM):]

    def nil(value: str) -> str | None:
        return None if value == "-" else value

    return _record("rfc5424", pri, moment, nil(host), nil(app), nil(procid), nil(msgid), structured_data, message)


def parse_line(line: str, received_time: str | None = None, tz: str | tzinfo | None = None) -> dict:
    """One syslog line as a record, or :class:`SyslogParseError`.

    The record: ``format`` (rfc3164|rfc5424), ``facility`` and ``severity`` (numbers
    from PRI, None when the line has none), ``event_time`` (ISO 8601 UTC, ms, ``Z``),
    ``host``, ``app``, ``pid`` (a string: RFC 5424 PROCIDs need not be numbers),
    ``msgid``, ``structured_data`` (``{sd_id: {param: value}}`` or None) and ``message``.
    ``received_time`` supplies the year of RFC 3164 lines; ``tz`` (IANA name or tzinfo)
    is the zone of their timestamps, UTC when None.
    """
    if not isinstance(line, str):
        raise SyslogParseError(f"line is a {type(line).__name__}, not text")
    zone = _zone(tz)
    received = _received(received_time)
    text = line.rstrip("\r\n")
    # A BOM belongs before MSG only, but some senders put one in front of the whole line.
    if text.startswith(BOM):
        text = text[len(BOM):]
    if not text.strip():
        raise SyslogParseError("empty line")
    pri = None
    if text.startswith("<"):
        match = _PRI.match(text)
        if not match:
            raise SyslogParseError(f"line starts with '<' but has no valid PRI ('<0>'..'<191>'): {_excerpt(text)}")
        pri = int(match.group(1))
        if pri > 191:
            raise SyslogParseError(f"PRI <{match.group(1)}> is out of range (0..191)")
        text = text[match.end():]
        if not text.strip():
            raise SyslogParseError(f"line ends after PRI <{pri}>: no header or message")
        if re.match(r"\d{1,2}(?: |$)", text):
            return _parse_5424(pri, text, received)
    return _parse_bsd(pri, text, received, zone)


def parse_document(document: dict, tz: str | tzinfo | None = None) -> dict:
    """The record of one ``security.syslog`` document (its ``line`` read with its ``received_time``)."""
    return parse_line(document["line"], document["received_time"], tz)


# --------------------------------------------------------------------------- security events

# a pseudonym where the lake has treated the line (impetus.privacy)
_IP = r"(?P<ip>[0-9A-Fa-f:.]+|ps_[0-9a-f]{20})"
_PORT = r"port (?P<port>\d+)"
_SSH_PATTERNS = (
    ("auth_failure", re.compile(
        rf"^Failed (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from {_IP} {_PORT}(?: ssh2)?")),
    ("auth_failure", re.compile(rf"^Invalid user (?P<user>.*?) from {_IP}(?: {_PORT})?")),
    ("auth_failure", re.compile(
        rf"^Connection closed by (?:authenticating|invalid) user (?P<user>.*?) {_IP} {_PORT} \[preauth\]")),
    ("auth_failure", re.compile(
        rf"^(?:error: )?maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*?) from {_IP} "
        rf"{_PORT}")),
    ("auth_success", re.compile(rf"^Accepted (?P<method>\S+) for (?P<user>\S+) from {_IP} {_PORT}")),
)
_PAM_FAILURE = re.compile(r"^pam_unix\((?P<service>[\w-]+):auth\): authentication failure;(?P<fields>.*)$")
_PAM_FIELD = re.compile(r"(\w+)=(\S*)")
_SUDO_LINE = re.compile(r"^\s*(?P<user>\S+) : (?P<fields>.*)$")
_FIREWALL_FIELD = re.compile(r"\b([A-Z]+)=(\S*)")
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPV6": "icmp"}


def _event(kind: str, record: dict, **fields) -> dict:
    event = {"kind": kind, "event_time": record["event_time"], "host": record["host"], "src_ip": None,
             "src_port": None, "user": None, "dst_ip": None, "dst_port": None, "protocol": None,
             "method": None, "command": None}
    event.update(fields)
    return event


def _port(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and int(text) <= 65535 else None


def _ssh_event(record: dict, message: str) -> dict | None:
    for kind, pattern in _SSH_PATTERNS:
        match = pattern.match(message)
        if match:
            groups = match.groupdict()
            return _event(kind, record, src_ip=groups["ip"], src_port=_port(groups.get("port")),
                          user=groups["user"] or None, method=groups.get("method"))
    pam = _PAM_FAILURE.match(message)
    if pam and pam.group("service") == "sshd":
        fields = dict(_PAM_FIELD.findall(pam.group("fields")))
        return _event("auth_failure", record, src_ip=fields.get("rhost") or None, user=fields.get("user") or None,
                      method="pam")
    return None


def _sudo_event(record: dict, message: str) -> dict | None:
    pam = _PAM_FAILURE.match(message)
    if pam:
        if pam.group("service") != "sudo":
            return None
        fields = dict(_PAM_FIELD.findall(pam.group("fields")))
        return _event("sudo_failure", record, user=fields.get("user") or fields.get("ruser") or None, method="pam")
    line = _SUDO_LINE.match(message)
    if not line or "COMMAND=" not in line.group("fields"):
        return None
    # the command itself may contain " ; ", so only what precedes it is split into fields
    head, command = line.group("fields").split("COMMAND=", 1)
    # "3 incorrect password attempts", "user NOT in sudoers", "command not allowed": sudo refused the user
    refusal = [part.strip() for part in head.split(" ; ") if part.strip() and "=" not in part]
    kind = "sudo_failure" if refusal else "sudo_command"
    return _event(kind, record, user=line.group("user"), command=command.strip(),
                  method=refusal[0] if refusal else None)


def user_spans(record: dict) -> list[tuple[int, int]]:
    """Where the user names are in a parsed record's message: ``[(start, end), ...]``.

    The name an OpenSSH message is about (``for invalid user NAME from``), the ``user=`` and
    ``ruser=`` of a PAM failure, the user at the start of a sudo line and its ``USER=`` target.
    Positions, not values: a user called ``user`` or ``invalid`` must not take the message's
    own words with it when the name is replaced (:func:`impetus.privacy.redact_syslog_line`)."""
    message, app = record["message"], record["app"]
    spans = []
    pam = _PAM_FAILURE.match(message)
    if pam:
        start = pam.start("fields")
        spans += [(start + m.start(2), start + m.end(2)) for m in _PAM_FIELD.finditer(pam.group("fields"))
                  if m.group(1) in ("user", "ruser") and m.group(2)]
    elif app in SSHD_APPS:
        for _, pattern in _SSH_PATTERNS:
            match = pattern.match(message)
            if match:
                if match.group("user"):
                    spans.append(match.span("user"))
                break
    elif app == "sudo":
        line = _SUDO_LINE.match(message)
        if line and "COMMAND=" in line.group("fields"):
            spans.append(line.span("user"))
            head = line.group("fields").split("COMMAND=", 1)[0]
            start = line.start("fields")
            spans += [(start + m.start(1), start + m.end(1)) for m in re.finditer(r"\bUSER=(\S+)", head)]
    return spans


def _firewall_event(record: dict, message: str) -> dict | None:
    if any(f"{field}=" not in message for field in ("IN", "SRC", "DST", "PROTO")):
        return None
    prefix = message.split(" IN=", 1)[0].upper()
    # LOG rules normally sit in front of DROP/REJECT; those that log accepted packets say so in their prefix.
    if "ALLOW" in prefix or "ACCEPT" in prefix or "AUDIT" in prefix:
        return None
    fields = dict(_FIREWALL_FIELD.findall(message))
    protocol = fields.get("PROTO", "").upper()
    return _event("firewall_block", record, src_ip=fields.get("SRC") or None, src_port=_port(fields.get("SPT")),
                  dst_ip=fields.get("DST") or None, dst_port=_port(fields.get("DPT")),
                  protocol=_PROTOCOLS.get(protocol, "other"))


def security_event(record: dict) -> dict | None:
    """The security event in a parsed record, or None when the line is not one.

    The event: ``kind`` (auth_failure|auth_success|sudo_command|sudo_failure|
    firewall_block), ``event_time`` and ``host`` (of the record), ``src_ip``,
    ``src_port``, ``user``, ``dst_ip``, ``dst_port``, ``protocol`` (tcp|udp|icmp|other),
    ``method`` (password|publickey|keyboard-interactive/pam|pam..., or sudo's reason
    for refusing) and ``command``; fields a line does not tell are None.
    """
    message = record["message"]
    app = record["app"]
    if app in SSHD_APPS:
        return _ssh_event(record, message)
    if app == "sudo":
        return _sudo_event(record, message)
    return _firewall_event(record, message)
