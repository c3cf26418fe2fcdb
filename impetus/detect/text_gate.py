"""Which posts may alert: the literal spec the text job's JVM gate applies.

Most posts raise nothing: no investigation term, no watched indicator, no threat word. Handing each of them to
Python only to find that costs the text job most of its time (BENCHMARKS.md, "What handing records to Python costs
in PyFlink"), so the job puts a gate in the JVM (``io.impetus.flink.PostGate``) in front of
:class:`impetus.detect.streams.PostWatch`. It stops a valid post of a known tenant, and only counts it, when none
of the spec's literals for that tenant and kind of post occurs in its text; Python judges everything else.

Every alert of :mod:`impetus.detect.text` needs some text to be present, so each rule in force is reduced here to
*necessary literals*: strings at least one of which every post it alerts on contains.

* investigations and the threat lexicon are regular expressions: :func:`required_literals` reads the parsed
  pattern and finds a run of plain characters every match contains (a keyword rule ``protest, march`` needs
  ``protest`` or ``march``; ``blow(s|ing)? ... up`` needs ``blow``). A pattern without one (``\\d{6}``) makes every
  post of its tenant a candidate.
* watched assets are compared with the indicators extracted from the refanged text: each needs the longest run of
  ASCII letters and digits of its value (``oslo.example`` needs ``example``; a CVE its number; an IPv4 range its
  first octet; IPv6 a colon). Refanging only ever turns defanged brackets into ``.``, ``@`` or ``:`` and
  ``hxxp`` into ``http`` (before a colon), so such a run of the value, other than ``http`` or ``https``, is in
  the original text as it is in the refanged one.

Literals are ASCII. ``ci``: matched case-insensitively (ASCII letters of either case); a text holding one of
:data:`FOLDS_TO_ASCII` (characters Python's case rules turn into or match with ASCII letters: ``K`` the Kelvin
sign, ``ſ``, ``ß``, ligatures...) passes whatever it says. ``start``: the literal must begin where the character
before is not an ASCII letter, digit or underscore (the pattern begins there with ``(?<!\\w)``); a non-ASCII
character before counts as such a place, since Python's ``\\w`` is wider.

An investigation pattern with no plain text in it (a number plate: ``\\b[A-Z]{2} ?\\d{5}\\b``) is instead
widened into a simple regular expression both Java and Python read alike (:func:`java_pattern`), which finds a
match in every text the pattern does: the gate runs it on each post.

Spec (JSON)::

    {"fold": "<FOLDS_TO_ASCII>",
     "tenants": {"<tenant>": {"social.posts": null | [[literal, ci, start] | [wider pattern], ...],
                              "cti.posts": null | [...]}}}

``null``: every post of that tenant and kind goes to Python; ``[]``: none can alert (no rule applies); a post may
alert when one of the literals occurs in it or one of the patterns finds a match.
"""

from __future__ import annotations

import functools
import json
import re
from re import _constants as sre
from re import _parser as sre_parse

from impetus.detect import text

# non-ASCII characters that Python's lower(), upper() or casefold() turn into ASCII letters, or that its
# case-insensitive matching takes for one (tests/unit/test_text_gate.py checks every code point)
FOLDS_TO_ASCII = ("\u00df\u0130\u0131\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a\u1e9e\u212a"
                  "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06")
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_ASCII_RUN = re.compile(r"[a-z0-9]+", re.ASCII)


def _is_not_word(items) -> bool:
    """Whether a lookbehind's items are exactly ``\\w``."""
    return (len(items) == 1 and items[0][0] is sre.IN and len(items[0][1]) == 1
            and items[0][1][0] == (sre.CATEGORY, sre.CATEGORY_WORD))


def _score(literals):
    # the weakest literal decides how much a set lets through: longer is rarer; fewer, then bounded ones, win ties
    return (min(len(t) for t, _, _ in literals), -len(literals), sum(s for _, _, s in literals))


