"""Schemas in ``schemas/`` are the single source of truth for every topic and table.

This module loads them and derives everything engine-specific from them, so no
column list is ever written by hand a second time:

* :func:`validator` / :func:`check_payload`: a compiled validator (fastjsonschema)
  used by the Flink jobs, the Spark landing and the replayers alike;
* :func:`flink_columns` / :func:`flink_ddl`: Flink SQL column types and DDL;
* :func:`spark_schema`: the Spark ``StructType`` (for ``from_json`` and tables);
* :func:`privacy_tags`: the privacy tag of every field, for landing and governance.

Table schemas in ``schemas/tables/`` may name ``x-source-topic``: their columns are
the topic's fields (less those landing drops) followed by their own; ``x-include``
names fragments in ``schemas/fragments/`` whose columns are added too (the landing
metadata every bronze table has); ``x-policy`` names the processing policy
(``schemas/policies.yaml``) its retention and lawful basis come from.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import fastjsonschema

from impetus.config import load_settings

PRIVACY_TAGS = ("none", "pseudonymise", "redact", "drop", "image")
# fields with these tags never reach the lake
DROPPED_TAGS = ("drop", "image")
# Larger than any legitimate event of the schemas; frames carry their own maxLength.
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
FRAME_MAX_PAYLOAD_BYTES = 12 << 20


class SchemaError(ValueError):
    """A schema file is missing or malformed."""


def schemas_dir() -> Path:
    return load_settings().schemas_dir


def schema_names(directory: Path | None = None) -> list[str]:
    """Names of the topic/event schemas (``sensors.readings``, ``alert``...)."""
    directory = directory or schemas_dir()
    return sorted(p.name[: -len(".json")] for p in directory.glob("*.json"))


def table_names(directory: Path | None = None) -> list[str]:
    """Names of the lake table schemas (``bronze.sensors_readings``...)."""
    directory = (directory or schemas_dir()) / "tables"
    return sorted(p.name[: -len(".json")] for p in directory.glob("*.json"))


@lru_cache(maxsize=None)
def _load(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise SchemaError(f"no schema file {file}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SchemaError(f"{file} is not valid JSON: {err}") from None


def load_schema(name: str, directory: Path | None = None) -> dict:
    """The schema of a topic/event (``sensors.readings``) or a table (``bronze.sensors_readings``)."""
    directory = directory or schemas_dir()
    topic_file = directory / f"{name}.json"
    if topic_file.is_file():
        return _load(str(topic_file))
    table_file = directory / "tables" / f"{name}.json"
    if not table_file.is_file():
        known = ", ".join(schema_names(directory) + table_names(directory))
        raise SchemaError(f"no schema named {name!r} in {directory} (known: {known})")
    table = _load(str(table_file))
    own = {}
    required = []
    for fragment in table.get("x-include", []):
        part = _load(str(directory / "fragments" / f"{fragment}.json"))
        own.update(part.get("properties", {}))
        required += part.get("required", [])
    own.update(table.get("properties", {}))
    required += table.get("required", [])
    source = table.get("x-source-topic")
    topic = kept_fields(load_schema(source, directory)) if source else {"properties": {}, "required": []}
    merged = dict(table)
    merged["properties"] = {**topic["properties"], **own}
    merged["required"] = list(dict.fromkeys(list(topic.get("required", [])) + required))
    return _with_policy(merged, name, directory)


def _with_policy(table: dict, name: str, directory: Path) -> dict:
    """The table with what its processing policy (``x-policy``, schemas/policies.yaml) gives it:
    ``x-retention`` (the policy's lake retention unless the table keeps less), ``x-lawful-basis``,
    ``x-policy-purpose``, and ``x-owner`` / ``x-purpose`` where the table states none of its own."""
    from impetus.config import ConfigError
    from impetus.policies import policy_named, table_retention

    try:
        policy = policy_named(directory, table.get("x-policy"), f"table {name}")
        retention = table_retention(policy, name, table.get("x-retention"))
    except ConfigError as err:
        raise SchemaError(str(err)) from None
    return {**table, "x-retention": retention, "x-lawful-basis": policy.lawful_basis,
            "x-policy-purpose": policy.purpose, "x-owner": table.get("x-owner") or policy.owner,
            "x-purpose": table.get("x-purpose") or policy.purpose}


def kept_fields(schema: dict) -> dict:
    """``schema`` without the fields that landing drops (tags in :data:`DROPPED_TAGS`)."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        if prop.get("x-privacy") in DROPPED_TAGS:
            continue
        if "properties" in prop:
            prop = {**prop, **kept_fields(prop)}
        properties[name] = prop
    return {**schema, "properties": properties,
            "required": [r for r in schema.get("required", []) if r in properties]}


# --------------------------------------------------------------------------- fields and privacy

def _field_types(prop: dict) -> list[str]:
    kinds = prop.get("type", "string")
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _main_type(prop: dict) -> str:
    kinds = [k for k in _field_types(prop) if k != "null"]
    if not kinds:
        return "null"
    if len(kinds) > 1:
        # a union of scalars travels as text (e.g. evidence values)
        return "string"
    return kinds[0]


def privacy_tags(schema: dict, prefix: str = "") -> dict[str, str]:
    """``{"location.lat": "none", "src_ip": "pseudonymise", ...}`` for every field, nested ones included."""
    tags = {}
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        tags[path] = prop.get("x-privacy")
        if _main_type(prop) == "object" and "properties" in prop:
            tags.update(privacy_tags(prop, prefix=f"{path}."))
    return tags


def untagged_fields(schema: dict) -> list[str]:
    """Fields with no valid ``x-privacy`` tag (a schema is incomplete while this is non-empty)."""
    return [path for path, tag in privacy_tags(schema).items() if tag not in PRIVACY_TAGS]


# --------------------------------------------------------------------------- validation

class PayloadRejected(ValueError):
    """A message that must go to the dead-letter topic; ``str()`` is the reason."""


def _reject_constant(name: str):
    raise PayloadRejected(f"not JSON: {name} is not a number JSON allows")


@lru_cache(maxsize=None)
def validator(name: str, directory: str | None = None):
    """A compiled validator for schema ``name``: call it with a decoded document."""
    schema = load_schema(name, Path(directory) if directory else None)
    body = {k: v for k, v in schema.items() if k != "examples"}
    return fastjsonschema.compile(body, formats={"date": r"^\d{4}-\d{2}-\d{2}$", "date-time": is_date_time})


# RFC 3339's date-time (``T``/``Z`` either case, any fraction, ``Z`` or a ``±HH:MM`` offset); is_date_time also asks
# for a real moment (a real day, seconds below 60, year 1 or later, an offset within ±18:00) that every reader here
# can take, Python's datetime and the JVM's java.time alike (io.impetus.flink.SchemaCheck holds the same rule)
DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", re.ASCII)


def is_date_time(value) -> bool:
    """Whether ``value`` is a date-time every part of impetus reads alike (the schemas' ``date-time`` format)."""
    from datetime import timedelta

    from impetus.alerts import parse_time

    if not isinstance(value, str):
        return True  # a format judges strings only; the type is the schema's business
    if len(value) > 64 or not DATE_TIME.fullmatch(value):
        return False
    try:
        moment = parse_time(value)
    except ValueError:
        return False
    return abs(moment.utcoffset()) <= timedelta(hours=18)


def max_payload_bytes(name: str) -> int:
    return FRAME_MAX_PAYLOAD_BYTES if name == "video.frames" else DEFAULT_MAX_PAYLOAD_BYTES


def check_payload(name: str, payload: bytes | str | None) -> dict:
    """Decode and validate one message against schema ``name``.

    Returns the document, or raises :class:`PayloadRejected` whose message is a
    reason fit for a dead-letter record (what was wrong, where).
    """
    if payload is None or len(payload) == 0:
        raise PayloadRejected("empty message")
    if len(payload) > max_payload_bytes(name):
        raise PayloadRejected(f"message of {len(payload)} bytes exceeds the {max_payload_bytes(name)}-byte limit")
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PayloadRejected(f"not UTF-8 text: {err.reason} at byte {err.start}") from None
    try:
        document = json.loads(payload, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise PayloadRejected(f"not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise PayloadRejected("not JSON this system accepts: nested too deeply") from None
    if not isinstance(document, dict):
        raise PayloadRejected(f"not a JSON object but a {type(document).__name__}")
    error = document_error(name, document)
    if error:
        raise PayloadRejected(error)
    return document


def document_error(name: str, document: dict) -> str | None:
    """Why an already decoded document does not match schema ``name``, or None when it does."""
    try:
        validator(name)(document)
    except fastjsonschema.JsonSchemaValueException as err:
        return f"does not match schema {name}: {err.message}"
    return None


def validation_error(name: str, payload: bytes | str | None) -> str | None:
    """The rejection reason for a message, or None when it is valid."""
    try:
        check_payload(name, payload)
    except PayloadRejected as err:
        return str(err)
    return None


# --------------------------------------------------------------------------- Flink

_FLINK_SCALARS = {"string": "STRING", "number": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}


def flink_type(prop: dict) -> str:
    kind = _main_type(prop)
    if kind == "string":
        fmt = prop.get("format")
        if fmt == "date-time":
            return "TIMESTAMP_LTZ(3)"
        if fmt == "date":
            return "DATE"
        return "STRING"
    if kind in _FLINK_SCALARS:
        return _FLINK_SCALARS[kind]
    if kind == "array":
        return f"ARRAY<{flink_type(prop.get('items', {}))}>"
    if kind == "object":
        if "properties" in prop:
            inner = ", ".join(f"`{n}` {flink_type(p)}" for n, p in prop["properties"].items())
            return f"ROW<{inner}>"
        return f"MAP<STRING, {flink_type(prop.get('additionalProperties') or {})}>"
    raise SchemaError(f"no Flink type for JSON type {kind!r}")


def flink_columns(schema: dict) -> list[tuple[str, str]]:
    """``[(column, flink_sql_type), ...]`` in schema order; required fields are NOT NULL."""
    required = set(schema.get("required", []))
    return [
        (name, flink_type(prop) + (" NOT NULL" if name in required else ""))
        for name, prop in schema["properties"].items()
    ]


def flink_ddl(schema: dict, table: str, options: dict[str, str], extra_columns: list[str] = ()) -> str:
    """``CREATE TABLE`` for ``schema``; ``options`` go in the WITH clause (connector, topic...)."""
    columns = [f"  `{name}` {kind}" for name, kind in flink_columns(schema)] + [f"  {c}" for c in extra_columns]
    with_clause = ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items())
    return f"CREATE TABLE `{table}` (\n" + ",\n".join(columns) + f"\n) WITH (\n{with_clause}\n)"


# --------------------------------------------------------------------------- Spark

def spark_type(prop: dict):
    from pyspark.sql import types as T

    kind = _main_type(prop)
    if kind == "string":
        fmt = prop.get("format")
        if fmt == "date-time":
            return T.TimestampType()
        if fmt == "date":
            return T.DateType()
        return T.StringType()
    scalars = {"number": T.DoubleType(), "integer": T.LongType(), "boolean": T.BooleanType()}
    if kind in scalars:
        return scalars[kind]
    if kind == "array":
        return T.ArrayType(spark_type(prop.get("items", {})))
    if kind == "object":
        if "properties" in prop:
            return spark_schema(prop)
        return T.MapType(T.StringType(), spark_type(prop.get("additionalProperties") or {}))
    raise SchemaError(f"no Spark type for JSON type {kind!r}")


def spark_schema(schema: dict):
    """The Spark ``StructType`` of a schema; required fields are non-nullable."""
    from pyspark.sql import types as T

    required = set(schema.get("required", []))
    return T.StructType([
        T.StructField(name, spark_type(prop), nullable=name not in required,
                      metadata={"privacy": prop.get("x-privacy"), "comment": prop.get("description", "")})
        for name, prop in schema["properties"].items()
    ])
