"""Data-quality gates: Great Expectations suites derived from the table declarations.

Nothing here is written per table. :func:`expectations_for` reads a table's
declaration in ``schemas/tables/`` (through :func:`impetus.schemas.load_schema`) and
turns every fact it states into a Great Expectations 1.x expectation:

* structure: the columns match the declared set exactly (an extra column, such as a
  field landing must drop, fails it), and each column has its declared Spark type;
* content: required columns are never null; ``minimum``/``maximum``, ``enum``,
  ``minLength``/``maxLength`` and ``pattern`` hold; the ``x-key`` columns are unique together;
* anonymisation: pseudonymised columns hold only pseudonyms (``ps_`` + 20 hex digits);
  no pseudonymised or redacted value contains a raw IPv4/IPv6, e-mail, phone, MAC
  address or licence plate (the patterns :mod:`impetus.privacy` redacts, written for
  Java's regex engine because Spark evaluates them with ``rlike``); no string value
  holds image bytes (base64 JPEG/PNG/GIF/WebP, a ``data:image/`` URI, a long base64 run);
* time: no row is older than the table's ``x-retention``, and, when the table declares
  ``x-freshness``, the newest row is at most that old.

:func:`validate` runs the suite on a Spark DataFrame (a batch about to be promoted, or a
whole Delta table) and renders a Data Docs page; :func:`check` raises :class:`GateFailed`
when an expectation fails. The lake (``impetus.lake``) calls :func:`check` before each
silver MERGE and gold overwrite; on failure the batch goes to quarantine and
:func:`data_quality_alert` is sent to the operations alert topic. docs/gates.md explains
what each rule checks and what happens on failure.

Raw values of personal columns never leave this module: results, messages and Data Docs
show how many values broke a rule, not the values.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from impetus.config import Settings
from impetus.privacy import PSEUDONYM
from impetus.schemas import DROPPED_TAGS, SchemaError, load_schema, schema_names, spark_schema
from impetus.topics import parse_retention

# --------------------------------------------------------------------------- patterns (Java regex)

# Java's \w and \d are ASCII unless (?U) is set; Python's (impetus.privacy) are Unicode.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?:{_OCTET}\.){{3}}{_OCTET}"
_H = r"[0-9A-Fa-f]{1,4}"
# Every textual form of an IPv6 address (RFC 4291 2.2), never a bare "::" nor a time such as 10:00:00;
# the boundaries are those of the redaction's candidates, so a match is a whole candidate.
_IPV6_FORMS = "|".join([
    rf"(?:{_H}:){{7}}{_H}",
    rf"(?:{_H}:){{1,7}}:",
    rf"(?:{_H}:){{1,6}}:{_H}",
    rf"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
    rf"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
    rf"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
    rf"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
    rf"{_H}:(?::{_H}){{1,6}}",
    rf":(?::{_H}){{1,7}}",
    rf"(?:{_H}:){{6}}{_IPV4}",
    rf"::(?:[Ff]{{4}}(?::0{{1,4}})?:)?{_IPV4}",
    rf"(?:{_H}:){{1,5}}:{_IPV4}",
])
# A phone number of 8..15 digits, as the redaction accepts them (it checks the count in Python).
# (a leading 00 counts as two digits there)
_PHONE_DIGITS = r"(?:[ .()-]{0,3}\d)"
_PHONE_INTERNATIONAL = (rf"(?=\+{_PHONE_DIGITS}{{8}}|00{_PHONE_DIGITS}{{6}})"
                        rf"(?!\+{_PHONE_DIGITS}{{16}}|00{_PHONE_DIGITS}{{14}})"
                        r"(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)")

# kind -> (what it is in words, Java regex); mirrors impetus.privacy's _EMAIL, _MAC, _IPV6, _IPV4, _PHONE, _PLATE
RAW_IDENTIFIERS: dict[str, tuple[str, str]] = {
    "ipv4": ("a raw IPv4 address", rf"(?U)(?<![\w.]){_IPV4}(?!\w|\.\d)"),
    "ipv6": ("a raw IPv6 address", rf"(?U)(?<![\w:.])(?:{_IPV6_FORMS})(?![\w:])"),
    "email": ("a raw e-mail address",
              r"(?U)(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "phone": ("a raw phone number",
              rf"(?U)(?<![\w+]){_PHONE_INTERNATIONAL}"
              r"|(?<![\w-])0\d{1,4}[ .-]\d{3,4}[ .-]?\d{3,4}(?![\w-])"
              r"|(?<![\w-])\d{2} \d{2} \d{2} \d{2}(?![\w-])"),
    "mac": ("a raw MAC address", r"(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){0,8}"),
    "plate": ("a raw licence plate",
              r"(?U)(?<![\w-])(?:[A-Z]{2} ?\d{3} ?[A-Z]{2}|[A-Z]{2} ?\d{5}|[A-Z]{3} ?\d{3})(?![\w-])"),
}
# Base64 of a JPEG (FF D8 FF), PNG, GIF87a/89a or WebP (RIFF....WEBP) file, a data: URI of an
# image, or a base64 run longer than any identifier or hash the tables hold (a 2x2 JPEG is ~900).
IMAGE_BYTES_MIN_RUN = 512
IMAGE_BYTES = (r"(?<![A-Za-z0-9+/])(?:/9j/[A-Za-z0-9+/]{4}|iVBORw0KGgo|R0lGOD[dl]h|UklGR[A-Za-z0-9+/]{7}RUJQ)"
               rf"|data:image/|[A-Za-z0-9+/]{{{IMAGE_BYTES_MIN_RUN},}}")
PSEUDONYM_VALUE = rf"^{PSEUDONYM.pattern}$"

# rule -> how a failure reads; {column}, {count}, {values} and the rule's own fields are filled in
RULES: dict[str, str] = {
    "columns": "the columns of {table} do not match its declaration{detail}",
    "type": "column {column} is {observed}, declared {expected}",
    "not_null": "{count} of {column} missing, but {column} is required",
    "range": "{count} of {column} outside {expected}{values}",
    "enum": "{count} of {column} not one of {expected}{values}",
    "length": "{count} of {column} with a length outside {expected}{values}",
    "pattern": "{count} of {column} not matching {expected}{values}",
    "unique_key": "{count} sharing a key ({column}) with another row{values}",
    "pseudonym": "{count} of pseudonymised column {column} not a pseudonym (ps_ + 20 hex digits)",
    "image_bytes": "{count} of {column} holding image bytes (base64 image or data URI)",
    "retention": "{count} of {column} older than the {expected} retention (before {cutoff}){values}",
    "anonymisation": "{count} of {column} breaking an anonymisation rule",
    "freshness": "the newest {column} is {observed}, older than the {expected} freshness (before {cutoff})",
}
RULES.update({f"raw_{kind}": f"{{count}} of {{tag}} column {{column}} holding {words}"
              for kind, (words, _) in RAW_IDENTIFIERS.items()})
# rule -> what the expectation asks, as shown in Data Docs
DESCRIPTIONS: dict[str, str] = {
    "columns": "exactly the declared columns, nested fields included (no field landing must drop)",
    "type": "{column}: of Spark type {expected}",
    "not_null": "{column}: never null (required)",
    "range": "{column}: within {expected}",
    "enum": "{column}: one of {expected}",
    "length": "{column}: length {expected}",
    "pattern": "{column}: matches {expected}",
    "unique_key": "unique key ({column})",
    "pseudonym": "{column}: a pseudonym (ps_ + 20 hex digits) or null",
    "image_bytes": "{column}: no image bytes (base64 image, data URI, base64 run of {min_run}+)",
    "anonymisation": "{column}: no raw identifier or image bytes in its values",
    "retention": "{column}: not older than the {expected} retention (from {cutoff})",
    "freshness": "{column}: newest value not older than {expected} (from {cutoff})",
}
DESCRIPTIONS.update({f"raw_{kind}": f"{{column}}: no {words[2:] if words.startswith('a ') else words}"
                     for kind, (words, _) in RAW_IDENTIFIERS.items()})
PRIVACY_RULES = ("pseudonym", "image_bytes", *(f"raw_{kind}" for kind in RAW_IDENTIFIERS))
PERSONAL_TAGS = ("pseudonymise", "redact")
SAMPLE_VALUES = 3
# one validation at a time per process: GE's Spark SQL expectations share one temp view name
_GATE_LOCK = threading.Lock()


# --------------------------------------------------------------------------- derived from the declaration

def _parse_duration(text: str, what: str, qualified: str) -> timedelta | None:
    try:
        millis = parse_retention(text)
    except ValueError as err:
        raise SchemaError(f"{qualified}: {what} {text!r} is not a duration: {err}") from None
    return None if millis < 0 else timedelta(milliseconds=millis)


def time_column(schema: dict) -> str | None:
    """The column the table's age is measured on: the one retention deletes by
    (:func:`impetus.governance.retention_policy`), so the gate and the retention run agree."""
    from impetus.governance import retention_policy

    return retention_policy(schema.get("title", "table"), schema).column


def dropped_fields() -> list[str]:
    """Names of the topic fields landing must drop (``x-privacy`` drop or image): never in a table."""
    names = set()
    for topic in schema_names():
        for name, prop in load_schema(topic).get("properties", {}).items():
            if prop.get("x-privacy") in DROPPED_TAGS:
                names.add(name)
    return sorted(names)


def _sql_literal(text: str) -> str:
    """A Spark SQL raw string literal; GE formats the query with str.format, so braces are doubled."""
    if "'" in text:
        raise ValueError(f"no quote allowed in a gate pattern: {text}")
    return "r'" + text.replace("{", "{{").replace("}", "}}") + "'"


def _sql_name(path: str) -> str:
    return ".".join(f"`{part}`" for part in path.split("."))


def _meta(rule: str, column: str, tag: str | None = None, **extra) -> dict:
    meta = {"rule": rule, "column": column, "privacy": tag or "none"}
    meta.update(extra)
    return meta


def _bounds(low, high) -> str:
    if low is not None and high is not None:
        return f"{low}..{high}"
    return f">= {low}" if low is not None else f"<= {high}"


@dataclass(frozen=True)
class _Column:
    """A column as Great Expectations on Spark names it: top-level, or ``parent.child`` inside a struct."""
    path: str
    prop: dict
    data_type: object
    required: bool
    # a Spark SQL condition that holds where every enclosing struct is present (None at top level)
    parents_present: str | None = None
    # whether every enclosing struct is itself required
    parents_required: bool = True

    @property
    def tag(self) -> str:
        return self.prop.get("x-privacy") or "none"


def _columns(struct, schema: dict, prefix: str = "", parents_present: str | None = None,
             parents_required: bool = True) -> list[_Column]:
    """Every column and struct field of the declaration, in declaration order, nested fields after their parent."""
    from pyspark.sql import types as T

    out = []
    required = set(schema.get("required", []))
    for field_ in struct.fields:
        prop = schema["properties"][field_.name]
        path = prefix + field_.name
        column = _Column(path, prop, field_.dataType, field_.name in required, parents_present, parents_required)
        out.append(column)
        if isinstance(field_.dataType, T.StructType):
            present = f"{_sql_name(path)} IS NOT NULL"
            out += _columns(field_.dataType, prop, prefix=f"{path}.",
                            parents_present=present if parents_present is None else f"{parents_present} AND {present}",
                            parents_required=parents_required and column.required)
    return out


def _declared_constraints(gxe, column: _Column) -> list:
    """not-null, range, enum, length and pattern of one column. Not the limits of pseudonymised or
    redacted columns: those describe the raw value, which the lake never holds."""
    from pyspark.sql import types as T

    out = []
    path, prop, tag = column.path, column.prop, column.tag
    if column.required:
        # a required field inside an optional struct is required only where the struct is present
        condition = ({} if column.parents_required
                     else {"row_condition": column.parents_present, "condition_parser": "spark"})
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=path, meta=_meta("not_null", path, tag), **condition))
    if tag in PERSONAL_TAGS:
        return out
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None or high is not None:
        out.append(gxe.ExpectColumnValuesToBeBetween(column=path, min_value=low, max_value=high,
                                                     meta=_meta("range", path, tag, expected=_bounds(low, high))))
    if "enum" in prop:
        out.append(gxe.ExpectColumnValuesToBeInSet(
            column=path, value_set=list(prop["enum"]),
            meta=_meta("enum", path, tag, expected=", ".join(map(str, prop["enum"])))))
    if isinstance(column.data_type, T.StringType):
        shortest, longest = prop.get("minLength"), prop.get("maxLength")
        if shortest is not None or longest is not None:
            out.append(gxe.ExpectColumnValueLengthsToBeBetween(
                column=path, min_value=shortest, max_value=longest,
                meta=_meta("length", path, tag, expected=_bounds(shortest, longest))))
        if "pattern" in prop:
            out.append(gxe.ExpectColumnValuesToMatchRegex(column=path, regex=prop["pattern"],
                                                          meta=_meta("pattern", path, tag, expected=prop["pattern"])))
    return out


def _text_checks(gxe, column: _Column) -> list:
    """Pseudonym shape, no raw identifiers and no image bytes in a text column."""
    path, tag = column.path, column.tag
    out = []
    if tag == "pseudonymise":
        out.append(gxe.ExpectColumnValuesToMatchRegex(column=path, regex=PSEUDONYM_VALUE,
                                                      meta=_meta("pseudonym", path, tag)))
    if tag in PERSONAL_TAGS:
        out += [gxe.ExpectColumnValuesToNotMatchRegex(column=path, regex=regex, meta=_meta(f"raw_{kind}", path, tag))
                for kind, (_, regex) in RAW_IDENTIFIERS.items()]
    out.append(gxe.ExpectColumnValuesToNotMatchRegex(column=path, regex=IMAGE_BYTES,
                                                     meta=_meta("image_bytes", path, tag)))
    return out


def _collection_checks(gxe, column: _Column) -> list:
    """The same checks on the text values of a map or array column (``evidence``), which GE's column
    expectations cannot address: one Spark SQL query that returns, per rule broken, the rows breaking it
    (rule names and counts only, never a value)."""
    from pyspark.sql import types as T

    kind = column.data_type
    sql = _sql_name(column.path)
    if isinstance(kind, T.MapType) and isinstance(kind.valueType, T.StringType):
        values = f"map_values({sql})"
    elif isinstance(kind, T.ArrayType) and isinstance(kind.elementType, T.StringType):
        values = sql
    elif column.tag in PERSONAL_TAGS:
        raise SchemaError(f"{column.path} is tagged {column.tag} but its type {kind.simpleString()} holds no text "
                          f"the gates can check")
    else:
        return []
    tests = []
    if column.tag == "pseudonymise":
        tests.append(("pseudonym", f"v IS NOT NULL AND NOT v rlike {_sql_literal(PSEUDONYM_VALUE)}"))
    if column.tag in PERSONAL_TAGS:
        tests += [(f"raw_{name}", f"v rlike {_sql_literal(regex)}") for name, (_, regex) in RAW_IDENTIFIERS.items()]
    tests.append(("image_bytes", f"v rlike {_sql_literal(IMAGE_BYTES)}"))
    found = ", ".join(f"IF(exists({values}, v -> {test}), '{rule}', NULL)" for rule, test in tests)
    query = (f"SELECT rule, count(*) AS row_count FROM (SELECT explode(array_compact(array({found}))) AS rule "
             f"FROM {{batch}}) GROUP BY rule")
    return [gxe.UnexpectedRowsExpectation(unexpected_rows_query=query, meta=_meta(
        "anonymisation", column.path, column.tag, rules=[rule for rule, _ in tests]))]


def expectations_for(qualified: str, now: datetime | None = None) -> list:
    """The Great Expectations expectations of table ``qualified``, derived from its declaration only.

    Each carries ``meta={"rule": ..., "column": ..., "privacy": ...}`` (see :data:`RULES`).
    ``now`` (default: the current time) anchors retention and freshness.
    """
    import great_expectations.expectations as gxe
    from pyspark.sql import types as T

    now = _utc(now or datetime.now(timezone.utc))
    schema = load_schema(qualified)
    columns = _columns(spark_schema(schema), schema)
    # GE lists a struct's fields as columns of their own (location, location.lat...): so does the set
    out = [gxe.ExpectTableColumnsToMatchSet(column_set=[c.path for c in columns], exact_match=True,
                                            meta=_meta("columns", "*", dropped_fields=dropped_fields()))]
    for column in columns:
        expected = type(column.data_type).__name__
        out.append(gxe.ExpectColumnValuesToBeOfType(column=column.path, type_=expected,
                                                    meta=_meta("type", column.path, column.tag, expected=expected)))
        out += _declared_constraints(gxe, column)
        if isinstance(column.data_type, T.StringType):
            out += _text_checks(gxe, column)
        elif isinstance(column.data_type, (T.MapType, T.ArrayType)):
            out += _collection_checks(gxe, column)
        elif column.tag in PERSONAL_TAGS and not isinstance(column.data_type, T.StructType):
            raise SchemaError(f"{qualified}.{column.path} is tagged {column.tag} but is not text: "
                              f"pseudonyms and redacted text are strings")
    key = schema.get("x-key")
    if key:
        meta = _meta("unique_key", ", ".join(key), _strictest(schema["properties"][k].get("x-privacy") for k in key))
        out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(key), meta=meta) if len(key) > 1
                   else gxe.ExpectColumnValuesToBeUnique(column=key[0], meta=meta))
    out += _time_expectations(gxe, qualified, schema, now)
    for expectation in out:
        meta = expectation.meta
        expectation.description = DESCRIPTIONS[meta["rule"]].format(min_run=IMAGE_BYTES_MIN_RUN, **{
            "expected": "", "cutoff": "", **meta})
    return out


def _strictest(tags) -> str:
    tags = [t or "none" for t in tags]
    return next((t for t in PERSONAL_TAGS if t in tags), "none")


def _time_expectations(gxe, qualified: str, schema: dict, now: datetime) -> list:
    column = time_column(schema)
    out = []
    if column is None:
        return out
    is_date = schema["properties"][column].get("format") == "date"

    def bound(age: timedelta):
        cutoff = now - age
        return cutoff.date() if is_date else cutoff

    if schema.get("x-retention"):
        keep = _parse_duration(schema["x-retention"], "x-retention", qualified)
        if keep is not None:
            out.append(gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=bound(keep),
                meta=_meta("retention", column, expected=schema["x-retention"], cutoff=_iso(bound(keep)))))
    if schema.get("x-freshness"):
        fresh = _parse_duration(schema["x-freshness"], "x-freshness", qualified)
        if fresh is not None:
            newest = bound(fresh)
            if not is_date:
                # GE compares the maximum in Python, where PySpark hands timestamps over as naive local time
                newest = newest.astimezone().replace(tzinfo=None)
            out.append(gxe.ExpectColumnMaxToBeBetween(
                column=column, min_value=newest,
                meta=_meta("freshness", column, expected=schema["x-freshness"], cutoff=_iso(bound(fresh)))))
    return out


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; gates compare instants in UTC")
    return moment.astimezone(timezone.utc)


def _iso(value) -> str:
    if isinstance(value, datetime):
        return _utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


# --------------------------------------------------------------------------- running a gate

@dataclass
class Failure:
    """One failed expectation, in words; ``values`` are a few offending values of non-personal columns only;
    ``error`` is why the check could not run at all (a failure too: a gate fails closed)."""
    rule: str
    column: str
    expectation: str
    unexpected: int | None
    values: list[str]
    explanation: str
    error: str | None = None


@dataclass
class GateResult:
    """The outcome of one gate run over one batch (or table)."""
    success: bool
    table: str
    batch_name: str
    evaluated: int
    failed: int
    failures: list[Failure] = field(default_factory=list)
    docs_url: str | None = None
    validated_at: str = ""
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @property
    def rules(self) -> list[str]:
        """The rules that failed, e.g. ``["not_null", "raw_ipv4"]``."""
        return sorted({f.rule for f in self.failures})

    def explain(self) -> str:
        """What failed, in plain words, and where the report is."""
        if self.success:
            head = f"{self.table} batch {self.batch_name}: all {self.evaluated} expectations met"
        else:
            head = (f"{self.table} batch {self.batch_name}: {self.failed} of {self.evaluated} expectations failed; "
                    f"the batch is not promoted")
        lines = [head] + [f"  - [{f.rule}] {f.explanation}" for f in self.failures]
        if self.docs_url:
            lines.append(f"  Data Docs: {self.docs_url}")
        return "\n".join(lines)


class GateFailed(RuntimeError):
    """A batch broke its table's gate; ``str()`` names the failed expectations and the Data Docs page."""

    def __init__(self, result: GateResult):
        self.result = result
        super().__init__(result.explain() + "\n  Fix the producing job or the data, then rerun; the batch waits "
                                            "in quarantine.")