def _sequence(items, ci: bool, bounded: bool):
    """Necessary literals of a parsed sequence (one of them occurs in every match), or None."""
    candidates, run, run_start = [], [], bounded

    def flush():
        if run:
            candidates.append([("".join(run).lower() if ci else "".join(run), ci, run_start)])
            run.clear()

    for op, av in items:
        here, bounded = bounded, False
        if op is sre.LITERAL and av < 128:
            if not run:
                run_start = here
            run.append(chr(av))
            continue
        flush()
        found = None
        if op is sre.SUBPATTERN:
            _, add, remove, sub = av
            inner = (ci or bool(add & sre.SRE_FLAG_IGNORECASE)) and not remove & sre.SRE_FLAG_IGNORECASE
            found = _sequence(sub, inner, here)
        elif op is sre.ATOMIC_GROUP:
            found = _sequence(av, ci, here)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            found = _sequence(av[2], ci, here)
        elif op is sre.BRANCH:
            branches = [_sequence(branch, ci, here) for branch in av[1]]
            if all(b is not None for b in branches):
                found = [literal for branch in branches for literal in branch]
        elif op is sre.ASSERT_NOT and av[0] == -1 and _is_not_word(av[1]):
            bounded = True
        if found:
            candidates.append(found)
    flush()
    return max(candidates, key=_score) if candidates else None


def _reduced(literals):
    """The literals without those another one implies (its occurrence starts with the other's)."""
    kept = []
    for literal in sorted(set(literals), key=lambda lit: (len(lit[0]), lit)):
        word, ci, start = literal
        if not any((c or not ci) and (word.lower() if c else word).startswith(w) and (start or not s)
                   for w, c, s in kept):
            kept.append(literal)
    return kept


def required_literals(pattern: re.Pattern) -> list[tuple[str, bool, bool]] | None:
    """``[(literal, ci, start), ...]``, one of which every match of ``pattern`` contains (see the module), or None
    when the pattern needs no plain text (then every text is a candidate)."""
    parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    ci = bool(parsed.state.flags & sre.SRE_FLAG_IGNORECASE)
    found = _sequence(list(parsed), ci, False)
    return None if found is None or not all(word for word, _, _ in found) else _reduced(found)


# --------------------------------------------------------------------------- patterns without a literal

_TOP = 0x10FFFF
_ASCII_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_ASCII_SPACE = [(0x09, 0x0D), (0x1C, 0x20)]  # \s of Unicode patterns; with (?a) only \t\n\v\f\r and space
_STRICT_SPACE = [(0x09, 0x0D), (0x20, 0x20)]
_LETTERS = [(0x41, 0x5A), (0x61, 0x7A)]
_NON_ASCII = [(0x80, _TOP)]
_BOUND = 1000  # larger repeat counts are read as "at least this many" or "any number"


def _merged(ranges):
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _complement(ranges):
    gaps, at = [], 0
    for lo, hi in _merged(ranges):
        if lo > at:
            gaps.append((at, lo - 1))
        at = hi + 1
    return gaps + ([(at, _TOP)] if at <= _TOP else [])


def _ascii_complement(ranges):
    return [(lo, min(hi, 0x7F)) for lo, hi in _complement(ranges) if lo < 0x80]


_CATEGORIES = {  # category -> (a superset of what Python's pattern matches, a subset of it), as code point ranges
    sre.CATEGORY_DIGIT: ([(0x30, 0x39)] + _NON_ASCII, [(0x30, 0x39)]),
    sre.CATEGORY_NOT_DIGIT: (_complement([(0x30, 0x39)]), _ascii_complement([(0x30, 0x39)])),
    sre.CATEGORY_WORD: (_ASCII_WORD + _NON_ASCII, _ASCII_WORD),
    sre.CATEGORY_NOT_WORD: (_ascii_complement(_ASCII_WORD) + _NON_ASCII, _ascii_complement(_ASCII_WORD)),
    sre.CATEGORY_SPACE: (_ASCII_SPACE + _NON_ASCII, _STRICT_SPACE),
    sre.CATEGORY_NOT_SPACE: (_complement(_STRICT_SPACE), _ascii_complement(_ASCII_SPACE)),
}


class _Untranslatable(Exception):
    pass


