"""Governance of the lake: retention, erasure of a data subject, the audit trail, and the data inventory.

Called by jobs/batch/enforce_retention.py, jobs/batch/erase_subject.py, ``impetus lake retention``,
``impetus erase`` and the lake DAG. Everything here is derived from the declarations in
``schemas/`` (``policies.yaml``, ``x-policy``, ``x-privacy``, ``x-purpose``, ``x-owner``, ``topics.yaml``),
so a new table or field is governed the day it is declared. docs/governance.md is the guide.

* **Retention** (:func:`enforce_retention`): for each table, rows whose time column (see
  :func:`retention_policy`) is older than the declared ``x-retention`` are deleted.
* **Erasure** (:func:`erase_subject`): the subject's pseudonym under every key in the key ring is
  computed; rows where a ``pseudonymise`` column equals it, or a ``redact`` column (text, map values,
  struct fields) contains it, are deleted from every table but the audit tables.
* **Forgetting** (:func:`_forget`): a Delta DELETE only hides rows from the newest version. After
  one, VACUUM with zero retention removes the data files of older versions, and the transaction
  log before the delete is cut (a checkpoint is written at the delete's version, older commits,
  checksums and checkpoints are removed), because the log's per-file statistics (min/max of each
  column) and checksum files repeat values of the rows they describe. Time travel to before a
  delete is then impossible, by design. Silver streams reading a bronze table are brought past
  the delete first, so they never need the history that is cut. The delete of an erasure is a
  MERGE against the pseudonyms, not ``DELETE ... WHERE col = 'ps_...'``: Delta records a DELETE's
  predicate, values included, in the commit it keeps.
* **Audit**: every run appends to ``audit.retention_runs`` (one row per table) or
  ``audit.erasure_requests`` (one row per request, rows deleted per table); erasure never
  touches the audit layer, the one place that keeps the pseudonyms of an erased subject, so the
  erasure can be proven and the subject's return found (rows landed again from Kafka, a backup).
* **Inventory** (:func:`inventory`, :func:`inventory_markdown`, :func:`inventory_html`): a record of
  processing for a DPIA: every topic and table, every field with its privacy tag and treatment,
  purpose, owner, retention, and which topic feeds which table.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from impetus.config import Settings
from impetus.lake import LAYERS, lake_tables, progress, table_exists, table_path
from impetus.policies import load_policies
from impetus.schemas import DROPPED_TAGS, _main_type, load_schema, privacy_tags, schema_names
from impetus.topics import declared_topics, parse_retention

AUDIT_LAYER = "audit"
RETENTION_RUNS = "audit.retention_runs"
ERASURE_REQUESTS = "audit.erasure_requests"

# When a table declares neither x-retention-column nor x-event-time, the first of these it has
# ages its rows: the event's own time first, then the time the row stands for (a gold hour, a
# decision, a local date; for a profile, its oldest reading: a cell computed from an expired
# reading holds expired data), the landing time last (quarantine: kept from when it was quarantined).
TIME_COLUMN_PREFERENCE = ("event_time", "received_time", "hour", "decided_at", "first_time", "local_date", "date",
                          "requested_at", "started_at", "ingested_at")
# a row whose time column is empty ages by when it was landed, so no row escapes retention
LANDING_TIME = "ingested_at"

TREATMENT_IN_LAKE = {
    "none": "none (not personal)",
    "pseudonymise": "keyed HMAC pseudonym (ps_ + 20 hex digits of HMAC-SHA256 under the current key)",
    "redact": "free-text redaction (e-mail, IP/MAC addresses, phone numbers, plates, handles, titled names "
              "replaced by their keyed pseudonyms)",
    "drop": "dropped at landing", "image": "dropped at landing",
}
TREATMENT_ON_TOPIC = {
    "none": "none (not personal)",
    "pseudonymise": "raw on the topic; keyed HMAC pseudonym at landing",
    "redact": "raw on the topic; free-text redaction at landing",
    "drop": "raw on the topic; dropped at landing", "image": "raw on the topic; dropped at landing",
}
PERSONAL_TAGS = ("pseudonymise", "redact", "drop", "image")

# Session settings of retention and erasure runs only (set on a child session, never on the
# shared one): the point of these runs is that deleted rows are physically gone now.
GOVERNANCE_CONF = {
    "spark.databricks.delta.retentionDurationCheck.enabled": "false",
    # rewrite the files on DELETE/MERGE: a deletion vector only marks rows deleted, inside files kept
    "spark.databricks.delta.delete.deletionVectors.persistent": "false",
    "spark.databricks.delta.merge.deletionVectors.persistent": "false",
    # the VACUUM END commit says how many files were removed
    "spark.databricks.delta.vacuum.logging.enabled": "true",
}
_VERSIONED_LOG_FILE = re.compile(r"^(\d{20})(?:\.(\d{20}))?\.")


class GovernanceError(RuntimeError):
    """A retention or erasure run cannot be done as asked; the message says why and what to do."""


# --------------------------------------------------------------------------- declarations (no Spark)

@dataclass(frozen=True)
class RetentionPolicy:
    """How long one table keeps its rows, and by which column they age."""
    table: str
    retention: str | None       # as declared: "400d"; None when not declared
    retention_ms: int | None    # None: not declared or "forever"
    column: str | None          # the time column; None: the table has none
    column_kind: str | None     # "timestamp" or "date"
    fallback: str | None        # aged by this column when the time column is empty
    note: str                   # why this column, or why the table is not aged

    def cutoff(self, now: datetime) -> datetime | None:
        """Rows older than this instant are deleted (None: this table is not aged row by row)."""
        if self.retention_ms is None or self.column is None:
            return None
        return _utc(now) - timedelta(milliseconds=self.retention_ms)

    def predicate(self, now: datetime) -> str | None:
        """The Spark SQL condition of the rows to delete at ``now``."""
        cutoff = self.cutoff(now)
        if cutoff is None:
            return None
        column = f"`{self.column}`"
        if self.fallback:
            column = f"coalesce({column}, `{self.fallback}`)"
        if self.column_kind == "date":
            # a whole day must lie before the cutoff: the day of the cutoff itself stays
            return f"{column} < DATE '{cutoff.date().isoformat()}'"
        return f"{column} < TIMESTAMP '{cutoff.strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00'"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _time_kind(prop: dict) -> str | None:
    if _main_type(prop) != "string":
        return None
    return {"date-time": "timestamp", "date": "date"}.get(prop.get("format"))


def retention_policy(qualified: str, schema: dict) -> RetentionPolicy:
    """The retention of table ``qualified`` from its declaration ``schema`` (as :func:`load_schema` returns it).

    The time column is ``x-retention-column`` if declared, else ``x-event-time`` (bronze), else the
    first date or date-time column in :data:`TIME_COLUMN_PREFERENCE`. Tables with no time column
    (profiles over all history) are not aged row by row: they are recomputed in full from tables
    that are.
    """
    declared = schema.get("x-retention")
    retention_ms = parse_retention(declared) if declared is not None else None
    if retention_ms is not None and retention_ms < 0:
        retention_ms = None
    properties = schema.get("properties", {})
    if schema.get("x-retention-column"):
        column, note = schema["x-retention-column"], "declared x-retention-column"
    elif schema.get("x-event-time"):
        column, note = schema["x-event-time"], "declared x-event-time"
    else:
        column = next((c for c in TIME_COLUMN_PREFERENCE if c in properties and _time_kind(properties[c])), None)
        note = "first time column of the table" if column else (
            "no time column: recomputed in full from tables that are aged, so it holds nothing older than they do")
    if column is not None and (column not in properties or not _time_kind(properties[column])):
        raise GovernanceError(f"{qualified}: its retention column {column!r} is not a date or date-time column "
                              f"of the table; fix x-retention-column / x-event-time in its schema")
    required = set(schema.get("required", []))
    fallback = (LANDING_TIME if column and column != LANDING_TIME and column not in required
                and LANDING_TIME in properties else None)
    if declared is None:
        note = "no x-retention declared: kept until deleted by hand"
    elif retention_ms is None:
        note = f"x-retention {declared}: kept"
    return RetentionPolicy(table=qualified, retention=declared, retention_ms=retention_ms, column=column,
                           column_kind=_time_kind(properties[column]) if column else None, fallback=fallback,
                           note=note)


def retention_policies(settings: Settings) -> list[RetentionPolicy]:
    return [retention_policy(q, load_schema(q, settings.schemas_dir)) for q in lake_tables(settings)]


# How erasure finds a pseudonym in a column, by the column's tag and shape.
EQUALS, CONTAINS = "equals", "contains"
ANY_VALUE_EQUALS, ANY_VALUE_CONTAINS = "any map value equals", "any map value contains"
ANY_ELEMENT_EQUALS, ANY_ELEMENT_CONTAINS = "any element equals", "any element contains"


def erasure_targets(schema: dict) -> list[tuple[str, str]]:
    """``[(column path, how), ...]``: where a subject's pseudonym can be in rows of ``schema``.

    A ``pseudonymise`` column holds exactly a pseudonym (``equals``); a ``redact`` column holds
    text with pseudonyms inside (``contains``), as do the values of a redacted map and every
    string field of a redacted struct. Nested fields are dotted (``entity.id``).
    """
    return _targets(schema.get("properties", {}), "", None)


def _targets(properties: dict, prefix: str, inherited: str | None) -> list[tuple[str, str]]:
    found = []
    for name, prop in properties.items():
        tag = prop.get("x-privacy") or "none"
        if tag in DROPPED_TAGS:
            continue
        tag = inherited if tag == "none" and inherited else tag
        path, kind = f"{prefix}{name}", _main_type(prop)
        if kind == "object" and "properties" in prop:
            found += _targets(prop["properties"], f"{path}.", tag if tag != "none" else None)
            continue
        if tag not in ("pseudonymise", "redact"):
            continue
        exact = tag == "pseudonymise"
        if kind == "object":
            found.append((path, ANY_VALUE_EQUALS if exact else ANY_VALUE_CONTAINS))
        elif kind == "array":
            found.append((path, ANY_ELEMENT_EQUALS if exact else ANY_ELEMENT_CONTAINS))
        elif kind == "string" or exact:
            found.append((path, EQUALS if exact else CONTAINS))
        # a redacted number or boolean cannot hold a pseudonym
    return found


def subject_condition(targets: list[tuple[str, str]], row: str = "t", pseudonym: str = "s.pseudonym") -> str:
    """The MERGE condition matching a row ``row`` that holds ``pseudonym`` in any of ``targets``."""
    parts = []
    for path, how in targets:
        column = f"{row}." + ".".join(f"`{p}`" for p in path.split("."))
        parts.append({
            EQUALS: f"{column} = {pseudonym}",
            CONTAINS: f"instr({column}, {pseudonym}) > 0",
            ANY_VALUE_EQUALS: f"exists(map_values({column}), v -> CAST(v AS STRING) = {pseudonym})",
            ANY_VALUE_CONTAINS: f"exists(map_values({column}), v -> instr(CAST(v AS STRING), {pseudonym}) > 0)",
            ANY_ELEMENT_EQUALS: f"exists({column}, v -> CAST(v AS STRING) = {pseudonym})",
            ANY_ELEMENT_CONTAINS: f"exists({column}, v -> instr(CAST(v AS STRING), {pseudonym}) > 0)",
        }[how])
    return " OR ".join(f"({p})" for p in parts)


def erasable_tables(settings: Settings) -> dict[str, list[tuple[str, str]]]:
    """Every declared table erasure looks at, with its targets (audit tables are never erased)."""
    tables = {}
    for qualified in lake_tables(settings):
        if qualified.split(".", 1)[0] == AUDIT_LAYER:
            continue
        targets = erasure_targets(load_schema(qualified, settings.schemas_dir))
        if targets:
            tables[qualified] = targets
    return tables


_PHONE_LIKE = re.compile(r"[+(]?[\d][\d ()./-]{6,}")
_PLATE_LIKE = re.compile(r"[A-Za-z]{2,3}[ -]?\d{3,5}(?:[ -]?[A-Za-z]{2})?")


def identifier_forms(identifier: str) -> list[str]:
    """The spellings of ``identifier`` that landing may have pseudonymised, so erasure finds them all.

    :func:`impetus.privacy.normalise` makes one pseudonym of an address however it is written;
    free-text redaction also pseudonymises a phone number by its digits, a plate without spaces
    and a @handle in lower case. A subject gives their number as they write it.
    """
    text = identifier.strip()
    forms = [text]
    digits = re.sub(r"\D", "", text)
    if _PHONE_LIKE.fullmatch(text) and 8 <= len(digits) <= 15 and text.count(".") != 3:
        forms.append(digits)
    if _PLATE_LIKE.fullmatch(text):
        forms.append(re.sub(r"[ -]", "", text).upper())
    if text.startswith("@"):
        forms.append(text.lower())
    return list(dict.fromkeys(forms))


def subject_pseudonyms_all_forms(identifier: str, keyring) -> list[str]:
    """The pseudonyms of every form of ``identifier`` under every key of ``keyring``."""
    from impetus.privacy import subject_pseudonyms

    found = []
    for form in identifier_forms(identifier):
        found += subject_pseudonyms(form, keyring)
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------- Spark plumbing

def governance_session(settings: Settings, app_name: str):
    """A child of the shared Spark session with :data:`GOVERNANCE_CONF` set on it alone."""
    from impetus.spark import spark_session

    shared = spark_session(settings, app_name)
    session = shared.newSession()
    for key, value in GOVERNANCE_CONF.items():
        session.conf.set(key, value)
    # VACUUM lists a table's folders with this many tasks; Spark's default (10 000) turns seconds
    # into minutes on a laptop, and more tasks than cores gains nothing
    session.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism",
                     str(max(shared.sparkContext.defaultParallelism, 1)))
    return session


def _delta_log(spark, path: str):
    return spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)


def _none(spark):
    return spark._jvm.scala.Option.empty()


def current_version(spark, path: str) -> int:
    log = _delta_log(spark, path)
    return int(log.update(False, _none(spark), _none(spark)).version())


def _file_system(spark, uri: str):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark._jsparkSession.sessionState().newHadoopConf()), path


def _read_text(spark, uri: str) -> str:
    fs, path = _file_system(spark, uri)
    stream = fs.open(path)
    try:
        return spark._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def offsets_version(offsets_text: str) -> int:
    """The Delta version an offsets file of a stream's checkpoint points at (``v1``, the batch's
    metadata, then one line per source): the stream has read every version before it."""
    lines = [line for line in offsets_text.splitlines() if line.strip()]
    sources = [json.loads(line) for line in lines[2:]]
    if not sources:
        raise GovernanceError("a stream checkpoint's offsets file names no source")
    # within that version, files before ``index`` (or, for an initial snapshot, the snapshot of
    # that version) are read: either way the version itself is still needed
    return min(int(s["reservoirVersion"]) for s in sources)


@dataclass(frozen=True)
class StreamPosition:
    """Where a silver stream is in its bronze table."""
    silver: str
    next_version: int   # first version it has not read
    needs_from: int     # first version it needs to restart: Spark rebuilds the last batch on restart


def silver_streams(spark, settings: Settings, bronze: str) -> list[StreamPosition]:
    """The silver streams reading ``bronze.<bronze>`` that have run, and where they are (a stream
    that never ran reads a snapshot of the table when it starts: nothing to keep for it)."""
    from impetus.lake import SILVER_FLOWS

    positions = []
    for flow in SILVER_FLOWS:
        if flow.bronze != bronze:
            continue
        checkpoint = settings.checkpoint_path(f"silver/{flow.silver}/{flow.bronze}")
        fs, commits = _file_system(spark, f"{checkpoint}/commits")
        if not fs.exists(commits):
            continue
        batches = [int(s.getPath().getName()) for s in fs.listStatus(commits) if s.getPath().getName().isdigit()]
        if not batches:
            continue
        last = max(batches)
        previous = f"{checkpoint}/offsets/{last - 1}"
        fs, previous_path = _file_system(spark, previous)
        positions.append(StreamPosition(
            silver=f"silver.{flow.silver}",
            next_version=offsets_version(_read_text(spark, f"{checkpoint}/offsets/{last}")),
            # the first batch started from a snapshot: its whole history is needed
            needs_from=offsets_version(_read_text(spark, previous)) if last and fs.exists(previous_path) else 0))
    return positions


def _silver_reading(spark, settings: Settings, tables: list[str]) -> dict[str, list[StreamPosition]]:
    """``{bronze table: [positions of the silver streams reading it]}`` for the bronze ones of ``tables``."""
    found = {}
    for qualified in tables:
        layer, name = qualified.split(".", 1)
        if layer == "bronze":
            streams = silver_streams(spark, settings, name)
            if streams:
                found[qualified] = streams
    return found


def _run_silver(settings: Settings, silver: list[str], why: str, log) -> None:
    from impetus.lake import build_silver
    from impetus.promotion import GatesFailed

    silver = sorted(set(silver))
    if silver:
        log(f"building {', '.join(silver)}: {why}")
        try:
            build_silver(settings, silver, log=log)
        except GatesFailed as err:
            # the stream moved past the held-back batches (quarantined and alerted): deleting may go on
            log(f"silver is up to date with bronze, but a gate held back some batches:\n{err}")


def _catch_up_silver(spark, settings: Settings, tables: list[str], log) -> None:
    """Bring silver up to date with the bronze ``tables`` about to be deleted from.

    A silver stream that has not read a bronze commit yet would, after the VACUUM, find its files
    gone, and after the log is cut, the commit itself: silver would fail for good. So it reads them
    first (its MERGE is incremental: seconds when it is nearly up to date)."""
    behind = [s.silver for bronze, streams in _silver_reading(spark, settings, tables).items()
              for s in streams if s.next_version <= current_version(spark, table_path(settings, bronze))]
    _run_silver(settings, behind, "it has not read every bronze commit yet", log)


def _commit_info(spark, path: str, version: int) -> dict:
    """The commitInfo action of one commit, read from its log file (no Spark job)."""
    text = _read_text(spark, f"{path.rstrip('/')}/_delta_log/{version:020d}.json")
    for line in text.splitlines():
        if line.startswith('{"commitInfo"'):
            return json.loads(line)["commitInfo"]
    return {}


def _vacuum_zero(spark, path: str) -> int:
    """VACUUM with zero retention; the number of files it removed (from its VACUUM END commit)."""
    spark.sql(f"VACUUM delta.`{path}` RETAIN 0 HOURS").collect()
    info = _commit_info(spark, path, current_version(spark, path))
    if info.get("operation") != "VACUUM END":
        return 0
    return int(info.get("operationMetrics", {}).get("numDeletedFiles", 0))


def _purge_deletion_vectors(spark, path: str) -> None:
    """Rows a deletion vector marks deleted are still in their files: rewrite those files."""
    protocol = _delta_log(spark, path).update(False, _none(spark), _none(spark)).protocol()
    if protocol.writerFeatureNames().contains("deletionVectors"):
        spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)").collect()


def _cut_log(spark, path: str, boundary: int) -> int:
    """Write a checkpoint at version ``boundary`` and remove every log file of an older version
    (commits, checksums, checkpoints); the number of files removed."""
    log = _delta_log(spark, path)
    snapshot = log.getSnapshotAt(boundary, _none(spark), _none(spark), False)
    log.checkpoint(snapshot, _none(spark))
    fs, folder = _file_system(spark, f"{path.rstrip('/')}/_delta_log")
    removed = 0
    entries = list(fs.listStatus(folder))
    for entry in list(entries):
        if entry.isDirectory():  # _staged_commits, _commits: files named by version too
            entries += list(fs.listStatus(entry.getPath()))
    for entry in entries:
        match = _VERSIONED_LOG_FILE.match(entry.getPath().getName())
        if entry.isDirectory() or not match:
            continue
        if int(match.group(2) or match.group(1)) < boundary:
            fs.delete(entry.getPath(), False)
            removed += 1
    return removed


def _forget(spark, settings: Settings, deleted: dict[str, int], log) -> dict[str, dict]:
    """Make rows deleted from tables gone for good. ``deleted`` is ``{table: version of its delete}``.

    1. Files: deletion vectors are purged and VACUUM with zero retention removes every file the
       newest version does not use, those of the deleted rows among them.
    2. Silver streams reading a bronze table here run once more: they skip the delete's commits
       (``skipChangeCommits``), and their next restart then needs nothing before the delete.
    3. History: the log before the delete is cut (its statistics and checksums repeat values
       of the deleted rows), except what a silver stream still needs (logged).
    Returns per table ``files_removed``, ``log_files_removed``, ``history_from``, ``version_after``.
    """
    done = {}
    for qualified in deleted:
        path = table_path(settings, qualified)
        _purge_deletion_vectors(spark, path)
        done[qualified] = {"files_removed": _vacuum_zero(spark, path)}
    reading = _silver_reading(spark, settings, list(deleted))
    if reading:
        _run_silver(settings, [s.silver for streams in reading.values() for s in streams],
                    "it reads past the deletes before their history is cut", log)
        reading = _silver_reading(spark, settings, list(reading))
    for qualified, first_version in deleted.items():
        boundary = first_version
        needed = [s for s in reading.get(qualified, []) if s.needs_from < boundary]
        if needed:
            # rows landed while this run deleted: their commits stay until silver has read them
            boundary = min(s.needs_from for s in needed)
            log(f"{qualified}: {', '.join(s.silver for s in needed)} still needs versions from {boundary}; "
                f"the history before {first_version} is cut at the next run")
        path = table_path(settings, qualified)
        done[qualified].update(log_files_removed=_cut_log(spark, path, boundary), history_from=boundary,
                               version_after=current_version(spark, path))
    return done


def _append_audit(spark, settings: Settings, qualified: str, rows: list[dict]) -> None:
    from impetus.schemas import spark_schema

    if not rows:
        return
    schema = load_schema(qualified, settings.schemas_dir)
    frame = spark.createDataFrame(rows, schema=spark_schema(schema))
    frame.write.format("delta").mode("append").save(table_path(settings, qualified))


def _existing(spark, settings: Settings, tables) -> list[str]:
    return [q for q in tables if table_exists(spark, table_path(settings, q))]


# --------------------------------------------------------------------------- retention

def enforce_retention(settings: Settings, now: datetime | None = None, dry_run: bool = False,
                      tables: list[str] | None = None, log=progress) -> list[dict]:
    """Delete the rows of every existing table (or of ``tables``) older than its declared retention,
    remove them physically (VACUUM, log cut), and append one row per table to ``audit.retention_runs``.

    With ``dry_run`` nothing changes: each entry says how many rows would go. Returns one dict per
    table in the order of :func:`impetus.lake.lake_tables`.
    """
    now = _utc(now or settings.now())
    run_id = f"ret-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    policies = {p.table: p for p in retention_policies(settings)}
    unknown = sorted(set(tables or ()) - set(policies))
    if unknown:
        raise GovernanceError(f"no table {', '.join(unknown)} is declared; declared: {', '.join(policies)}")
    spark = governance_session(settings, "enforce_retention")
    names = _existing(spark, settings, [q for q in policies if not tables or q in tables])
    if not dry_run:
        _catch_up_silver(spark, settings, [q for q in names if policies[q].cutoff(now)], log)
    results = []
    try:
        for qualified in names:
            results.append(_retain_table(spark, settings, policies[qualified], now, dry_run, log))
        deleted = {r["table"]: r["version_before"] + 1 for r in results if r["rows_deleted"] and not dry_run}
        if deleted:
            for table, forgotten in _forget(spark, settings, deleted, log).items():
                result = next(r for r in results if r["table"] == table)
                result.update(forgotten, finished_at=datetime.now(timezone.utc))
                log(f"{table}: {result['files_removed']} files removed, history from version "
                    f"{result['history_from']}")
    finally:
        # what was deleted is recorded even when a later table fails
        if not dry_run:
            _append_audit(spark, settings, RETENTION_RUNS, [
                {**{k: r[k] for k in ("table", "retention", "time_column", "cutoff", "rows_deleted", "files_removed",
                                      "version_before", "version_after", "history_from", "outcome", "started_at",
                                      "finished_at")}, "run_id": run_id} for r in results])
    for result in results:
        result["run_id"] = None if dry_run else run_id
    return results


def _retain_table(spark, settings: Settings, policy: RetentionPolicy, now: datetime, dry_run: bool, log) -> dict:
    path = table_path(settings, policy.table)
    started = datetime.now(timezone.utc)
    before = current_version(spark, path)
    result = {"table": policy.table, "retention": policy.retention, "time_column": policy.column,
              "cutoff": policy.cutoff(now), "rows_deleted": 0, "files_removed": 0, "log_files_removed": 0,
              "version_before": before, "version_after": before, "history_from": None, "started_at": started}
    predicate = policy.predicate(now)
    if predicate is None:
        log(f"{policy.table}: not aged row by row ({policy.note})")
        return {**result, "outcome": "not aged: " + policy.note, "finished_at": datetime.now(timezone.utc)}
    if dry_run:
        count = spark.read.format("delta").load(path).where(predicate).count()
        log(f"{policy.table}: {count} rows older than {policy.retention} by {policy.column} would be deleted")
        return {**result, "rows_deleted": count, "outcome": "dry run", "finished_at": datetime.now(timezone.utc)}
    deleted = int(spark.sql(f"DELETE FROM delta.`{path}` WHERE {predicate}").first()["num_affected_rows"])
    log(f"{policy.table}: {deleted} rows older than {policy.retention} by {policy.column} deleted")
    return {**result, "rows_deleted": deleted, "outcome": "deleted" if deleted else "nothing older than the retention",
            "version_after": current_version(spark, path), "finished_at": datetime.now(timezone.utc)}


# --------------------------------------------------------------------------- erasure

def erase_subject(settings: Settings, identifier: str, requested_by: str | None = None, reason: str | None = None,
                  log=progress, keyring=None) -> dict:
    """Delete every row of one data subject from every table but the audit tables, physically.

    ``identifier`` is the subject's value as they give it (an e-mail address, an IP address, a
    phone number, a handle...): it is never written anywhere. ``requested_by`` is recorded
    pseudonymised and ``reason`` redacted in ``audit.erasure_requests``. Gold aggregates hold no
    identifier; those computed from tables that lost rows are listed under ``gold_to_recompute``
    (the next gold build recomputes them from silver).
    """
    from impetus.privacy import load_keyring, pseudonym, redact_text

    if not identifier or not identifier.strip():
        raise GovernanceError("no subject given: pass the identifier the subject is known by (e-mail, address...)")
    keyring = keyring or load_keyring(settings, create=False)
    pseudonyms = subject_pseudonyms_all_forms(identifier, keyring)
    request_id = f"era-{uuid.uuid4().hex[:12]}"
    requested_at = datetime.now(timezone.utc)
    targets = erasable_tables(settings)
    spark = governance_session(settings, "erase_subject")
    names = _existing(spark, settings, targets)
    log(f"erasure {request_id}: {len(pseudonyms)} pseudonyms ({len(keyring.keys)} keys), "
        f"{len(names)} tables with personal columns")
    _catch_up_silver(spark, settings, names, log)
    subject = spark.createDataFrame([(p,) for p in pseudonyms], "pseudonym string")
    tables, status = [], "completed"
    try:
        for qualified in names:
            tables.append(_erase_from_table(spark, settings, qualified, targets[qualified], subject, log))
        # also where nothing matched now: an older version may hold the subject (a row a MERGE replaced)
        forgotten = _forget(spark, settings, {t["table"]: t["first_version"] for t in tables}, log)
        for entry in tables:
            entry.update(forgotten[entry["table"]])
            log(f"{entry['table']}: {entry['files_removed']} files removed, history from version "
                f"{entry['history_from']}")
    except Exception as err:
        status = f"failed after {len(tables)} tables: {type(err).__name__}"
        raise
    finally:
        # the request is recorded with what was done, also when a table failed
        _append_audit(spark, settings, ERASURE_REQUESTS, [{
            "request_id": request_id, "requested_at": requested_at, "finished_at": datetime.now(timezone.utc),
            "pseudonyms": pseudonyms, "key_ids": [k for k, _ in keyring.keys],
            "requested_by": pseudonym(requested_by, keyring.current) if requested_by else None,
            "reason": redact_text(reason, keyring.current) if reason else None,
            "rows_deleted": {t["table"]: t["rows_deleted"] for t in tables},
            "files_removed": {t["table"]: t.get("files_removed", 0) for t in tables},
            "rows_deleted_total": sum(t["rows_deleted"] for t in tables), "status": status}])
    touched = [t["table"] for t in tables if t["rows_deleted"]]
    summary = {"request_id": request_id, "requested_at": requested_at.isoformat(), "pseudonyms": pseudonyms,
               "key_ids": [k for k, _ in keyring.keys], "tables": tables,
               "rows_deleted": sum(t["rows_deleted"] for t in tables),
               "gold_to_recompute": gold_to_recompute(settings, touched),
               "kafka": kafka_exposure(settings), "status": status}
    log(f"erasure {request_id}: {summary['rows_deleted']} rows deleted from {len(touched)} tables")
    return summary


def _erase_from_table(spark, settings: Settings, qualified: str, targets, subject, log) -> dict:
    from delta.tables import DeltaTable

    path = table_path(settings, qualified)
    before = current_version(spark, path)
    # a MERGE against the pseudonyms: a DELETE would record them in its commit's predicate
    metrics = (DeltaTable.forPath(spark, path).alias("t")
               .merge(subject.alias("s"), subject_condition(targets))
               .whenMatchedDelete().execute().first())
    deleted = int(metrics["num_deleted_rows"])
    after = current_version(spark, path)
    log(f"{qualified}: {deleted} rows of the subject deleted")
    return {"table": qualified, "rows_deleted": deleted, "version_before": before,
            "first_version": before + 1 if after > before else before,
            "columns": [f"{path_} ({how})" for path_, how in targets]}


# --------------------------------------------------------------------------- lineage and Kafka

def _named_tables(text: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"\b((?:bronze|silver|gold|quarantine)\.[a-z_]+[a-z])\b", text)))


def table_inputs(settings: Settings) -> dict[str, list[str]]:
    """``{table: [tables or topics it is computed from]}``: bronze from its declared topics, silver
    from the silver flows, gold from what its description names (``Recomputed from gold.x``) or,
    for gold.builders, from the tables its builder in :mod:`impetus.lake` reads."""
    from impetus.lake import GOLD_BUILDERS, SILVER_FLOWS
    from impetus.landing import bronze_tables

    inputs: dict[str, list[str]] = {}
    landed = []
    for table in bronze_tables(settings):
        inputs[table.schema_name] = [f"topic {t}" for t in table.topics]
        landed += inputs[table.schema_name]
    inputs["quarantine.landing"] = landed
    for flow in SILVER_FLOWS:
        inputs.setdefault(f"silver.{flow.silver}", []).append(f"bronze.{flow.bronze}")
    # operators' decisions (and who made them) are copied into silver.alerts by impetus.lake._apply_feedback
    inputs["silver.alerts"].append("silver.alert_feedback")

    def builder_inputs(function, seen=()) -> list[str]:
        source = inspect.getsource(function)
        found = re.findall(r"['\"]((?:silver|gold)\.\w+)['\"]", source)
        for called in re.findall(r"\bgold_(\w+)\(spark", source):
            if called in GOLD_BUILDERS and called not in seen and GOLD_BUILDERS[called] is not function:
                found += builder_inputs(GOLD_BUILDERS[called], (*seen, called))
        return list(dict.fromkeys(found))

    for qualified in lake_tables(settings):
        layer, name = qualified.split(".", 1)
        if layer != "gold":
            continue
        description = load_schema(qualified, settings.schemas_dir).get("description", "")
        clause = re.search(r"Recomputed from (.*?) by ", description)
        named = _named_tables(clause.group(1)) if clause else []
        if not named and name in GOLD_BUILDERS:
            named = builder_inputs(GOLD_BUILDERS[name])
        inputs[qualified] = named
    return inputs


def gold_to_recompute(settings: Settings, tables: list[str]) -> list[str]:
    """The gold tables computed, directly or through other gold tables, from any of ``tables``."""
    inputs = table_inputs(settings)
    affected = set(tables)
    changed = True
    while changed:
        changed = False
        for table, sources in inputs.items():
            if table.startswith("gold.") and table not in affected and affected & set(sources):
                affected.add(table)
                changed = True
    return sorted(t for t in affected if t.startswith("gold.") and t not in tables)


def _human_ms(value: int) -> str:
    if value < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}ms"


def kafka_exposure(settings: Settings) -> list[dict]:
    """The topics whose messages carry personal fields, and how long the broker keeps them.

    Erasure does not delete from Kafka: a topic is an append-only log; the broker deletes whole
    segments once their records are older than the topic's retention. That bounds how long a
    subject's messages stay there.
    """
    exposed = []
    for topic in declared_topics(settings):
        if not topic.schema:
            continue
        tags = privacy_tags(load_schema(topic.schema, settings.schemas_dir))
        personal = sorted(f for f, t in tags.items() if t in PERSONAL_TAGS)
        if personal:
            exposed.append({"topic": topic.name, "retention": _human_ms(topic.retention_ms),
                            "retention_ms": topic.retention_ms, "cleanup": topic.cleanup, "personal_fields": personal})
    return exposed


# --------------------------------------------------------------------------- inventory

def _field_type(prop: dict) -> str:
    from impetus.access import column_type

    return column_type(prop)


def _fields(schema: dict, treatments: dict[str, str], prefix: str = "", inherited: str | None = None) -> list[dict]:
    fields = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        tag = prop.get("x-privacy")
        effective = inherited if (tag in (None, "none") and inherited) else tag
        fields.append({"name": f"{prefix}{name}", "type": _field_type(prop), "privacy": tag,
                       "treatment": treatments.get(effective or "none", "undeclared"),
                       "required": name in required, "description": prop.get("description", "")})
        if _main_type(prop) == "object" and "properties" in prop:
            fields += _fields(prop, treatments, f"{prefix}{name}.", effective if effective != "none" else None)
    return fields


def inventory(settings: Settings) -> dict:
    """The record of processing: every topic and table with every field, its privacy tag and
    treatment; purpose, owner, retention; what feeds what; where erasure looks."""
    from impetus.landing import bronze_tables

    landed_in: dict[str, list[str]] = {}
    for table in bronze_tables(settings):
        for topic in table.topics:
            landed_in.setdefault(topic, []).append(table.schema_name)
    topics = []
    for topic in declared_topics(settings):
        schema = load_schema(topic.schema, settings.schemas_dir) if topic.schema else {"properties": {}}
        landed = landed_in.get(topic.name, [])
        treatments = dict(TREATMENT_ON_TOPIC)
        if not landed:
            treatments.update({t: f"raw on the topic for {_human_ms(topic.retention_ms)}; not landed"
                               for t in PERSONAL_TAGS})
        topics.append({
            "topic": topic.name, "schema": topic.schema, "partitions": topic.partitions, "policy": topic.policy,
            "retention": _human_ms(topic.retention_ms), "retention_ms": topic.retention_ms, "cleanup": topic.cleanup,
            "description": schema.get("description", ""), "landed_in": landed,
            "fields": _fields(schema, treatments)})
    inputs = table_inputs(settings)
    feeds: dict[str, list[str]] = {}
    for table, sources in inputs.items():
        for source in sources:
            feeds.setdefault(source, []).append(table)
    erasable = erasable_tables(settings)
    erasure_exempt = {q for q in lake_tables(settings) if q.split(".", 1)[0] == AUDIT_LAYER}
    tables = []
    for qualified in sorted(lake_tables(settings), key=lambda t: (LAYERS.index(t.split(".", 1)[0]), t)):
        schema = load_schema(qualified, settings.schemas_dir)
        policy = retention_policy(qualified, schema)
        fields = _fields(schema, TREATMENT_IN_LAKE)
        tables.append({
            "table": qualified, "layer": qualified.split(".", 1)[0],
            "description": schema.get("description", ""), "purpose": schema.get("x-purpose"),
            "owner": schema.get("x-owner"), "policy": schema.get("x-policy"),
            "lawful_basis": schema.get("x-lawful-basis"), "retention": policy.retention,
            "retention_column": policy.column,
            "retention_note": policy.note, "key": list(schema.get("x-key") or []),
            "partition_by": list(schema.get("x-partition-by") or []),
            "fed_by": inputs.get(qualified, []), "feeds": feeds.get(qualified, []),
            "personal_fields": [f["name"] for f in fields if f["privacy"] in PERSONAL_TAGS],
            "erasure": [{"column": c, "match": how} for c, how in erasable.get(qualified, [])],
            "erasure_note": ("never erased: the record of what was erased" if qualified in erasure_exempt
                             else "" if qualified in erasable else "no personal column"),
            "fields": fields})
    used = {t.schema for t in declared_topics(settings)}
    unused = [{"schema": name, "fields": _fields(load_schema(name, settings.schemas_dir), TREATMENT_ON_TOPIC)}
              for name in schema_names(settings.schemas_dir) if name not in used]
    activities = [{"policy": p.name, "purpose": p.purpose, "lawful_basis": p.lawful_basis, "owner": p.owner,
                   "kafka": p.kafka, "dead_letters": p.dead_letters, "lake": p.lake,
                   "topics": [t["topic"] for t in topics if t["policy"] == p.name],
                   "tables": [t["table"] for t in tables if t["policy"] == p.name]}
                  for p in load_policies(settings.schemas_dir).values()]
    return {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "schemas_dir": str(settings.schemas_dir), "privacy_tags": TREATMENT_IN_LAKE,
            "policies": activities, "topics": topics, "tables": tables, "schemas_without_topic": unused,
            "kafka_exposure": kafka_exposure(settings)}


def _cell(text) -> str:
    return " ".join(str(text if text is not None else "").split()).replace("|", "\\|")


def inventory_markdown(settings: Settings, record: dict | None = None) -> str:
    """:func:`inventory` as a Markdown document (for the DPIA file, or a wiki)."""
    record = record or inventory(settings)
    lines = ["# Data inventory: record of processing", "",
             f"Generated from `{record['schemas_dir']}` on {record['generated_at']} by `impetus.governance`. "
             "Every field of every topic and table, with its privacy tag (`x-privacy`) and the treatment applied.",
             "", "## Treatments", "", "| tag | on a topic | in the lake |", "| --- | --- | --- |"]
    lines += [f"| `{tag}` | {_cell(TREATMENT_ON_TOPIC[tag])} | {_cell(TREATMENT_IN_LAKE[tag])} |"
              for tag in TREATMENT_IN_LAKE]
    lines += ["", "## Processing activities", "",
              "Declared once in `schemas/policies.yaml`: each topic and table names its policy and keeps its data "
              "no longer than the policy allows (Kafka, dead letters, lake).", "",
              "| policy | purpose | lawful basis | owner | Kafka / dead letters / lake | topics | tables |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| `{a['policy']}` | {_cell(a['purpose'])} | {_cell(a['lawful_basis'])} | {_cell(a['owner'])} | "
              f"{a['kafka']} / {a['dead_letters']} / {a['lake']} | {', '.join(f'`{t}`' for t in a['topics'])} | "
              f"{', '.join(f'`{t}`' for t in a['tables'])} |" for a in record["policies"]]
    lines += ["", "## Data flows", "", "| topic | landed in | then |", "| --- | --- | --- |"]
    tables = {t["table"]: t for t in record["tables"]}
    for topic in record["topics"]:
        onward = _downstream(tables, topic["landed_in"])
        lines.append(f"| `{topic['topic']}` | {', '.join(f'`{b}`' for b in topic['landed_in']) or 'not landed'} | "
                     f"{', '.join(f'`{f}`' for f in onward)} |")
    lines += ["", "## Personal data on Kafka", "",
              "Erasure and retention act on the lake; the broker deletes a topic's records once they are older "
              "than its retention, which bounds how long a subject's raw messages stay there.", "",
              "| topic | retention | personal fields |", "| --- | --- | --- |"]
    lines += [f"| `{e['topic']}` | {e['retention']} | {', '.join(f'`{f}`' for f in e['personal_fields'])} |"
              for e in record["kafka_exposure"]]
    lines += ["", "## Topics"]
    for topic in record["topics"]:
        lines += ["", f"### {topic['topic']}", "", _cell(topic["description"]), "",
                  f"- **Policy:** `{topic['policy']}`; **schema:** `{topic['schema']}`; "
                  f"**partitions:** {topic['partitions']}; "
                  f"**retention:** {topic['retention']} ({topic['cleanup']})",
                  f"- **Landed in:** {', '.join(f'`{b}`' for b in topic['landed_in']) or 'not landed'}", ""]
        lines += _field_table(topic["fields"])
    lines += ["", "## Tables"]
    for table in record["tables"]:
        erasure = ", ".join(f"`{e['column']}` ({e['match']})" for e in table["erasure"]) or table["erasure_note"]
        lines += ["", f"### {table['table']}", "", _cell(table["description"]), "",
                  f"- **Policy:** `{table['policy']}`; **lawful basis:** {_cell(table['lawful_basis'])}",
                  f"- **Purpose:** {_cell(table['purpose'])}", f"- **Owner:** {_cell(table['owner'])}",
                  f"- **Retention:** {_cell(table['retention'])}"
                  + (f" by `{table['retention_column']}`" if table["retention_column"] else "")
                  + f" ({_cell(table['retention_note'])})",
                  f"- **Fed by:** {', '.join(f'`{s}`' for s in table['fed_by']) or 'its job only'}",
                  f"- **Feeds:** {', '.join(f'`{s}`' for s in table['feeds']) or 'nothing in the lake'}",
                  f"- **Personal fields:** {', '.join(f'`{f}`' for f in table['personal_fields']) or 'none'}",
                  f"- **Erasure looks at:** {erasure}", ""]
        lines += _field_table(table["fields"])
    if record["schemas_without_topic"]:
        lines += ["", "## Schemas no topic uses"]
        for entry in record["schemas_without_topic"]:
            lines += ["", f"### {entry['schema']}", ""] + _field_table(entry["fields"])
    return "\n".join(lines) + "\n"


def _downstream(tables: dict[str, dict], start: list[str]) -> list[str]:
    """Every table computed, directly or not, from the tables ``start``, in layer order."""
    found, frontier = set(), list(start)
    while frontier:
        for table in tables.get(frontier.pop(), {}).get("feeds", []):
            if table not in found:
                found.add(table)
                frontier.append(table)
    return sorted(found, key=lambda t: (LAYERS.index(t.split(".", 1)[0]), t))


def _field_table(fields: list[dict]) -> list[str]:
    lines = ["| field | type | privacy | treatment | description |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{f['name']}` | `{f['type']}` | {f['privacy']} | {_cell(f['treatment'])} | "
              f"{_cell(f['description'])} |" for f in fields]
    return lines


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data inventory</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 80em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #eee; text-align: left; } .personal { background: #fff3e0; } code { font-size: 0.95em; }
</style></head><body>
<h1>Data inventory: record of processing</h1>
<p>Generated from <code>{{ r.schemas_dir }}</code> on {{ r.generated_at }}. Rows on an orange background are
personal fields.</p>
<h2>Processing activities</h2>
<p>Declared once in <code>schemas/policies.yaml</code>: each topic and table names its policy and keeps its data
no longer than the policy allows.</p>
<table><tr><th>policy</th><th>purpose</th><th>lawful basis</th><th>owner</th><th>Kafka / dead letters / lake</th>
<th>topics</th><th>tables</th></tr>
{% for a in r.policies %}<tr><td><code>{{ a.policy }}</code></td><td>{{ a.purpose }}</td>
<td>{{ a.lawful_basis }}</td><td>{{ a.owner }}</td><td>{{ a.kafka }} / {{ a.dead_letters }} / {{ a.lake }}</td>
<td>{{ a.topics | join(", ") }}</td><td>{{ a.tables | join(", ") }}</td></tr>{% endfor %}</table>
<h2>Personal data on Kafka</h2>
<table><tr><th>topic</th><th>retention</th><th>personal fields</th></tr>
{% for e in r.kafka_exposure %}<tr><td><code>{{ e.topic }}</code></td><td>{{ e.retention }}</td>
<td>{{ e.personal_fields | join(", ") }}</td></tr>{% endfor %}</table>
{% macro fields(list) %}<table>
<tr><th>field</th><th>type</th><th>privacy</th><th>treatment</th><th>description</th></tr>
{% for f in list %}<tr{% if f.privacy in personal %} class="personal"{% endif %}><td><code>{{ f.name }}</code></td>
<td><code>{{ f.type }}</code></td><td>{{ f.privacy }}</td><td>{{ f.treatment }}</td><td>{{ f.description }}</td></tr>
{% endfor %}</table>{% endmacro %}
<h2>Topics</h2>
{% for t in r.topics %}<h3 id="{{ t.topic }}">{{ t.topic }}</h3><p>{{ t.description }}</p>
<p>Policy <code>{{ t.policy }}</code>; schema <code>{{ t.schema }}</code>, {{ t.partitions }} partitions,
retention {{ t.retention }} ({{ t.cleanup }});
landed in {{ t.landed_in | join(", ") or "nothing (not landed)" }}.</p>{{ fields(t.fields) }}{% endfor %}
<h2>Tables</h2>
{% for t in r.tables %}<h3 id="{{ t.table }}">{{ t.table }}</h3><p>{{ t.description }}</p>
<ul><li>Policy: <code>{{ t.policy }}</code>; lawful basis: {{ t.lawful_basis }}</li>
<li>Purpose: {{ t.purpose }}</li><li>Owner: {{ t.owner }}</li>
<li>Retention: {{ t.retention }}{% if t.retention_column %} by <code>{{ t.retention_column }}</code>{% endif %}
({{ t.retention_note }})</li><li>Fed by: {{ t.fed_by | join(", ") or "its job only" }}</li>
<li>Feeds: {{ t.feeds | join(", ") or "nothing in the lake" }}</li>
<li>Erasure looks at: {% for e in t.erasure %}<code>{{ e.column }}</code> ({{ e.match }}){% if not loop.last %},
{% endif %}{% else %}{{ t.erasure_note }}{% endfor %}</li></ul>{{ fields(t.fields) }}{% endfor %}
{% for s in r.schemas_without_topic %}<h3>{{ s.schema }} (no topic)</h3>{{ fields(s.fields) }}{% endfor %}
</body></html>
"""


def inventory_html(settings: Settings, record: dict | None = None) -> str:
    """:func:`inventory` as one self-contained HTML page."""
    import jinja2

    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(_HTML)
    return template.render(r=record or inventory(settings), personal=PERSONAL_TAGS)


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value) -> str:
    """JSON of a run's result (datetimes as ISO 8601), for the jobs' stdout."""
    return json.dumps(value, indent=2, default=_json_default)
