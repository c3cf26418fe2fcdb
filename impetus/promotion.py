"""Gated promotion: no batch reaches silver or gold without passing its table's gate.

:func:`impetus.lake.build_silver` hands each micro-batch, and :func:`impetus.lake.build_gold`
each recomputed table, to :meth:`Promotion.admit` after it is conformed and de-duplicated and
before it is written. The gate is the table's Great Expectations suite (:mod:`impetus.gates`,
derived from the declaration). When it fails:

1. the batch is not written: the table keeps what it had;
2. its rows go to ``quarantine.gates`` with the gate result, personal values replaced by
   keyed pseudonyms and image bytes removed (nothing is silently dropped);
3. a ``data_quality`` alert goes to ``alerts.operations``;
4. the build goes on with the other tables, then fails with :class:`GatesFailed`, which names
   every failed expectation and its Data Docs page.

Every gate run, passed or failed, is appended to ``audit.gate_runs`` when the build ends.
A silver batch held back is not retried by the next run (the stream has moved past it): fix
the cause, then rebuild the table from bronze (``impetus lake silver --reprocess TABLE``).
"""


import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from impetus.config import Settings
from impetus.gates import GateResult, data_quality_alert, validate
from impetus.schemas import load_schema, spark_schema

QUARANTINE = "quarantine.gates"
GATE_RUNS = "audit.gate_runs"
OPERATIONS_TOPIC = "alerts.operations"
# a quarantined row is kept as JSON up to this many characters
ROW_LIMIT = 16 * 1024
# a base64 run this long is image bytes or a blob, never an identifier (impetus.gates.IMAGE_BYTES_MIN_RUN)
_BLOB = re.compile(r"(?:data:image/[a-z+.-]+;base64,)?[A-Za-z0-9+/]{512,}={0,2}")


class GatesFailed(RuntimeError):
    """One or more batches broke their gate; the message lists each failed expectation, where the
    batch was quarantined, and its Data Docs page."""

    def __init__(self, held_back: list[dict]):
        self.held_back = held_back
        lines = [f"{len(held_back)} batch(es) held back by their data-quality gate; nothing of them was promoted:"]
        for item in held_back:
            result: GateResult = item["result"]
            lines.append(result.explain())
            lines.append(f"  quarantined: {item['quarantined']} row(s) in {QUARANTINE} (batch = '{result.batch_name}')")
            lines.append(f"  alert: {item['alert']}")
        lines.append("Fix the producing job or the data, then rebuild: `impetus lake silver --reprocess TABLE` "
                     "for a silver table, `impetus lake gold` for gold. docs/gates.md explains each rule.")
        super().__init__("\n".join(lines))


def _inherit(child: dict, tag: str) -> dict:
    """A nested field's declaration with its own tag, or its parent's when it has none."""
    own = child.get("x-privacy") or "none"
    return {**child, "x-privacy": own if own != "none" else tag}


def _treat(value, prop: dict, key: bytes):
    """A value of a quarantined row, treated by its declared tag (a leak is why a batch is here)."""
    from impetus.privacy import PSEUDONYM, pseudonym, redact_text

    tag = prop.get("x-privacy") or "none"
    if value is None:
        return None
    if isinstance(value, dict):
        inner = prop.get("properties") or {}
        items = prop.get("additionalProperties") if isinstance(prop.get("additionalProperties"), dict) else {}
        return {k: _treat(v, _inherit(inner.get(k, items), tag), key) for k, v in value.items()}
    if isinstance(value, list):
        return [_treat(v, _inherit(prop.get("items") or {}, tag), key) for v in value]
    if tag == "pseudonymise":
        text = str(value)
        return text if PSEUDONYM.fullmatch(text) else pseudonym(text, key)
    if tag == "redact" and isinstance(value, str):
        return redact_text(value, key)
    return value


def quarantine_row(row_json: str, qualified: str, key: bytes, properties: dict | None = None) -> str:
    """One row of a held-back batch as it may be kept: each column treated by its tag, any raw
    identifier left in the text pseudonymised, image bytes removed, cut at :data:`ROW_LIMIT`.
    ``properties`` (the table's declared columns) saves looking them up for every row."""
    from impetus.privacy import redacted_excerpt

    properties = properties if properties is not None else load_schema(qualified)["properties"]
    try:
        row = json.loads(row_json)
        text = json.dumps({k: _treat(v, properties.get(k, {}), key) for k, v in row.items()}, ensure_ascii=False)
    except ValueError:
        text = row_json
    text = _BLOB.sub(lambda m: f"<{len(m.group(0))} base64 characters removed>", text)
    return redacted_excerpt(text, ROW_LIMIT, key)