def docs_dir(settings: Settings) -> Path:
    """Where the gates' Data Docs (HTML) are written."""
    return settings.var_dir / "reports" / "data-docs"


def results_dir(settings: Settings) -> Path:
    """Where the gates' validation results (JSON, personal values removed) are kept for the Data Docs index."""
    return settings.var_dir / "reports" / "gate-results"


DOCS_SITE = "impetus"
# the Data Docs index lists this many recent validations (the pages of older ones remain)
INDEX_LIMIT = 200


def _context(settings: Settings):
    """An ephemeral GE context whose validation results and Data Docs live under var/reports/."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    stores[defaults.validation_results_store_name] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(results_dir(settings))},
    }
    config = DataContextConfig(
        store_backend_defaults=defaults, stores=stores, analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={DOCS_SITE: {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir(settings))},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": INDEX_LIMIT},
            # suites live in memory only: without this, each index build would delete the other tables' pages
            "site_section_builders": {"expectations": "None", "profiling": "None"},
        }})
    return gx.get_context(mode="ephemeral", project_config=config)


def validate(frame, qualified: str, settings: Settings, now: datetime | None = None,
             batch_name: str | None = None, docs: bool = True) -> GateResult:
    """Run the gate of table ``qualified`` on the Spark DataFrame ``frame``.

    All expectations run first with GE's cheapest result format; only the failed ones run again
    to collect counts and sample values. With ``docs`` a Data Docs page is rendered under
    :func:`docs_dir` and linked from the result. GE caches ``frame`` while it validates; the cache
    is released afterwards unless ``frame`` was cached before (cache a batch around the gate and
    its write, so it is computed once). One validation runs at a time per process.
    """
    started = time.monotonic()
    now = _utc(now or datetime.now(timezone.utc))
    batch_name = batch_name or f"{qualified}-{now:%Y%m%dT%H%M%S%fZ}"
    expectations = expectations_for(qualified, now)
    for number, expectation in enumerate(expectations):
        expectation.meta["gate_id"] = number
    cached = frame.is_cached
    with _GATE_LOCK:
        try:
            outcome, failed, docs_url = _run(settings, frame, qualified, expectations, now, batch_name, docs)
        finally:
            if not cached:
                frame.unpersist()
    outcome.results.sort(key=lambda r: _meta_of(r)["gate_id"])
    failures = _without_consequences(
        [f for r in outcome.results if not r.success for f in _failures(r, qualified)], outcome.results)
    return GateResult(success=not failed, table=qualified, batch_name=batch_name, evaluated=len(outcome.results),
                      failed=len(failed), failures=failures, docs_url=docs_url, validated_at=_iso(now),
                      seconds=round(time.monotonic() - started, 2))


def _run(settings: Settings, frame, qualified: str, expectations: list, now: datetime, batch_name: str, docs: bool):
    """(GE's suite validation result, its failed results, the Data Docs URL or None)."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (ExpectationSuiteIdentifier,
                                                                            ValidationResultIdentifier)

    context = _context(settings)
    source = context.data_sources.add_spark("lake")
    asset = source.add_dataframe_asset(qualified)
    batch = asset.add_batch_definition_whole_dataframe("batch").get_batch(batch_parameters={"dataframe": frame})
    # GE's SQL expectations register the batch as a temporary view and query it with the engine's
    # session, by default the builder's; a micro-batch of a streaming query lives in a session of its own
    source.get_execution_engine().spark = frame.sparkSession
    batch.data.execution_engine.spark = frame.sparkSession
    suite = context.suites.add(gx.ExpectationSuite(name=qualified, expectations=expectations))
    outcome = batch.validate(suite, result_format="BOOLEAN_ONLY")
    failed = [r for r in outcome.results if not r.success]
    if failed:
        outcome.results = _with_details(context, batch, qualified, expectations, outcome.results, failed)
    for item in outcome.results:
        _hide_personal_values(item)
    docs_url = None
    if docs:
        run_id = RunIdentifier(run_name=batch_name, run_time=now)
        outcome.meta["run_id"] = run_id
        outcome.meta["validation_time"] = now
        key = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(name=qualified),
                                         run_id=run_id, batch_identifier=batch.id)
        context.validation_results_store.set(key, outcome)
        context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[key])
        docs_url = context.get_docs_sites_urls(resource_identifier=key, site_name=DOCS_SITE)[0]["site_url"]
    return outcome, failed, docs_url


