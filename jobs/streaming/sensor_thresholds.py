"""Flink job: sensor readings -> threshold alerts on ``alerts.<tenant>``.

Reads ``sensors.readings``, validates every message against
``schemas/sensors.readings.json`` and applies :func:`impetus.detect.thresholds.threshold_alert`
with the thresholds from the configuration. Messages that fail (not JSON, wrong
schema, unknown tenant, too large) go to ``sensors.readings.dlq`` with the reason,
so for every run: messages in = valid readings + dead letters.

    python jobs/streaming/sensor_thresholds.py             # runs until stopped
    python jobs/streaming/sensor_thresholds.py --bounded   # stops at the offsets current at start
"""

from __future__ import annotations

import argparse
import json

from impetus.config import load_settings
from impetus.detect.thresholds import threshold_alert
from impetus.dlq import dead_letter_json
from impetus.schemas import PayloadRejected, check_payload
from impetus.topics import alert_topic, dlq_topic, tenants

JOB_NAME = "sensor_thresholds"


def _validate_and_detect_function(source_topic: str, known_tenants: list[str], thresholds: dict[str, float]):
    """The job's one operator, built lazily so importing this module needs no PyFlink."""
    from pyflink.datastream import OutputTag, ProcessFunction
    from pyflink.common import Types

    dead_letters = OutputTag("dead-letters", Types.STRING())

    class ValidateAndDetect(ProcessFunction):
        def open(self, runtime_context):
            metrics = runtime_context.get_metrics_group()
            self.read = metrics.counter("messages_in")
            self.valid = metrics.counter("readings_valid")
            self.rejected = metrics.counter("messages_dead_lettered")
            self.alerts = metrics.counter("alerts_out")
            self.tenants = set(known_tenants)

        def process_element(self, value, ctx):
            self.read.inc()
            try:
                reading = check_payload("sensors.readings", value)
                if reading["tenant"] not in self.tenants:
                    raise PayloadRejected(f"unknown tenant {reading['tenant']!r} (no alert topic for it)")
            except PayloadRejected as err:
                self.rejected.inc()
                yield dead_letters, dead_letter_json(source_topic, str(err), value, JOB_NAME)
                return
            self.valid.inc()
            alert = threshold_alert(reading, thresholds)
            if alert is not None:
                self.alerts.inc()
                yield json.dumps(alert)

    return ValidateAndDetect(), dead_letters


def build(env, settings, source_topic: str, known_tenants: list[str], bounded: bool, group_id: str,
          from_timestamp_ms: int | None = None):
    """Wire source -> validate/detect -> alert and dead-letter sinks onto ``env``."""
    from pyflink.common import Types, WatermarkStrategy

    from impetus.flink import kafka_sink, kafka_source

    function, dead_letters = _validate_and_detect_function(
        source_topic, known_tenants, dict(settings.sensor_thresholds))
    raw = env.from_source(kafka_source(settings, source_topic, group_id, bounded=bounded,
                                       from_timestamp_ms=from_timestamp_ms),
                          WatermarkStrategy.no_watermarks(), f"kafka: {source_topic}")
    alerts = raw.process(function, output_type=Types.STRING()).name("validate and detect thresholds")
    alerts.sink_to(kafka_sink(settings, topic_selector=lambda a: alert_topic(json.loads(a)["tenant"]))) \
        .name("kafka: alerts.<tenant>")
    alerts.get_side_output(dead_letters).sink_to(kafka_sink(settings, topic=dlq_topic(source_topic))) \
        .name(f"kafka: {dlq_topic(source_topic)}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sensor_thresholds", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-topic", default="sensors.readings",
                        help="topic to read (dead letters go to <topic>.dlq); default %(default)s")
    parser.add_argument("--tenants", help="comma-separated tenants to accept (default: those in schemas/topics.yaml)")
    parser.add_argument("--group-id", default=f"impetus-{JOB_NAME}", help="Kafka consumer group")
    parser.add_argument("--bounded", action="store_true",
                        help="stop after the messages present at start (demo, tests, backfills)")
    parser.add_argument("--from-timestamp", type=int, metavar="MS",
                        help="start at messages stamped at or after this epoch-millisecond time "
                             "(default: the group's committed offsets, else the earliest)")
    args = parser.parse_args(argv)

    settings = load_settings()
    known = args.tenants.split(",") if args.tenants else tenants(settings)
    from impetus.flink import stream_environment

    env = stream_environment(settings, JOB_NAME)
    build(env, settings, args.source_topic, known, args.bounded, args.group_id, args.from_timestamp)
    return env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
