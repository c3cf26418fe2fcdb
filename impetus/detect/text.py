"""Text intelligence over social-media posts and cyber-threat-intelligence items.

One post of ``social.posts`` or ``cti.posts`` goes through three analyses, each
driven by runtime rules of ``schemas/rules.json`` (see :data:`RULE_KINDS`):

* **watched assets** (``watched_asset``): indicators of compromise are extracted
  from the text (:func:`extract_indicators`, defanged forms included) and compared
  with the tenant's own assets: its domains, address ranges, the CVEs of products
  it runs, hashes and accounts. A hit is an ``indicator_match`` alert.
* **investigations** (``investigation``): keywords, phrases or regular expressions
  an analyst follows (an event, a venue, protests, plate numbers). A hit is an
  ``investigation_hit`` alert.
* **threat language** (``threat_language``): a small threat lexicon gated by the
  VADER sentiment score, so that neither an angry complaint without threat words
  nor an enthusiastic "the show was the bomb" raises anything. Social posts only.

Everything is stateless per post: :func:`analyse_post` takes the post and the
rules of its tenant (the streaming job keeps them in broadcast state and filters
them with :func:`rules_for`). Rules are compiled once with :func:`compile_rules`;
:func:`rule_errors` validates one rule before the CLI publishes it. Called by the
text-intelligence streaming job and by the evaluation over the synthetic replay
(``impetus/replay/text.py``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit


from impetus.alerts import alert_id, make_alert
from impetus.schemas import document_error

TOPICS = ("social.posts", "cti.posts")
INDICATOR_TYPES = ("cve", "ipv4", "ipv6", "domain", "url", "md5", "sha1", "sha256", "email")
SEVERITIES = ("informational", "low", "medium", "high", "critical")
MATCH_MODES = ("keyword", "phrase", "regex")

RULE_KINDS = {
    "watched_asset": {
        "description": "Raise indicator_match when a post or CTI item mentions one of the tenant's own assets "
                       "(defanged mentions included). One alert per (rule, indicator found).",
        "params": {
            "indicator_type": (None, "required; one of cve, ipv4, ipv6, domain, url, md5, sha1, sha256, email"),
            "value": (None, "required; an exact indicator, a CIDR for ipv4/ipv6 (10.20.0.0/16), or for domain a "
                            "parent domain that also matches every subdomain (oslo.example matches vpn.oslo.example)"),
        },
    },
    "investigation": {
        "description": "Raise investigation_hit when a post matches the terms an analyst follows. One alert per "
                       "(rule, post), with the matched terms.",
        "params": {
            "match": ("keyword", "keyword: any of the comma-separated terms, whole words, case-insensitive; "
                                 "phrase: the exact phrase, case-insensitive, any whitespace between words; "
                                 "regex: a Python regular expression, case-sensitive unless it starts with (?i)"),
            "terms": (None, "required; the keywords, the phrase or the regular expression"),
            "severity": ("medium", "severity of the alert: informational, low, medium, high or critical"),
            "title": (None, "optional name of the investigation, shown in the alert title"),
        },
    },
    "threat_language": {
        "description": "Raise threat_language when a social post uses threat words (bomb, shoot, kill, stab, "
                       "burn down...) in a negative tone. Sentiment alone never alerts.",
        "params": {
            "min_negative": (-0.5, "the VADER compound score (-1..1) must be at or below this"),
            "min_terms": (1, "at least this many distinct threat-lexicon terms must occur (>= 1)"),
        },
    },
}

# A small built-in list on purpose: a dotted word is a domain only if it ends in one of
# these, which keeps file names (report.pdf, setup.py, README.md, invoice.zip) out.
# Reserved test TLDs are included so synthetic and test data can stay in reserved space.
KNOWN_TLDS = frozenset("""
    com net org info biz io co me app dev cloud online site xyz top club shop store tech live
    gov edu mil int eu uk de fr it es nl be ch se no dk fi ru su cn jp kr br au nz ca us
    onion example test invalid