def check(frame, qualified: str, settings: Settings, now: datetime | None = None,
          batch_name: str | None = None, docs: bool = True) -> GateResult:
    """:func:`validate`, raising :class:`GateFailed` when any expectation fails."""
    result = validate(frame, qualified, settings, now=now, batch_name=batch_name, docs=docs)
    if not result.success:
        raise GateFailed(result)
    return result


def _with_details(context, batch, qualified: str, expectations: list, results: list, failed: list) -> list:
    """``results`` with each failed one replaced by a run of its expectation that collects counts and a few
    values (all expectations run first with GE's cheapest result format: a Spark job less per expectation).
    The anonymisation queries return their rows only with GE's COMPLETE format: rule names and counts."""
    import great_expectations as gx

    wanted = {_meta_of(r)["gate_id"] for r in failed}
    detailed = {}
    for name, result_format in (("summary", {"result_format": "SUMMARY", "partial_unexpected_count": 20}),
                                ("complete", {"result_format": "COMPLETE"})):
        rerun = []
        for expectation in expectations:
            if expectation.meta["gate_id"] in wanted and (expectation.meta["rule"] == "anonymisation") == (
                    name == "complete"):
                twin = copy.copy(expectation)
                twin.id = None  # an expectation belongs to one suite
                rerun.append(twin)
        if rerun:
            suite = context.suites.add(gx.ExpectationSuite(name=f"{qualified}.failed.{name}", expectations=rerun))
            rerun_results = batch.validate(suite, result_format=result_format).results
            detailed.update({_meta_of(r)["gate_id"]: r for r in rerun_results})
    return [detailed.get(_meta_of(r)["gate_id"], r) for r in results]