def _folded(lo: int, hi: int):
    """What a range matches case-insensitively, widened: its own code points, the other case of its ASCII letters
    and :data:`FOLDS_TO_ASCII`, and when it holds a non-ASCII character, every non-ASCII character and every ASCII
    letter (Python folds some onto ASCII letters: ``K``, ``ſ``)."""
    ranges = [(lo, hi)]
    for first, last, shift in ((0x41, 0x5A, 32), (0x61, 0x7A, -32)):
        if lo <= last and first <= hi:
            ranges.append((max(lo, first) + shift, min(hi, last) + shift))
            ranges += [(ord(c), ord(c)) for c in FOLDS_TO_ASCII]
    if hi >= 0x80:
        ranges += _LETTERS + _NON_ASCII
    return ranges


def _set(items, ci: bool, superset: bool):
    """Code point ranges of a class's items: a superset of what they match, or a subset."""
    ranges = []
    for op, av in items:
        if op is sre.LITERAL:
            ranges += _folded(av, av) if ci and superset else [(av, av)]
        elif op is sre.RANGE:
            ranges += _folded(*av) if ci and superset else [av]
        elif op is sre.CATEGORY and av in _CATEGORIES:
            ranges += _CATEGORIES[av][0 if superset else 1]
        else:
            raise _Untranslatable(op)
    return ranges


def _class(ranges) -> str:
    if not ranges:
        raise _Untranslatable("an empty class")
    parts = [f"\\x{{{lo:X}}}" + (f"-\\x{{{hi:X}}}" if hi > lo else "") for lo, hi in _merged(ranges)]
    return "[" + "".join(parts) + "]"


def _wider(items, ci: bool) -> str:
    """A pattern (in the notation :func:`java_pattern` returns) matching at least what the parsed items do."""
    out = []
    for op, av in items:
        if op is sre.LITERAL:
            out.append(_class(_folded(av, av) if ci else [(av, av)]))
        elif op is sre.NOT_LITERAL:
            out.append(_class(_complement([(av, av)])))
        elif op is sre.ANY:
            out.append(_class([(0, _TOP)]))
        elif op is sre.IN:
            negated = bool(av) and av[0][0] is sre.NEGATE
            out.append(_class(_complement(_set(av[1:], ci, False)) if negated else _set(av, ci, True)))
        elif op is sre.BRANCH:
            out.append("(?:" + "|".join(_wider(branch, ci) for branch in av[1]) + ")")
        elif op is sre.SUBPATTERN:
            _, add, remove, sub = av
            inner = (ci or bool(add & sre.SRE_FLAG_IGNORECASE)) and not remove & sre.SRE_FLAG_IGNORECASE
            out.append("(?:" + _wider(sub, inner) + ")")
        elif op is sre.ATOMIC_GROUP:
            out.append("(?:" + _wider(av, ci) + ")")
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, sub = av
            low = min(low, _BOUND)
            high = "" if high > _BOUND else str(high)
            out.append("(?:" + _wider(sub, ci) + f"){{{low},{high}}}")
        elif op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue  # a condition on where: leaving it out only widens what matches
        else:
            raise _Untranslatable(op)  # back-references and conditionals
    return "".join(out)


def java_pattern(pattern: re.Pattern) -> str | None:
    """A regular expression that finds a match in every text in which ``pattern`` finds a non-empty one, written
    with nothing but non-capturing groups, alternation, bounded repeats and classes of code points
    (``[\\x{41}-\\x{5A}]``), which Java's ``java.util.regex`` and Python's ``re`` (:func:`_python_pattern`)
    read alike; None when there is none short of matching everything (back-references, conditionals).

    Case-insensitivity, Unicode categories (``\\w``, ``\\d``, ``\\s``) and positions (``\\b``, lookarounds)
    are widened: a letter stands for every ASCII letter and every non-ASCII character it could fold to, a category
    for its ASCII members and every non-ASCII character, a position for any position. For an investigation with
    no plain text in it, such as a number-plate pattern."""
    parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    try:
        return _wider(list(parsed), bool(parsed.state.flags & sre.SRE_FLAG_IGNORECASE))
    except _Untranslatable:
        return None


