"""Flink job: sensor readings -> urban-safety alerts on ``alerts.<tenant>`` (IMPETUS's Urban Anomaly Detector).

Reads ``sensors.readings`` and, per sensor, raises
- ``threshold``: a reading above the hard limit of its kind (configuration
  ``sensor_thresholds``, overridable by ``sensor_threshold`` rules);
- ``urban_anomaly``: a reading far from what is usual for that sensor at that hour of
  the week (robust z-score against the registry's ``urban_baseline@champion``, else the
  file built by ``impetus models build urban-baseline``; without either this check is
  off; a version announced on ``models.control`` is loaded without a restart);
- ``silent_sensor``: no reading for ``after_minutes`` of event time (event-time timers);
- ``area_anomaly``: anomalies at several counters of one area within a window.
Messages that fail validation go to ``sensors.readings.dlq`` with the reason; counts
of every run go to ``jobs.accounting``. Rules on the ``rules`` topic apply without a
restart (``impetus rules --help``).

    python jobs/streaming/urban_anomalies.py                 # runs until stopped
    python jobs/streaming/urban_anomalies.py --bounded       # stops at the offsets current at start
    python jobs/streaming/urban_anomalies.py --resume latest # continue from the last checkpoint
"""

from __future__ import annotations

from impetus.streaming import Gate, Input, account, detect_handed, detect_raw, run_job, sink_alerts

JOB_NAME = "urban_anomalies"
INPUTS = [Input("sensors.readings", "sensors.readings")]
# hourly counters from several partitions: tolerate ten minutes of disorder before an event is late
OUT_OF_ORDERNESS_S = 600.0
# PyFlink execution mode (impetus.flink.stream_environment): Python inside the JVM
PYTHON_MODE = "thread"
# readings reach the sensor watch in bundles (impetus.flink.bundle_in_jvm) of sensors hashed together: up to 64,
# 10 ms at most; above parallelism 1 (several buckets) within ten minutes of event time, so that no bundle carries
# a sensor's readings hours past the others' (the counters of one hour arrive together and go together)
READINGS_BUNDLE = (64, 10, 10 * 60 * 1000)
# the usual readings stop at a gate in the JVM (io.impetus.flink.QuietGate, impetus.detect.quiet), which also keeps
# each sensor's silence clock: Python judges only the readings that may alert, and the silences
GATED = True


def load_baseline(settings):
    """The registry's urban_baseline@champion, else the file built into the models folder, else None."""
    from impetus.detect.urban import load_baseline as read
    from impetus.registry import champion_artefact

    baseline = champion_artefact(settings, "urban_baseline",
                                 log=lambda line: print(f"[{JOB_NAME}] {line}", flush=True))
    if baseline is not None:
        return baseline
    path = settings.model_path("urban_baseline") / "baseline.json"
    if not path.is_file():
        print(f"[{JOB_NAME}] no urban baseline at {path}: urban anomalies are off until it is built "
              "(impetus models build urban-baseline)", flush=True)
        return None
    return read(path)


def build(env, settings, options, rules, descriptor, initial_rules):
    """Wire readings -> per-sensor watch (with the checks) -> per-area watch -> alert sinks onto ``env``."""
    from functools import partial

    from impetus.detect.quiet import compile_spec
    from impetus.detect.streams import AreaWatch, SensorWatch
    from impetus.rules import defaults_from, rule_kinds

    kinds = rule_kinds()
    defaults = defaults_from(kinds, ["urban_anomaly", "silent_sensor", "area_burst"])
    watch = SensorWatch(dict(settings.sensor_thresholds), load_baseline(settings), gated=GATED)
    gate = Gate(partial(compile_spec, tenants=tuple(options.tenants)), "QuietGate") if GATED else None
    # readings checked and watched in bundles, one Python call each, of the sensors of one bucket (a hash of the
    # sensor's key in the JVM; one bucket at parallelism 1, so arrival order is kept); the urban anomalies with
    # an area handed to the area watch keyed by their area, with the tenant's area_burst rule
    sensor_alerts, tallies, dead_letters, anomalies = detect_raw(
        env, settings, JOB_NAME, INPUTS, options, rules, descriptor, "sensor watch", watch, initial_rules, defaults,
        key_fields=SensorWatch.KEY_FIELDS, handoff=AreaWatch.handed, bundle=READINGS_BUNDLE, gate=gate)
    # one input (the rule comes with each anomaly), so Flink runs it on the sensor watch's operator thread
    area_alerts, _ = detect_handed(anomalies, JOB_NAME, "area watch", AreaWatch(), options, initial_rules, defaults)
    sink_alerts(sensor_alerts.union(area_alerts), settings, JOB_NAME, options)
    account(settings, JOB_NAME, options, [tallies], dead_letters)


def main(argv=None):
    return run_job(JOB_NAME, __doc__, INPUTS, build, argv, OUT_OF_ORDERNESS_S, PYTHON_MODE)


if __name__ == "__main__":
    main()