def _meta_of(result) -> dict:
    return result.expectation_config.meta or {}


def _values_hidden(meta: dict) -> bool:
    """Whether the values an expectation found may be personal: any of a pseudonymised or redacted
    column, and any a privacy rule found (image bytes in whatever column). The anonymisation query
    of a map column returns rule names and counts only."""
    if meta.get("rule") == "anonymisation":
        return False
    return meta.get("privacy", "none") in PERSONAL_TAGS or meta.get("rule") in PRIVACY_RULES


def _hide_personal_values(result) -> None:
    """Drop the values GE collected where they may be personal (counts stay)."""
    if not _values_hidden(_meta_of(result)):
        return
    body = result.result or {}
    for key in ("partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list",
                "unexpected_list", "unexpected_index_list", "unexpected_index_query"):
        if key in body:
            body[key] = []
    if "details" in body:
        body["details"] = {"values": "not shown: personal column"}


def _failures(result, qualified: str) -> list[Failure]:
    """The failure(s) one failed expectation stands for: the anonymisation query of a map or array
    column reports each rule it found broken, with its count of rows."""
    meta = _meta_of(result)
    rows = ((result.result or {}).get("details") or {}).get("unexpected_rows") or []
    if meta.get("rule") != "anonymisation" or not rows:
        return [_failure(result, qualified)]
    return [_failure(result, qualified, rule=row["rule"], unexpected=row["row_count"]) for row in rows]