@dataclass
class Promotion:
    """The gates of one build (silver, gold, or both): admits or holds back batches, then accounts for them."""
    spark: object
    settings: Settings
    log: object = field(default=print, repr=False)
    now: datetime | None = None
    runs: list[dict] = field(default_factory=list)
    held_back: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.now = self.now or self.settings.now()

    def admit(self, rows, qualified: str, source: str, label: str = "", txn: tuple[str, int] | None = None) -> bool:
        """Run the gate of ``qualified`` on ``rows`` (conformed; cache them around this and the write).

        True: write them. False: they were held back (quarantined, alerted, reported at :meth:`finish`).
        An empty batch is admitted without a gate: it has no row to break a rule. ``txn`` (app id,
        version) makes the quarantine write of a replayed streaming batch a no-op.
        """
        count = rows.count()
        if count == 0:
            return True
        stamp = f"{self.now:%Y%m%dT%H%M%SZ}"
        batch = f"{qualified}@{stamp}-{label or 'all'}-{uuid.uuid4().hex[:6]}"
        result = validate(rows, qualified, self.settings, now=self.now, batch_name=batch)
        record = {"batch": batch, "target_table": qualified, "source": source, "rows": count,
                  "success": result.success, "evaluated_expectations": result.evaluated,
                  "failed_expectations": result.failed, "rules_failed": ", ".join(result.rules) or None,
                  "data_docs": result.docs_url, "quarantined_rows": 0, "alert_id": None,
                  "validated_at": self.now, "seconds": result.seconds}
        self.runs.append(record)
        if result.success:
            self.log(f"{qualified}: gate passed ({result.evaluated} expectations, {count} rows, "
                     f"{result.seconds:.1f} s)")
            return True
        record["quarantined_rows"] = self._quarantine(rows, result, source, txn)
        record["alert_id"], alert = self._alert(result)
        self.held_back.append({"result": result, "quarantined": record["quarantined_rows"], "alert": alert})
        self.log(result.explain())
        return False

    def _quarantine(self, rows, result: GateResult, source: str, txn: tuple[str, int] | None) -> int:
        import pandas as pd
        from pyspark.sql import functions as F
        from pyspark.sql.functions import pandas_udf

        from impetus.lake import conform
        from impetus.privacy import load_keyring

        key = load_keyring(self.settings).current
        qualified = result.table

        properties = load_schema(qualified)["properties"]

        @pandas_udf("string")
        def treat(rows_json: pd.Series) -> pd.Series:
            return rows_json.map(lambda text: quarantine_row(text, qualified, key, properties))

        gate_json = result.to_json()
        frame = (rows.select(F.to_json(F.struct(*[F.col(f"`{c}`") for c in rows.columns])).alias("row_json"))
                 .select(F.lit(qualified).alias("target_table"), F.lit(source).alias("source"),
                         F.lit(result.batch_name).alias("batch"),
                         F.monotonically_increasing_id().alias("row_number"),
                         F.lit(", ".join(result.rules)).alias("rules"),
                         F.lit(result.failed).alias("failed_expectations"),
                         F.lit(result.evaluated).alias("evaluated_expectations"),
                         F.lit(gate_json).alias("gate_result"), F.lit(result.docs_url).alias("data_docs"),
                         treat("row_json").alias("row_redacted"), F.lit(self.now).alias("quarantined_at")))
        frame = conform(frame, QUARANTINE).cache()
        try:
            written = frame.count()
            writer = frame.write.format("delta").mode("append").partitionBy(
                *load_schema(QUARANTINE).get("x-partition-by", []))
            if txn:
                writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
            writer.save(self.settings.lake_path(*QUARANTINE.split(".")))
        finally:
            frame.unpersist()
        return written

    def _alert(self, result: GateResult) -> tuple[str | None, str]:
        """Send the data-quality alert; (its id, what happened in words). A broker that cannot be
        reached does not hide the failure: the build still fails, and says the alert was not sent."""
        from impetus.replay.producer import make_producer

        alert = data_quality_alert(result)
        alert["evidence"]["lake"] = self.settings.lake_uri
        try:
            producer = make_producer(self.settings, linger_ms=0, request_timeout_ms=10_000, max_block_ms=10_000)
            try:
                producer.send(OPERATIONS_TOPIC, json.dumps(alert).encode(), key=result.table.encode()).get(timeout=15)
            finally:
                producer.close(timeout=5)
        except Exception as err:  # noqa: BLE001 - any broker trouble; the failure is reported either way
            return None, (f"NOT sent to {OPERATIONS_TOPIC} ({type(err).__name__}: {err}); "
                          f"is the broker up (`impetus stack up`)?")
        return alert["alert_id"], (f"{alert['severity']} data_quality alert {alert['alert_id']} "
                                   f"sent to {OPERATIONS_TOPIC}")

    def finish(self) -> list[dict]:
        """Append this build's gate runs to ``audit.gate_runs``; raise :class:`GatesFailed` if any batch
        was held back. Returns the runs."""
        from impetus.lake import conform

        if self.runs:
            if self.spark is None:
                from impetus.spark import spark_session

                self.spark = spark_session(self.settings, "gates")
            struct = spark_schema(load_schema(GATE_RUNS))
            frame = conform(self.spark.createDataFrame([{f.name: r.get(f.name) for f in struct.fields}
                                                        for r in self.runs], schema=struct), GATE_RUNS)
            frame.write.format("delta").mode("append").save(self.settings.lake_path(*GATE_RUNS.split(".")))
        if self.held_back:
            raise GatesFailed(self.held_back)
        return self.runs

    def summary(self) -> dict:
        """What the gates did in this build, for a job's JSON result."""
        from impetus.gates import docs_dir

        return {"checked": len(self.runs), "passed": sum(r["success"] for r in self.runs),
                "held_back": [r["batch"] for r in self.runs if not r["success"]],
                "data_docs": (docs_dir(self.settings) / "index.html").as_uri()}
