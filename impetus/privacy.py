"""Treating personal data before it lands: keyed pseudonyms, free-text redaction, dropped fields.

The Spark landing (:mod:`impetus.landing`) calls :func:`treat_document` on every
valid message; each field is handled by its ``x-privacy`` tag in ``schemas/``:

* ``none``: kept as is;
* ``pseudonymise``: replaced by a keyed pseudonym (:func:`pseudonym`);
* ``redact``: free text in which e-mail addresses, IP and MAC addresses, phone
  numbers, licence plates, @handles and names after a title or "my name is" are
  replaced by keyed pseudonyms (:func:`redact_text`); syslog lines additionally
  have the user names the OpenSSH/sudo lines name replaced (:func:`redact_syslog_line`);
* ``drop`` and ``image``: removed.

Pseudonyms are ``ps_`` and 20 hex digits of HMAC-SHA256 over the normalised value
(an IP in its canonical form, an e-mail address in lower case, a phone number as
digits...), so one person or address gets one pseudonym in every table and topic:
analysts can still count and join, nobody can read the value back without the key,
and erasure (:func:`subject_pseudonyms`) finds every row of a subject by computing
the same pseudonym. Replacing with a pseudonym rather than a fixed ``[redacted]``
keeps that linkability inside text too.

The key is a secret, never in code or git: ``IMPETUS_PSEUDONYM_KEY`` (one key), or
a key file (``Settings.pseudonym_key_file``, one ``<key_id> <hex key>`` per line, the
first is the one in use; older lines remain so erasure can still find rows
pseudonymised before a rotation). The local profile creates a random key file on
first use; the cluster profile requires one. Rotation is described in
docs/lakehouse.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from impetus.schemas import DROPPED_TAGS

PSEUDONYM_PREFIX = "ps_"
PSEUDONYM_HEX = 20
PSEUDONYM = re.compile(r"ps_[0-9a-f]{20}")


class PrivacyConfigError(RuntimeError):
    """No usable pseudonymisation key; the message says how to provide one."""


@dataclass(frozen=True)
class Keyring:
    """Pseudonymisation keys: ``current`` pseudonymises, all of them are tried by erasure."""
    keys: tuple[tuple[str, bytes], ...]

    @property
    def current(self) -> bytes:
        return self.keys[0][1]

    @property
    def current_id(self) -> str:
        return self.keys[0][0]


def key_id(key: bytes) -> str:
    """A public name for a key (its fingerprint), recorded with the rows it pseudonymised."""
    return hashlib.sha256(b"impetus-key-id|" + key).hexdigest()[:8]


def _parse_key(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode("utf-8")
    if len(key) < 16:
        raise PrivacyConfigError(f"the pseudonymisation key in {where} is shorter than 16 bytes; "
                                 f"generate one with `impetus lake keygen` (32 random bytes)")
    return key


def load_keyring(settings, env: dict | None = None, create: bool | None = None) -> Keyring:
    """The keys from ``IMPETUS_PSEUDONYM_KEY`` or the key file (created in the local profile)."""
    env = os.environ if env is None else env
    if env.get("IMPETUS_PSEUDONYM_KEY"):
        key = _parse_key(env["IMPETUS_PSEUDONYM_KEY"], "IMPETUS_PSEUDONYM_KEY")
        return Keyring(((key_id(key), key),))
    path = Path(settings.pseudonym_key_file)
    if not path.is_file():
        if create is None:
            create = settings.profile == "local"
        if not create:
            raise PrivacyConfigError(
                f"no pseudonymisation key: set IMPETUS_PSEUDONYM_KEY, or put a key file at {path} "
                f"(IMPETUS_PSEUDONYM_KEY_FILE); `impetus lake keygen` writes one")
        write_key_file(path)
    keys = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        key = _parse_key(parts[-1], f"{path} line {number}")
        keys.append((parts[0] if len(parts) > 1 else key_id(key), key))
    if not keys:
        raise PrivacyConfigError(f"the key file {path} holds no key; `impetus lake keygen --rotate` adds one")
    return Keyring(tuple(keys))


def write_key_file(path: Path, rotate: bool = False) -> str:
    """Create the key file, or with ``rotate`` put a new key in front of the existing ones."""
    path = Path(path)
    key = secrets.token_bytes(32)
    line = f"{key_id(key)} {key.hex()}\n"
    old = path.read_text(encoding="utf-8") if rotate and path.is_file() else ""
    if path.is_file() and not rotate:
        raise PrivacyConfigError(f"{path} exists; use --rotate to add a new key in front of it")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(line + old)
    return key_id(key)


# --------------------------------------------------------------------------- pseudonyms

def normalise(value: str) -> str:
    """The canonical form of an identifier, so that spellings of one value share a pseudonym."""
    text = str(value).strip()
    try:
        return ipaddress.ip_address(text.strip("[]")).compressed
    except ValueError:
        pass
    if "@" in text and " " not in text:
        return text.lower()
    if _MAC.fullmatch(text):
        return re.sub(r"[^0-9a-f]", "", text.lower())
    return text


def pseudonym(value: str, key: bytes) -> str:
    """``ps_`` + 20 hex digits of HMAC-SHA256(key, normalised value)."""
    digest = hmac.new(key, normalise(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX]


def subject_pseudonyms(identifier: str, keyring: Keyring) -> list[str]:
    """Every pseudonym ``identifier`` may carry in the lake (one per key in the ring)."""
    return [pseudonym(identifier, key) for _, key in keyring.keys]


# --------------------------------------------------------------------------- free text

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_MAC = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){0,8}")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)")
# candidates only: ipaddress decides (times like 10:00:00 are not addresses)
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                   r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w])"
                    r"|(?<![\w-])0\d{1,4}[ .-]\d{3,4}[ .-]?\d{3,4}(?![\w-])"
                    r"|(?<![\w-])\d{2} \d{2} \d{2} \d{2}(?![\w-])")
# Norwegian (AB 12345), Italian (AB 123 CD), New Zealand (ABC123) plates
_PLATE = re.compile(r"(?<![\w-])(?:[A-Z]{2} ?\d{3} ?[A-Z]{2}|[A-Z]{2} ?\d{5}|[A-Z]{3} ?\d{3})(?![\w-])")
_HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,30}\b")
_TITLED_NAME = re.compile(
    r"\b(?P<lead>(?:Mr|Mrs|Ms|Miss|Dr|Prof|Sig|Sig\.ra|Dott|Herr|Fru|Frau)\.? |[Mm]y name is |[Ii] am |"
    r"[Mm]i chiamo |[Jj]eg heter )(?P<name>[A-ZÆØÅÀ-Ý][a-zæøåà-ÿ'-]+(?: [A-ZÆØÅÀ-Ý][a-zæøåà-ÿ'-]+)?)")


def _is_ipv6(text: str) -> bool:
    if text.count(":") < 2:
        return False
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _phone_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def redact_text(text: str, key: bytes) -> str:
    """``text`` with every personal value found replaced by its pseudonym."""
    if not text:
        return text

    def replace(match: re.Match) -> str:
        return pseudonym(match.group(0), key)

    text = _EMAIL.sub(replace, text)
    text = _MAC.sub(replace, text)
    text = _IPV6.sub(lambda m: pseudonym(m.group(0), key) if _is_ipv6(m.group(0)) else m.group(0), text)
    text = _IPV4.sub(replace, text)
    text = _PHONE.sub(lambda m: pseudonym(_phone_digits(m.group(0)), key)
                      if 8 <= len(_phone_digits(m.group(0))) <= 15 else m.group(0), text)
    text = _PLATE.sub(lambda m: pseudonym(m.group(0).replace(" ", ""), key), text)
    text = _HANDLE.sub(lambda m: pseudonym(m.group(0).lower(), key), text)
    text = _TITLED_NAME.sub(lambda m: m.group("lead") + pseudonym(m.group("name"), key), text)
    return text


# how much raw text is redacted for an excerpt of n characters: redaction at most triples the length
# of the shortest identifiers it replaces (1.1.1.1 -> a 23-character pseudonym), so the first n
# characters of the redacted text come from well inside the raw text redacted
_EXCERPT_RAW_FACTOR = 4
_PARTIAL_PSEUDONYM = re.compile(r"ps_[0-9a-f]{0,19}$")


def redacted_excerpt(text: str, limit: int, key: bytes) -> str:
    """The first ``limit`` characters of ``text`` redacted, never cutting through a value.

    The raw text is redacted before it is cut (a raw identifier cut in two would no longer be
    recognised, and its first part would be kept raw), and a pseudonym the cut would split is
    dropped (a part of one would escape erasure, which looks for whole pseudonyms)."""
    excerpt = redact_text(text[: limit * _EXCERPT_RAW_FACTOR], key)
    if len(excerpt) <= limit:
        return excerpt
    excerpt = excerpt[:limit]
    tail = _PARTIAL_PSEUDONYM.search(excerpt)
    return excerpt[: tail.start()] if tail else excerpt


def redact_syslog_line(line: str, key: bytes, received_time: str | None = None) -> str:
    """A syslog line with the user names its OpenSSH/sudo message names pseudonymised, then
    :func:`redact_text` (addresses, e-mail...). The syslog header (time, host, program) stays
    readable so the line can still be parsed (:mod:`impetus.detect.syslog` accepts pseudonyms
    where it expects an address)."""
    from impetus.detect.syslog import SyslogParseError, parse_line, user_spans

    try:
        record = parse_line(line, received_time)
    except (SyslogParseError, ValueError):
        record = None
    offset = line.rfind(record["message"]) if record and record.get("message") else -1
    if offset >= 0:
        spans = [(offset + start, offset + end) for start, end in user_spans(record)]
        users = {line[start:end] for start, end in spans} - {""}
        # the names where the message puts them, right to left so the positions stay valid
        for start, end in sorted(spans, reverse=True):
            name = line[start:end]
            if not PSEUDONYM.fullmatch(name):
                line = line[:start] + pseudonym(name, key) + line[end:]
        # and wherever else a name is a value or a path component (PWD=/home/bob)
        for user in sorted(users, key=len, reverse=True):
            if not PSEUDONYM.fullmatch(user):
                line = re.sub(rf"(?<=[/=]){re.escape(user)}(?![\w-])", pseudonym(user, key), line)
    return redact_text(line, key)


# --------------------------------------------------------------------------- documents

def _treat_value(value, tag: str, key: bytes, topic: str, document: dict):
    if value is None:
        return None
    if tag == "pseudonymise":
        return pseudonym(str(value), key)
    if tag == "redact":
        if isinstance(value, str):
            if topic == "security.syslog":
                return redact_syslog_line(value, key, document.get("received_time"))
            return redact_text(value, key)
        if isinstance(value, dict):
            return {k: _treat_value(v, tag, key, topic, document) for k, v in value.items()}
        if isinstance(value, list):
            return [_treat_value(v, tag, key, topic, document) for v in value]
        return value
    return value


def treat_document(schema: dict, document: dict, key: bytes, topic: str | None = None) -> dict:
    """A copy of a valid ``document`` with every field treated by its privacy tag."""
    topic = topic or schema.get("title", "")
    return _treat_object(schema, document, key, topic, document)


def _treat_object(schema: dict, document: dict, key: bytes, topic: str, root: dict) -> dict:
    properties = schema.get("properties", {})
    treated = {}
    for name, value in document.items():
        prop = properties.get(name, {})
        tag = prop.get("x-privacy", "none")
        if tag in DROPPED_TAGS:
            continue
        if isinstance(value, dict) and "properties" in prop and tag == "none":
            treated[name] = _treat_object(prop, value, key, topic, root)
        else:
            treated[name] = _treat_value(value, tag, key, topic, root)
    return treated