def _failure(result, qualified: str, rule: str | None = None, unexpected: int | None = None) -> Failure:
    meta = _meta_of(result)
    rule, column = rule or meta.get("rule", "unknown"), meta.get("column", "")
    body = result.result or {}
    if unexpected is None:
        unexpected = body.get("unexpected_count")
    values = [] if _values_hidden(meta) else _sample(body)
    words = {
        "table": qualified, "column": column, "expected": meta.get("expected", ""), "cutoff": meta.get("cutoff", ""),
        "tag": {"pseudonymise": "pseudonymised", "redact": "redacted"}.get(meta.get("privacy"), meta.get("privacy")),
        "count": _count_words(unexpected, "row" if meta.get("rule") == "anonymisation" else "value"),
        "observed": _observed(body.get("observed_value")), "values": f", e.g. {', '.join(values)}" if values else "",
        "detail": _columns_detail(body, meta) if rule == "columns" else "",
    }
    problem = _exception_message(result)
    if problem:
        explanation = f"the {rule} check of {column} could not run: {problem}"
    else:
        explanation = RULES.get(rule, "{column}: " + rule).format(**words)
    return Failure(rule=rule, column=column, expectation=result.expectation_config.type, unexpected=unexpected,
                   values=values, explanation=explanation, error=problem)