""".split())

# --------------------------------------------------------------------------- indicator extraction

# Defanged notations (hxxp, [:], [://], [.], (.), {.}, [dot], [at], [@]); spaces are only eaten around
# explicit brackets ("example [.] com"), never across lines.
_DEFANG = re.compile(
    r"(?P<scheme>\bh(?:xx|\*\*)p(?P<tls>s?)(?=\[?:))"
    r"|(?P<sep>\[://\]|\[:\])"
    r"|(?P<dot>[ \t]*[\[({][ \t]*(?:\.|dot)[ \t]*[\])}][ \t]*)"
    r"|(?P<at>[ \t]*[\[({][ \t]*(?:@|at)[ \t]*[\])}][ \t]*)",
    re.IGNORECASE)

_LABELS = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}"
# after a domain: no more name characters, and no further ".label" (else a.example.foo would yield a.example)
_DOMAIN_END = r"(?![\w@-]|\.\w)"
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@" + _LABELS + _DOMAIN_END, re.IGNORECASE)
_DOMAIN = re.compile(r"(?<![\w@.-])" + _LABELS + _DOMAIN_END, re.IGNORECASE)
# 1.2.3.4 inside 1.2.3.4.5 is a version number, not an address
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9a-f]{0,4}:){2,7}(?:[0-9a-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)",
                   re.IGNORECASE)
_CVE = re.compile(r"(?<![\w-])CVE-\d{4}-\d{4,7}(?![\w-])", re.IGNORECASE)
_HASHES = (("md5", re.compile(r"(?<!\w)[0-9a-f]{32}(?!\w)", re.IGNORECASE)),
           ("sha1", re.compile(r"(?<!\w)[0-9a-f]{40}(?!\w)", re.IGNORECASE)),
           ("sha256", re.compile(r"(?<!\w)[0-9a-f]{64}(?!\w)", re.IGNORECASE)))
_HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}
_URL_TRAILING = ".,;:!?'\""
_BRACKETS = {")": "(", "]": "[", "}": "{"}


def refang(text: str) -> str:
    """The text with defanged notations restored (``hxxp`` -> ``http``, ``[.]``/``(.)``/``[dot]`` -> ``.``,
    ``[:]`` -> ``:``, ``[at]``/``[@]`` -> ``@``)."""
    return _refang(text)[0]


def _refang(text: str):
    """Refanged text and, per refanged character, the (start, end) of what it came from in ``text``.

    The offsets are None when nothing was defanged (positions are then the same).
    """
    matches = list(_DEFANG.finditer(text))
    if not matches:
        return text, None
    pieces, starts, ends = [], [], []
    position = 0
    for match in matches:
        pieces.append(text[position:match.start()])
        starts.extend(range(position, match.start()))
        ends.extend(range(position + 1, match.start() + 1))
        if match.group("scheme"):
            replacement = "http" + match.group("tls")
        elif match.group("sep"):
            replacement = match.group("sep").strip("[]")
        elif match.group("dot"):
            replacement = "."
        else:
            replacement = "@"
        pieces.append(replacement)
        starts.extend([match.start()] * len(replacement))
        ends.extend([match.end()] * len(replacement))
        position = match.end()
    pieces.append(text[position:])
    starts.extend(range(position, len(text)))
    ends.extend(range(position + 1, len(text) + 1))
    return "".join(pieces), (starts, ends)


def _is_domain(name: str) -> bool:
    return "." in name and name.rsplit(".", 1)[1] in KNOWN_TLDS


def _ip_type(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return "ipv4" if address.version == 4 else "ipv6"


def _trim_url(url: str) -> str:
    while url:
        last = url[-1]
        if last in _URL_TRAILING or (last in _BRACKETS and url.count(_BRACKETS[last]) < url.count(last)):
            url = url[:-1]
        else:
            break
    return url


def _url_candidates(text: str):
    for match in _URL.finditer(text):
        raw = _trim_url(match.group(0))
        try:
            parts = urlsplit(raw)
            host = parts.hostname or ""
        except ValueError:
            continue
        if not host:
            continue
        scheme_end = len(parts.scheme) + 3
        value = parts.scheme.lower() + "://" + parts.netloc.lower() + raw[scheme_end + len(parts.netloc):]
        yield "url", value, match.start(), match.start() + len(raw)
        # the host is an indicator of its own, so a watched domain or range also catches links
        host_at = match.start() + raw.lower().find(host, scheme_end)
        host_type = _ip_type(host) or ("domain" if _is_domain(host) else None)
        if host_type:
            yield host_type, str(ipaddress.ip_address(host)) if host_type != "domain" else host, \
                host_at, host_at + len(host)


def _candidates(text: str):
    """(type, normalised value, start, end) of every indicator in already refanged text."""
    yield from _url_candidates(text)
    for match in _EMAIL.finditer(text):
        address = match.group(0).lower()
        domain = address.rsplit("@", 1)[1]
        if _is_domain(domain):
            yield "email", address, match.start(), match.end()
            yield "domain", domain, match.end() - len(domain), match.end()
    for match in _DOMAIN.finditer(text):
        name = match.group(0).lower()
        if _is_domain(name):
            yield "domain", name, match.start(), match.end()
    for pattern, kind in ((_IPV4, "ipv4"), (_IPV6, "ipv6")):
        for match in pattern.finditer(text):
            candidate = match.group(0)
            if kind == "ipv6" and not any(c not in ":." for c in candidate):
                continue
            if _ip_type(candidate) == kind:
                yield kind, str(ipaddress.ip_address(candidate)), match.start(), match.end()
    for match in _CVE.finditer(text):
        yield "cve", match.group(0).upper(), match.start(), match.end()
    for kind, pattern in _HASHES:
        for match in pattern.finditer(text):
            yield kind, match.group(0).lower(), match.start(), match.end()


def extract_indicators(text: str) -> list[dict]:
    """Indicators in ``text``: ``[{"type", "value", "span": (start, end)}, ...]``.

    Values are normalised (refanged, CVE ids upper-case, domains, e-mail addresses and
    hashes lower-case, IP addresses in canonical form); spans index the original text.
    Each (type, value) appears once, at its first occurrence, in order of appearance.
    The host of a URL and the domain of an e-mail address are reported as indicators too.
    """
    refanged, offsets = _refang(text)
    found = sorted(_candidates(refanged), key=lambda c: (c[2], -c[3], INDICATOR_TYPES.index(c[0])))
    indicators, seen = [], set()
    for kind, value, start, end in found:
        if (kind, value) in seen:
            continue
        seen.add((kind, value))
        span = (offsets[0][start], offsets[1][end - 1]) if offsets else (start, end)
        indicators.append({"type": kind, "value": value, "span": span})
    return indicators


# --------------------------------------------------------------------------- rules

class RuleError(ValueError):
    """A text rule that cannot be used; the message says which parameter is wrong and why."""


@dataclass(frozen=True)
class WatchedAsset:
    rule_id: str
    version: str
    indicator_type: str
    value: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def match(self, indicator: dict) -> str | None:
        """How ``indicator`` matches this asset (exact, cidr, suffix), or None."""
        if indicator["type"] != self.indicator_type:
            return None
        value = indicator["value"]
        if value == self.value:
            return "exact"
        if self.network is not None and ipaddress.ip_address(value) in self.network:
            return "cidr"
        if self.indicator_type == "domain" and value.endswith("." + self.value):
            return "suffix"
        return None


@dataclass(frozen=True)
class Investigation:
    rule_id: str
    version: str
    match: str
    terms: str
    pattern: re.Pattern
    severity: str
    title: str | None

    def find(self, text: str) -> tuple[list[str], int | None]:
        """Distinct matched terms in order of appearance, and where the first match starts."""
        terms, first = [], None
        for hit in self.pattern.finditer(text):
            if not hit.group(0):
                continue
            # keywords and phrases are reported as configured (lower case, single spaces), regex hits verbatim
            term = hit.group(0) if self.match == "regex" else " ".join(hit.group(0).lower().split())
            first = hit.start() if first is None else first
            if term not in terms:
                terms.append(term)
        return terms, first


@dataclass(frozen=True)
class ThreatLanguage:
    rule_id: str
    version: str
    min_negative: float
    min_terms: int


@dataclass
class CompiledRules:
    """The text rules of one tenant, parsed and compiled once; picklable plain data.

    ``errors`` maps the id of every rule that was skipped to the reason.
    """
    watched: list[WatchedAsset] = field(default_factory=list)
    investigations: list[Investigation] = field(default_factory=list)
    threats: list[ThreatLanguage] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _params(rule: dict) -> dict:
    kind = rule["kind"]
    params = rule.get("params")
    if not isinstance(params, dict):
        raise RuleError("params must be an object")
    known = RULE_KINDS[kind]["params"]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise RuleError(f"unknown params {', '.join(unknown)} for kind {kind} (known: {', '.join(known)})")
    values = {name: params.get(name, default) for name, (default, _) in known.items()}
    for name, (default, meaning) in known.items():
        if meaning.startswith("required") and values[name] in (None, ""):
            raise RuleError(f"params.{name} is required")
    return values


def _watched_asset(rule: dict, params: dict) -> WatchedAsset:
    kind, value = params["indicator_type"], params["value"]
    if kind not in INDICATOR_TYPES:
        raise RuleError(f"params.indicator_type {kind!r} is not one of {', '.join(INDICATOR_TYPES)}")
    if not isinstance(value, str):
        raise RuleError("params.value must be a string")
    value = refang(value.strip())
    network = None
    if kind in ("ipv4", "ipv6"):
        try:
            network = ipaddress.ip_network(value) if "/" in value else None
            value = str(network) if network else str(ipaddress.ip_address(value))
        except ValueError as err:
            raise RuleError(f"params.value {value!r} is not an {kind} address or CIDR range: {err}") from None
        if (network or ipaddress.ip_address(value)).version != int(kind[-1]):
            raise RuleError(f"params.value {value!r} is not an {kind} address or range")
    elif kind == "cve":
        value = value.upper()
        if not re.fullmatch(r"CVE-\d{4}-\d{4,7}", value):
            raise RuleError(f"params.value {value!r} is not a CVE id like CVE-2024-3400")
    elif kind in _HASH_LENGTHS:
        value = value.lower()
        if not re.fullmatch(f"[0-9a-f]{{{_HASH_LENGTHS[kind]}}}", value):
            raise RuleError(f"params.value is not a {kind} hash ({_HASH_LENGTHS[kind]} hex digits)")
    elif kind == "domain":
        value = value.lower().lstrip("*").strip(".")
        if not re.fullmatch(_LABELS, value) or not _is_domain(value):
            raise RuleError(f"params.value {value!r} is not a domain with a known top-level domain")
    elif kind == "email":
        value = value.lower()
        if not _EMAIL.fullmatch(value) or not _is_domain(value.rsplit("@", 1)[1]):
            raise RuleError(f"params.value {value!r} is not an e-mail address")
    else:
        found = [i for i in extract_indicators(value) if i["type"] == "url"]
        if not found or found[0]["span"] != (0, len(value)):
            raise RuleError(f"params.value {value!r} is not an http(s) or ftp URL")
        value = found[0]["value"]
    return WatchedAsset(rule["rule_id"], rule["updated_at"], kind, value, network)


def _investigation(rule: dict, params: dict) -> Investigation:
    match, terms, severity, title = params["match"], params["terms"], params["severity"], params["title"]
    if match not in MATCH_MODES:
        raise RuleError(f"params.match {match!r} is not one of {', '.join(MATCH_MODES)}")
    if not isinstance(terms, str):
        raise RuleError("params.terms must be a string")
    if severity not in SEVERITIES:
        raise RuleError(f"params.severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    if title is not None and not isinstance(title, str):
        raise RuleError("params.title must be a string")
    if match == "regex":
        try:
            pattern = re.compile(terms)
        except (re.error, OverflowError, RecursionError) as err:
            raise RuleError(f"params.terms is not a valid regular expression: {err}") from None
        if pattern.search("") is not None:
            raise RuleError("params.terms matches the empty string, so it would match every post")
    else:
        words = [" ".join(t.split()) for t in (terms.split(",") if match == "keyword" else [terms])]
        words = [w for w in words if w]
        if not words:
            raise RuleError(f"params.terms has no {match}")
        # longest first, so that "protest march" wins over "protest" where both are listed
        alternatives = sorted({w.lower() for w in words}, key=lambda w: (-len(w), w))
        body = "|".join(r"\s+".join(re.escape(part) for part in w.split()) for w in alternatives)
        pattern = re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)
    return Investigation(rule["rule_id"], rule["updated_at"], match, terms, pattern, severity, title)


def _threat_language(rule: dict, params: dict) -> ThreatLanguage:
    min_negative, min_terms = params["min_negative"], params["min_terms"]
    if isinstance(min_negative, bool) or not isinstance(min_negative, (int, float)) or not -1 <= min_negative <= 1:
        raise RuleError(f"params.min_negative {min_negative!r} must be a number between -1 and 1")
    if isinstance(min_terms, bool) or not isinstance(min_terms, int) or min_terms < 1:
        raise RuleError(f"params.min_terms {min_terms!r} must be an integer >= 1 (sentiment alone never alerts)")
    return ThreatLanguage(rule["rule_id"], rule["updated_at"], float(min_negative), min_terms)


_BUILDERS = {"watched_asset": _watched_asset, "investigation": _investigation, "threat_language": _threat_language}


def _compile_rule(rule: dict):
    for name in ("rule_id", "kind", "updated_at"):
        if not isinstance(rule.get(name), str) or not rule.get(name):
            raise RuleError(f"{name} must be a non-empty string")
    if rule["kind"] not in RULE_KINDS:
        raise RuleError(f"kind {rule['kind']!r} is not a text rule kind ({', '.join(RULE_KINDS)})")
    return _BUILDERS[rule["kind"]](rule, _params(rule))


def rule_errors(rule: dict) -> str | None:
    """Why ``rule`` cannot be published (schema or parameters), or None when it is usable.

    Only the kinds of :data:`RULE_KINDS` are accepted: dispatch other kinds to their own module.
    The message does not repeat the rule id (the caller names the rule). A deletion marker
    (``"deleted": true``) needs no usable parameters.
    """
    if not isinstance(rule, dict):
        return f"a rule must be an object, not {type(rule).__name__}"
    error = document_error("rules", rule)
    if error or rule.get("deleted"):
        return error
    try:
        _compile_rule(rule)
    except RuleError as err:
        return str(err)
    return None


def compile_rules(rules) -> CompiledRules:
    """Parse the text rules among ``rules`` (an iterable of rule documents, or a rule_id -> rule mapping).

    Disabled and deleted rules and kinds of other detectors are skipped silently; unusable text rules are
    skipped and reported in ``errors``, never raised, so one bad rule cannot stop the job.
    Rules are kept in rule_id order so that alerts come out in the same order on every run.
    """
    compiled = CompiledRules()
    targets = {WatchedAsset: compiled.watched, Investigation: compiled.investigations,
               ThreatLanguage: compiled.threats}
    documents = rules.values() if isinstance(rules, Mapping) else rules
    for rule in sorted(documents, key=lambda r: str(r.get("rule_id"))):
        if rule.get("kind") not in RULE_KINDS or rule.get("enabled") is False or rule.get("deleted"):
            continue
        try:
            parsed = _compile_rule(rule)
        except RuleError as err:
            compiled.errors[str(rule.get("rule_id"))] = str(err)
            continue
        targets[type(parsed)].append(parsed)
    return compiled


def rules_for(tenant: str, all_rules) -> list[dict]:
    """The enabled text rules that apply to ``tenant``, by rule_id.

    Every ``watched_asset`` and ``investigation`` rule of the tenant or of ``*`` applies.
    ``threat_language`` is one parameter set per tenant (as in ``impetus.rules.RuleBook``):
    the tenant's own rule if it has one (the first by id), else the one for ``*``.
    ``all_rules`` is an iterable of rule documents or a rule_id -> rule mapping (broadcast
    state); deleted rules and kinds of other detectors are left out.
    """
    documents = all_rules.values() if isinstance(all_rules, Mapping) else all_rules
    chosen = sorted((r for r in documents if r.get("enabled") is True and not r.get("deleted")
                     and r.get("kind") in RULE_KINDS and r.get("tenant") in (tenant, "*")),
                    key=lambda r: r["rule_id"])
    threat = sorted((r for r in chosen if r["kind"] == "threat_language"), key=lambda r: r["tenant"] == "*")
    return [r for r in chosen if r["kind"] != "threat_language" or r is threat[0]]


def _compiled(rules) -> CompiledRules:
    return rules if isinstance(rules, CompiledRules) else compile_rules(rules)


# --------------------------------------------------------------------------- alerts

# Words that say an indicator is being used against someone rather than merely mentioned.
_EXPLOITATION = re.compile(
    r"(?<!\w)(?:exploit\w*|0-?days?|zero-days?|poc|proof[- ]of[- ]concept|dump(?:s|ed)?|leak(?:s|ed)?|rce"
    r"|in the wild)(?!\w)", re.IGNORECASE)
_BASE_SEVERITY = {"cve": "high", "ipv4": "high", "ipv6": "high", "domain": "high", "url": "high",
                  "email": "medium", "md5": "medium", "sha1": "medium", "sha256": "medium"}
_ESCALATED = {"medium": "high", "high": "critical"}
_RESPONSES = {
    "cve": "Patch {value} on every system running the affected product (or apply the vendor mitigation now) "
           "and hunt for signs of exploitation.",
    "ipv4": "Check {value} for compromise, restrict its exposure at the perimeter firewall, and block traffic "
            "to or from it if it is hostile.",
    "domain": "Verify DNS, certificates and login pages of {value}; block lookalike or malicious hosts at the "
              "resolver and proxy, and rotate credentials if logins were exposed.",
    "url": "Block {value} at the web proxy, find who visited it, and reset their credentials if it is a "
           "phishing page.",
    "email": "Rotate the credentials of {value}, revoke its sessions and enforce multi-factor authentication.",
    "hash": "Block the file with {type} {value} on endpoint protection and sweep hosts for it.",
}
_COUNTERMEASURES = {kind: _RESPONSES.get(kind) or _RESPONSES["ipv4" if kind == "ipv6" else "hash"]
                    for kind in INDICATOR_TYPES}
_INVESTIGATION_COUNTERMEASURE = ("Review the post for the investigation and preserve it as evidence; brief the "
                                 "field commander if it announces something at a place and time.")
_THREAT_COUNTERMEASURE = ("Refer the post to the duty officer for a threat assessment and preserve it (text, "
                          "author, time, link) as evidence before it can be deleted.")


def _check_topic(topic: str) -> None:
    if topic not in TOPICS:
        raise ValueError(f"topic {topic!r} is not one of {', '.join(TOPICS)}")


def _post_fields(post: dict, topic: str) -> tuple[str, dict]:
    where = {"topic": topic, "post_id": post["post_id"]}
    if topic == "social.posts":
        where["platform"] = post.get("platform", "")
    else:
        where["source"] = post.get("source", "")
        if post.get("url"):
            where["url"] = post["url"]
    return f"{topic}:{post['post_id']}", where


def _excerpt(text: str, start: int, end: int, margin: int = 60) -> str:
    return " ".join(text[max(0, start - margin):end + margin].split())


def exploitation_terms(text: str) -> list[str]:
    """Words of exploitation (exploit, 0day, PoC, dump, leak...) in ``text``, lower-case, distinct, in order."""
    terms = []
    for hit in _EXPLOITATION.finditer(text):
        term = " ".join(hit.group(0).lower().split())
        if term not in terms:
            terms.append(term)
    return terms


def indicator_alerts(post: dict, topic: str, rules, detected_at: datetime | None = None) -> list[dict]:
    """``indicator_match`` alerts: one per (watched_asset rule, indicator of the post it matches)."""
    _check_topic(topic)
    compiled = _compiled(rules)
    if not compiled.watched:
        return []
    entity_id, where = _post_fields(post, topic)
    text = post["text"]
    indicators = extract_indicators(text)
    exploitation = exploitation_terms(text)
    alerts = []
    for asset in compiled.watched:
        for indicator in indicators:
            how = asset.match(indicator)
            if how is None:
                continue
            kind, value = indicator["type"], indicator["value"]
            severity = _BASE_SEVERITY[kind]
            if exploitation:
                severity = _ESCALATED[severity]
            watched = "" if value == asset.value else f" (watched {asset.value})"
            alert = make_alert(
                tenant=post["tenant"],
                category="indicator_match",
                severity=severity,
                title=f"Watched {kind} {value}{watched} mentioned in {topic} {post['post_id']}",
                detector={"kind": "rule", "name": asset.rule_id, "version": asset.version},
                entity={"type": "post", "id": entity_id},
                event_time=post["event_time"],
                evidence={**where, "indicator_type": kind, "indicator": value, "watched_value": asset.value,
                          "match": how, "exploitation_terms": ", ".join(exploitation),
                          "excerpt": _excerpt(text, *indicator["span"])},
                countermeasure=_COUNTERMEASURES[kind].format(type=kind, value=value),
                detected_at=detected_at,
            )
            # One rule can hit several indicators of one post (two hosts of a watched range): each is its
            # own finding, so the indicator joins the id key; detector.name stays the rule id.
            alert["alert_id"] = alert_id(f"{asset.rule_id}#{kind}:{value}", "post", entity_id, post["event_time"])
            alerts.append(alert)
    return alerts


def investigation_alerts(post: dict, topic: str, rules, detected_at: datetime | None = None) -> list[dict]:
    """``investigation_hit`` alerts: one per investigation rule the post matches."""
    _check_topic(topic)
    compiled = _compiled(rules)
    if not compiled.investigations:
        return []
    entity_id, where = _post_fields(post, topic)
    text = post["text"]
    alerts = []
    for investigation in compiled.investigations:
        terms, first = investigation.find(text)
        if not terms:
            continue
        name = investigation.title or f"Investigation {investigation.rule_id}"
        shown = ", ".join(terms)
        alerts.append(make_alert(
            tenant=post["tenant"],
            category="investigation_hit",
            severity=investigation.severity,
            title=f"{name}: {shown[:120]} in {topic} {post['post_id']}",
            detector={"kind": "rule", "name": investigation.rule_id, "version": investigation.version},
            entity={"type": "post", "id": entity_id},
            event_time=post["event_time"],
            evidence={**where, "match": investigation.match, "matched_terms": shown[:1024],
                      "match_count": len(terms), "excerpt": _excerpt(text, first, first)},
            countermeasure=_INVESTIGATION_COUNTERMEASURE,
            detected_at=detected_at,
        ))
    return alerts


# Threat lexicon: canonical term -> pattern of its forms, matched as whole words, case-insensitive.
THREAT_LEXICON = {
    "bomb": r"bomb(?:s|ed|ing)?",
    "explosive": r"explosives?",
    "detonate": r"detonat(?:e|es|ed|ing)",
    "blow up": r"blow(?:s|ing)?(?:\s+(?:it|them|this|that|the\s+\w+))?\s+up",
    "shoot": r"shoot(?:s|ing)?",
    "gun": r"guns?|gunman|gunmen",
    "kill": r"kill(?:s|ing)?",
    "murder": r"murder(?:s|ed|ing)?",
    "stab": r"stab(?:s|bed|bing)?",
    "weapon": r"weapons?",
    "attack the": r"attack(?:ing)?\s+the",
    "burn down": r"burn(?:s|ing|t)?(?:\s+(?:it|them|this|that|the\s+\w+))?\s+down",
    "massacre": r"massacres?",
    "hostage": r"hostages?",
    "grenade": r"grenades?",
}
_THREAT_PATTERNS = [(term, re.compile(rf"(?<!\w)(?:{forms})(?!\w)", re.IGNORECASE))
                    for term, forms in THREAT_LEXICON.items()]
_analyser = None


def threat_terms(text: str) -> list[str]:
    """Distinct threat-lexicon terms (canonical form) in ``text``, in order of first appearance."""
    hits = []
    for term, pattern in _THREAT_PATTERNS:
        found = pattern.search(text)
        if found:
            hits.append((found.start(), term))
    return [term for _, term in sorted(hits)]


def sentiment_compound(text: str) -> float:
    """VADER compound score of ``text``: -1 (most negative) to 1 (most positive)."""
    global _analyser
    if _analyser is None:
        # loading the lexicon is the expensive part; one analyser serves every post of the process
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _analyser = SentimentIntensityAnalyzer()
    return _analyser.polarity_scores(text)["compound"]


def threat_alerts(post: dict, topic: str, rules, detected_at: datetime | None = None) -> list[dict]:
    """``threat_language`` alerts for a social post: one per threat_language rule it meets.

    CTI items are never scored: advisories describe attacks by nature ("kill chain",
    "attack the VPN"), so threat words there are reporting, not threats.
    """
    _check_topic(topic)
    compiled = _compiled(rules)
    if topic != "social.posts" or not compiled.threats:
        return []
    entity_id, where = _post_fields(post, topic)
    terms = threat_terms(post["text"])
    if not terms:
        return []
    compound = None
    alerts = []
    for rule in compiled.threats:
        if len(terms) < rule.min_terms:
            continue
        compound = sentiment_compound(post["text"]) if compound is None else compound
        if compound > rule.min_negative:
            continue
        severity = "critical" if len(terms) >= 2 and compound <= -0.8 else "high"
        alerts.append(make_alert(
            tenant=post["tenant"],
            category="threat_language",
            severity=severity,
            title=f"Threat language ({', '.join(terms)}) in {where['platform'] or 'social'} post {post['post_id']}",
            detector={"kind": "rule", "name": rule.rule_id, "version": rule.version},
            entity={"type": "post", "id": entity_id},
            event_time=post["event_time"],
            evidence={**where, "compound": round(compound, 4), "threat_terms": ", ".join(terms),
                      "term_count": len(terms), "min_negative": rule.min_negative, "min_terms": rule.min_terms},
            countermeasure=_THREAT_COUNTERMEASURE,
            detected_at=detected_at,
        ))
    return alerts


def analyse_post(post: dict, topic: str, rules, detected_at: datetime | None = None) -> list[dict]:
    """Every text alert for one post of ``social.posts`` or ``cti.posts``.

    ``rules`` are the enabled rules of the post's tenant (see :func:`rules_for`), as documents
    or already compiled with :func:`compile_rules` (do that once per rule change, not per post).
    Alerts come in a fixed order: indicator matches, investigations, threat language.
    """
    _check_topic(topic)
    compiled = _compiled(rules)
    return (indicator_alerts(post, topic, compiled, detected_at)
            + investigation_alerts(post, topic, compiled, detected_at)
            + threat_alerts(post, topic, compiled, detected_at))
