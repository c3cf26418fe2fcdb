"""Analyst access to the Delta lake without Spark: delta-rs, DuckDB, polars, and the table catalogue.

Called by the notebooks in ``notebooks/``, by ``impetus lake catalogue`` and by analysts'
own scripts. Spark stays the engine that *writes* the lake (``impetus.lake``); reading
needs none of it: delta-rs opens a table from its transaction log, and DuckDB or polars
query the Arrow dataset it exposes, in process, in seconds.

* :func:`open_table` / :func:`arrow_dataset` / :func:`polars_frame`: one table by its
  qualified name (``gold.area_hourly``), optionally as of an older version;
* :func:`duckdb_connection`: every existing table as a DuckDB view, both
  ``gold.area_hourly`` (so SQL reads as it does in ``impetus sql``) and ``gold_area_hourly``;
* :func:`catalogue` / :func:`catalogue_markdown`: what every declared table holds, from
  ``schemas/tables/`` (grain, key, partitioning, retention, owner, purpose, columns with
  their privacy tags), and what the lake holds now (version, rows).

Where the lake is comes from :class:`impetus.config.Settings` only, so the same code reads
``var/lake`` on a laptop and ``IMPETUS_LAKE_URI`` anywhere else.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from impetus.config import Settings
from impetus.lake import LAYERS, LakeError, lake_tables, table_path
from impetus.schemas import _main_type, load_schema

# the job that writes each layer, for the "build it with" part of errors and the catalogue
_BUILDERS = {
    "bronze": "python jobs/batch/land_bronze.py --table {name}",
    "quarantine": "python jobs/batch/land_bronze.py",
    "silver": "python jobs/batch/build_silver.py --table {name}",
    "gold": "python jobs/batch/build_gold.py --table {name}",
    "audit": "the governance jobs that append to it (docs/governance.md)",
}
_SCALAR_TYPES = {"number": "double", "integer": "bigint", "boolean": "boolean", "null": "void"}


class TableMissing(LakeError):
    """A declared table has not been written to the lake yet; the message says how to build it."""


def build_command(qualified: str, schema: dict | None = None) -> str:
    """The command that writes table ``qualified`` (``gold.area_hourly`` -> its build_gold.py call):
    the job its declaration names (``... by jobs/batch/<job>.py``), else the one of its layer."""
    layer, _, name = qualified.partition(".")
    default = _BUILDERS[layer].format(name=name)
    named = re.findall(r"jobs/batch/\w+\.py", (schema or {}).get("description", ""))
    if named and named[-1] not in default:
        return f"python {named[-1]}"
    return default


def _check_declared(settings: Settings, qualified: str) -> str:
    declared = lake_tables(settings)
    if qualified not in declared:
        raise LakeError(f"no table {qualified!r} is declared in {settings.schemas_dir / 'tables'} "
                        f"(declared: {', '.join(declared)})")
    return table_path(settings, qualified)


def open_table(settings: Settings, qualified: str, version: int | None = None):
    """The :class:`deltalake.DeltaTable` of ``qualified`` (e.g. ``gold.area_hourly``), at its newest
    version or at ``version``. Raises :class:`TableMissing` when nothing has been written there yet."""
    from deltalake import DeltaTable

    uri = _check_declared(settings, qualified)
    if not DeltaTable.is_deltatable(uri):
        raise TableMissing(f"{qualified} does not exist yet at {uri}: build it with "
                           f"`{build_command(qualified, load_schema(qualified, settings.schemas_dir))}`"
                           + ("" if qualified.startswith(("bronze.", "quarantine."))
                              else " once its inputs are in the lake"))
    return DeltaTable(uri, version=version)


def table_exists(settings: Settings, qualified: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(_check_declared(settings, qualified))


def existing_tables(settings: Settings, layers: tuple[str, ...] = LAYERS) -> list[str]:
    """The declared tables of ``layers`` that exist in the lake now, ``layer.name``."""
    return [t for t in lake_tables(settings) if t.split(".", 1)[0] in layers and table_exists(settings, t)]


def arrow_dataset(settings: Settings, qualified: str, version: int | None = None):
    """A :class:`pyarrow.dataset.Dataset` over one version of the table, partition columns included."""
    return open_table(settings, qualified, version).to_pyarrow_dataset()


def polars_frame(settings: Settings, qualified: str, version: int | None = None):
    """A polars ``LazyFrame`` over the table; filters on partition columns prune files."""
    import polars as pl

    return pl.scan_delta(open_table(settings, qualified, version))


def duckdb_connection(settings: Settings, tables: list[str] | None = None, connection=None):
    """An in-memory DuckDB connection (or ``connection``) where each table is a view, as ``gold.area_hourly``
    and ``gold_area_hourly``: every existing table, or exactly ``tables`` (each must exist).

    A view reads the table version current when the connection was made; open a new
    connection to see later writes. Timestamps are shown in UTC, as Spark shows them here.
    """
    import duckdb

    names = existing_tables(settings) if tables is None else list(tables)
    con = connection if connection is not None else duckdb.connect()
    # the gold "hour" columns are UTC hours; DuckDB would otherwise print them in this machine's zone
    con.execute("SET TimeZone = 'UTC'")
    for qualified in names:
        dataset = arrow_dataset(settings, qualified)
        layer, name = qualified.split(".", 1)
        flat = f"{layer}_{name}"
        con.register(flat, dataset)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
        con.execute(f'CREATE OR REPLACE VIEW "{layer}"."{name}" AS SELECT * FROM "{flat}"')
    return con


# --------------------------------------------------------------------------- catalogue

def column_type(prop: dict) -> str:
    """The type of a declared column as Spark SQL names it (``bigint``, ``timestamp``, ``array<string>``,
    ``struct<area:string,lat:double>``): the type the jobs write, derived like :func:`impetus.schemas.spark_type`."""
    kind = _main_type(prop)
    if kind == "string":
        return {"date-time": "timestamp", "date": "date"}.get(prop.get("format"), "string")
    if kind == "array":
        return f"array<{column_type(prop.get('items', {}))}>"
    if kind == "object":
        if "properties" in prop:
            return "struct<" + ",".join(f"{n}:{column_type(p)}" for n, p in prop["properties"].items()) + ">"
        return f"map<string,{column_type(prop.get('additionalProperties') or {})}>"
    return _SCALAR_TYPES.get(kind, kind)


def _columns(schema: dict, prefix: str = "") -> list[dict]:
    required = set(schema.get("required", []))
    columns = []
    for name, prop in schema.get("properties", {}).items():
        columns.append({"name": f"{prefix}{name}", "type": column_type(prop), "privacy": prop.get("x-privacy"),
                        "description": prop.get("description", ""), "required": name in required})
        if _main_type(prop) == "object" and "properties" in prop:
            columns += _columns(prop, prefix=f"{prefix}{name}.")
    return columns


def _split_grain(description: str) -> tuple[str, str]:
    text, marker, grain = description.partition("Grain:")
    return text.strip(), grain.strip() if marker else ""


def table_state(settings: Settings, qualified: str) -> dict:
    """``exists``, ``version``, ``rows`` and ``updated`` (last write, UTC) of a table as the lake holds it now."""
    from deltalake import DeltaTable

    uri = _check_declared(settings, qualified)
    if not DeltaTable.is_deltatable(uri):
        return {"exists": False, "version": None, "rows": None, "updated": None}
    table = DeltaTable(uri)
    last = table.history(1)
    stamp = last[0].get("timestamp") if last else None
    updated = (datetime.fromtimestamp(stamp / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
               if stamp is not None else None)
    return {"exists": True, "version": table.version(), "rows": table.to_pyarrow_dataset().count_rows(),
            "updated": updated}


def catalogue(settings: Settings, live: bool = True) -> list[dict]:
    """One entry per declared table, in layer order: what ``schemas/tables/`` says about it and,
    with ``live``, whether it exists in the lake now, its version, row count and last write."""
    entries = []
    for qualified in sorted(lake_tables(settings), key=lambda t: (LAYERS.index(t.split(".", 1)[0]), t)):
        schema = load_schema(qualified, settings.schemas_dir)
        layer, name = qualified.split(".", 1)
        description, grain = _split_grain(schema.get("description", ""))
        entry = {
            "table": qualified, "layer": layer, "name": name, "description": description, "grain": grain,
            "key": list(schema.get("x-key") or []), "partition_by": list(schema.get("x-partition-by") or []),
            "retention": schema.get("x-retention"), "owner": schema.get("x-owner"),
            "purpose": schema.get("x-purpose"), "uri": table_path(settings, qualified),
            "build": build_command(qualified, schema), "columns": _columns(schema),
        }
        if live:
            entry.update(table_state(settings, qualified))
        entries.append(entry)
    return entries


_PRIVACY_LEGEND = {
    "none": "kept as it arrived",
    "pseudonymise": "replaced at landing by a keyed pseudonym (`ps_` + 20 hex digits): countable and "
                    "joinable across tables, not reversible without the key",
    "redact": "free text in which personal values (e-mail, IP and MAC addresses, phone numbers, plates, "
              "handles, names) were replaced by keyed pseudonyms",
    "drop": "never reaches the lake", "image": "never reaches the lake",
}


def _cell(text) -> str:
    return " ".join(str(text if text is not None else "").split()).replace("|", "\\|")


def _anchor(qualified: str) -> str:
    return qualified.replace(".", "").lower()


def catalogue_markdown(settings: Settings, live: bool = True) -> str:
    """The catalogue as a Markdown document: an index, then each table with its columns.
    Without ``live`` it depends on ``schemas/`` alone (nothing about what the lake holds now)."""
    entries = catalogue(settings, live=live)
    lines = ["# Lake table catalogue", "",
             "Generated from `schemas/tables/` by `impetus lake catalogue`"
             + (f"; the state of each table is that of `{settings.lake_uri}` when it ran." if live else "."),
             "Query the tables as described in docs/analyst-guide.md.", ""]
    header = "| table | grain | key | retention | owner |" + (" now |" if live else "")
    lines += [header, "|" + " --- |" * (header.count("|") - 1)]
    for e in entries:
        row = (f"| [{e['table']}](#{_anchor(e['table'])}) | {_cell(e['grain'])} | "
               f"{_cell(', '.join(e['key']) or 'none')} | {_cell(e['retention'])} | {_cell(e['owner'])} |")
        if live:
            row += f" {_now(e)} |"
        lines.append(row)
    lines += ["", "Privacy tags (`x-privacy`) of the columns:", ""]
    lines += [f"- `{tag}`: {meaning}" for tag, meaning in _PRIVACY_LEGEND.items()]
    for layer in LAYERS:
        layer_entries = [e for e in entries if e["layer"] == layer]
        if not layer_entries:
            continue
        lines += ["", f"## {layer}"]
        for e in layer_entries:
            lines += ["", f"### {e['table']}", "", _cell(e["description"]), "",
                      f"- **Grain:** {_cell(e['grain']) or 'not declared'}",
                      f"- **Key:** {', '.join(f'`{k}`' for k in e['key']) or 'none (rows are appended)'}",
                      f"- **Partitioned by:** {', '.join(f'`{k}`' for k in e['partition_by']) or 'not partitioned'}",
                      f"- **Retention:** {_cell(e['retention'])}",
                      f"- **Owner:** {_cell(e['owner'])}",
                      f"- **Purpose:** {_cell(e['purpose'])}",
                      f"- **Written by:** `{e['build']}`"]
            if live:
                lines.append(f"- **Now:** {_now(e, long=True)}")
            lines += ["", "| column | type | privacy | description |", "| --- | --- | --- | --- |"]
            lines += [f"| `{c['name']}` | `{c['type']}` | {c['privacy']} | {_cell(c['description'])} |"
                      for c in e["columns"]]
    return "\n".join(lines) + "\n"


def _now(entry: dict, long: bool = False) -> str:
    if not entry["exists"]:
        return f"not built yet: `{entry['build']}`" if long else "not built yet"
    text = f"version {entry['version']}, {entry['rows']:,} rows"
    if long:
        text += f" at `{entry['uri']}`, last written {entry['updated']}"
    return text