def _without_consequences(failures: list[Failure], results: list) -> list[Failure]:
    """``failures`` less the checks that could not run, or compared values of the wrong type, because
    their column is missing or of another type: the ``columns`` or ``type`` failure already names it."""
    missing = set()
    for result in results:
        if _meta_of(result).get("rule") == "columns" and not result.success:
            missing.update((((result.result or {}).get("details") or {}).get("mismatched") or {}).get("missing") or [])
    mistyped = {f.column for f in failures if f.rule == "type"}

    def consequence(f: Failure) -> bool:
        parts = f.column.split(", ")
        if f.error and any(part in missing or part.split(".")[0] in missing for part in parts):
            return True
        return f.rule in ("range", "enum", "length", "pattern") and f.column in mistyped

    return [f for f in failures if not consequence(f)]


def _exception_message(result) -> str | None:
    """GE's reason when an expectation could not be evaluated (its first line), if any."""
    info = result.exception_info or {}
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for item in found:
        if item.get("raised_exception"):
            return str(item.get("exception_message") or "").splitlines()[0][:300]
    return None


def _count_words(count, unit: str = "value") -> str:
    if count is None:
        return f"{unit}s"
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _observed(value) -> str:
    if isinstance(value, datetime):
        # PySpark returns timestamps as naive local time; astimezone() reads a naive time as local
        return _iso(value.astimezone(timezone.utc))
    return "nothing (no rows)" if value is None else str(value)