def _python_pattern(wider: str) -> re.Pattern:
    """:func:`java_pattern`'s notation read by Python's ``re``."""
    return re.compile(re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: f"\\U{int(m[1], 16):08X}", wider))


def asset_literal(asset: text.WatchedAsset) -> tuple[str, bool, bool] | None:
    """The literal every post that mentions ``asset`` contains, or None when there is none to require."""
    kind, value = asset.indicator_type, asset.value
    if kind == "ipv6":
        return (":", False, False)  # every IPv6 form, bracketed or defanged ("[:]"), has one
    if kind == "ipv4" and asset.network is not None:
        # a host of the range shares its first octet when the prefix fixes it
        if asset.network.prefixlen < 8:
            return None
        return (str(asset.network.network_address).split(".")[0], False, False)
    if kind == "url":
        value = value.split("://", 1)[1]
    # refanging writes http(s) for hxxp(s) or h**p(s) before a colon, in a URL's scheme and anywhere after it
    runs = [run for run in _ASCII_RUN.findall(value.lower()) if run not in ("http", "https")]
    if kind == "cve":
        runs = runs[-1:]  # the number after the year: years are everywhere
    return (max(runs, key=len), True, False) if runs else None


_THREATS = None


def threat_literals() -> list[tuple[str, bool, bool]]:
    """Literals one of which every text with a threat-lexicon term contains."""
    global _THREATS
    if _THREATS is None:
        found = [required_literals(pattern) for _, pattern in text._THREAT_PATTERNS]
        if any(f is None for f in found):
            raise AssertionError("a threat-lexicon pattern has no literal")
        _THREATS = _reduced([literal for each in found for literal in each])
    return _THREATS


def rules_literals(compiled: text.CompiledRules, topic: str) -> list[list] | None:
    """The literals of one tenant's compiled text rules for posts of ``topic``; None: every post may alert."""
    literals = []
    for asset in compiled.watched:
        literal = asset_literal(asset)
        if literal is None:
            return None
        literals.append(literal)
    patterns = []
    for investigation in compiled.investigations:
        found = required_literals(investigation.pattern)
        if found is None:
            wider = java_pattern(investigation.pattern)
            if wider is None or _python_pattern(wider).search(""):
                return None
            patterns.append([wider])
        else:
            literals.extend(found)
    if topic == "social.posts" and compiled.threats:
        literals.extend(threat_literals())
    return [list(literal) for literal in _reduced(literals)] + sorted(patterns)


def compile_spec(watch, book, tenants) -> str:
    """The spec (JSON text) for ``tenants`` under ``book``, with the rules ``watch``
    (:class:`impetus.detect.streams.PostWatch`) applies to each."""
    spec = {"fold": FOLDS_TO_ASCII, "tenants": {}}
    for tenant in sorted(tenants):
        compiled = watch.rules(tenant, book)
        spec["tenants"][tenant] = {topic: rules_literals(compiled, topic) for topic in text.TOPICS}
    return json.dumps(spec, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def _found(body: str, lowered: str, literal) -> bool:
    word, ci, start = literal
    haystack = lowered if ci else body
    at = haystack.find(word)
    while at >= 0:
        before = body[at - 1] if at else ""
        if not start or not before or not (before.isascii() and (before.isalnum() or before == "_")):
            return True
        at = haystack.find(word, at + 1)
    return False


def may_alert(spec: dict, post: dict, topic: str) -> bool:
    """The gate's verdict on one valid post, in Python (for tests and scratch counts): False when the spec says it
    certainly raises nothing."""
    tenant = spec["tenants"].get(post["tenant"])
    if tenant is None:
        return True
    literals = tenant[topic]
    body = post["text"]
    if literals is None or any(c in body for c in spec["fold"]):
        return True
    lowered = body.translate(_ASCII_LOWER)
    return any(_found(body, lowered, literal) if len(literal) == 3 else _compiled(literal[0]).search(body)
               for literal in literals)


@functools.lru_cache(maxsize=256)
def _compiled(wider: str) -> re.Pattern:
    return _python_pattern(wider)