def _sample(body: dict) -> list[str]:
    values = body.get("partial_unexpected_list")
    if values is None and isinstance(body.get("details"), dict):
        values = [row.get("value") for row in body["details"].get("unexpected_rows") or []]
    out = []
    for value in values or []:
        text = _observed(value) if not isinstance(value, dict) else json.dumps(value, default=str, sort_keys=True)
        if text not in out:
            out.append(text[:80])
        if len(out) == SAMPLE_VALUES:
            break
    return out


def _columns_detail(body: dict, meta: dict) -> str:
    details = (body.get("details") or {}).get("mismatched") or {}
    unexpected, missing = details.get("unexpected") or [], details.get("missing") or []
    dropped = set(meta.get("dropped_fields") or [])
    parts = []
    for name in unexpected:
        note = " (a field landing must drop)" if name in dropped else ""
        parts.append(f"unexpected column {name}{note}")
    parts += [f"missing column {name}" for name in missing]
    return ": " + "; ".join(parts) if parts else ""


# --------------------------------------------------------------------------- alerting

# Alerts about the data platform itself go to alerts.<this tenant> (declared in schemas/topics.yaml).
OPERATIONS_TENANT = "operations"
GATE_DETECTOR = {"kind": "rule", "name": "data_quality_gate", "version": "1"}


def data_quality_alert(result: GateResult, tenant: str = OPERATIONS_TENANT,
                       detected_at: datetime | None = None) -> dict:
    """The alert (``schemas/alert.json``, category ``data_quality``) a failed gate sends to ``alerts.<tenant>``.

    Severity is high when personal data may have leaked (a privacy rule or the column set failed),
    medium otherwise. The message lists the failures in words, never a personal value.
    """
    from impetus.alerts import make_alert

    if result.success:
        raise ValueError(f"{result.table} batch {result.batch_name} passed its gate: there is nothing to alert")
    leak = any(f.rule in PRIVACY_RULES or f.rule == "columns" for f in result.failures)
    evidence = {"table": result.table, "batch": result.batch_name, "failed_expectations": result.failed,
                "evaluated_expectations": result.evaluated, "rules": ", ".join(result.rules)}
    if result.docs_url:
        evidence["data_docs"] = result.docs_url
    return make_alert(
        tenant=tenant, category="data_quality", severity="high" if leak else "medium",
        title=f"{result.table}: batch held back, {result.failed} of {result.evaluated} expectations failed"
              f" ({', '.join(result.rules)})",
        detector=GATE_DETECTOR, entity={"type": "table", "id": result.table}, event_time=result.validated_at,
        evidence=evidence, message=result.explain()[:4096], detected_at=detected_at,
        countermeasure="Open the Data Docs page, fix the producing job or the data, then promote the "
                       "quarantined batch again.")
