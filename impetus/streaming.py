"""What every detection job in jobs/streaming/ shares: its command line and its wiring.

A job declares its inputs (topic, schema, optional parser) and a logic object
(``impetus.detect.streams``); :func:`run_job` parses the common options, builds

    kafka(topic) --intake--> valid docs --key_by(logic.key)--+--detector(logic)--> alerts.<tenant>
                       '--> <topic>.dlq     kafka(rules) --broadcast--'

or, with :func:`detect_raw` (urban, text), the raw messages keyed in the JVM straight into a detector that
checks them itself (dead letters to ``<topic>.dlq`` from there): one Python call per message (or per bundle);
the urban job's readings pass a gate in the JVM before it, which stops the usual ones (``gate``). Then it
executes the job. ``models.control`` joins the rules' broadcast: a logic object with a
``load_model(name, version)`` method switches to an announced model version without a
restart. Every option has a default, so ``python jobs/streaming/<job>.py``
runs against the local stack as configured.
"""

from __future__ import annotations

import argparse
import json
import uuid
from dataclasses import dataclass, field
from typing import Callable

from impetus.config import load_settings
from impetus.topics import alert_topic, dlq_topic, tenants


@dataclass
class Input:
    topic: str
    schema: str
    parse: Callable[[dict], dict] | None = None


@dataclass(frozen=True)
class Gate:
    """A gate in the JVM in front of a raw detector (:func:`detect_raw`), stopping the messages its spec calls quiet.

    ``compile(logic, book)``: the spec (text) for the rules of ``book`` (:class:`impetus.rules.RuleBook`), compiled
    again whenever they change; ``java``: the gate, a class of io.impetus.flink: ``QuietGate`` (keyed by entity,
    with ``key_fields``: it also keeps each entity's silence clock; spec :mod:`impetus.detect.quiet`) or
    ``PostGate`` (per message, keyed by a hash of the text; spec :mod:`impetus.detect.text_gate`).
    """
    compile: Callable
    java: str = "QuietGate"

    @property
    def keyed_by_entity(self) -> bool:
        return self.java == "QuietGate"


@dataclass
class JobOptions:
    bounded: bool = False
    group_id: str = ""
    delivery: str = "exactly-once"
    resume: str | None = None
    tenants: list[str] = field(default_factory=list)
    topics: dict[str, str] = field(default_factory=dict)       # declared input topic -> topic actually read
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    rules_topic: str = "rules"
    control_topic: str = "models.control"
    out_of_orderness_ms: int = 5000
    suppress_minutes: float = 15.0
    run_id: str = ""
    alert_topic: str | None = None  # every alert to this topic instead of alerts.<tenant>


def argument_parser(job: str, description: str, inputs: list[Input],
                    out_of_orderness_s: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=job, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    names = ", ".join(i.topic for i in inputs)
    parser.add_argument("--bounded", action="store_true",
                        help="stop after the messages present at start (demo, tests, backfills)")
    parser.add_argument("--group-id", default=f"impetus-{job}", help="Kafka consumer group (default %(default)s)")
    parser.add_argument("--delivery", choices=["exactly-once", "at-least-once"], default="exactly-once",
                        help="exactly-once: alerts visible to read_committed consumers at each checkpoint; "
                             "at-least-once: at once, consumers de-duplicate on alert_id (default %(default)s)")
    parser.add_argument("--resume", metavar="PATH|latest",
                        help="restore from a checkpoint or savepoint path; 'latest' = this job's newest checkpoint")
    parser.add_argument("--tenants", help="comma-separated tenants to accept (default: those in schemas/topics.yaml)")
    parser.add_argument("--topic", action="append", default=[], metavar="DECLARED=ACTUAL",
                        help=f"read another topic in place of a declared input ({names}); dead letters go to "
                             "<actual>.dlq; repeatable")
    parser.add_argument("--start-offsets", action="append", default=[], metavar="TOPIC=P:O,...",
                        help="start this input at these partition offsets instead of the group's; repeatable")
    parser.add_argument("--rules-topic", default="rules", help="topic with the runtime rules (default %(default)s)")
    parser.add_argument("--control-topic",
                        help="topic announcing promoted model versions to load without a restart "
                             "(default: IMPETUS_CONTROL_TOPIC, models.control)")
    parser.add_argument("--out-of-orderness", type=float, default=out_of_orderness_s, metavar="SECONDS",
                        help="event-time disorder tolerated before an event counts as late (default %(default)s)")
    parser.add_argument("--suppress-minutes", type=float, default=15.0,
                        help="repeats of an alert (same detector and entity) within this window are held back "
                             "and counted in one follow-up alert; 0 disables (default %(default)s)")
    parser.add_argument("--run-id", help="id of this run in jobs.accounting (default: random)")
    parser.add_argument("--alert-topic", metavar="TOPIC",
                        help="write every alert to TOPIC instead of alerts.<tenant>: for benchmarks and trial runs, "
                             "whose alerts must not reach the security teams or the lake's history")
    return parser


def options_from(args, inputs: list[Input], settings) -> JobOptions:
    from impetus.flink import start_offsets

    declared = {i.topic for i in inputs}
    topics = {i.topic: i.topic for i in inputs}
    for pair in args.topic:
        name, sep, actual = pair.partition("=")
        if not sep or name not in declared or not actual:
            raise SystemExit(f"--topic {pair!r}: expected DECLARED=ACTUAL with DECLARED one of {sorted(declared)}")
        topics[name] = actual
    offsets = {}
    for spec in args.start_offsets:
        name, sep, pairs = spec.partition("=")
        if not sep:
            raise SystemExit(f"--start-offsets {spec!r}: expected TOPIC=P:O,... e.g. sensors.readings=0:120,1:98")
        offsets[topics.get(name, name)] = start_offsets(pairs)
    return JobOptions(
        bounded=args.bounded, group_id=args.group_id, delivery=args.delivery, resume=args.resume,
        tenants=args.tenants.split(",") if args.tenants else tenants(settings), topics=topics, offsets=offsets,
        rules_topic=args.rules_topic, control_topic=args.control_topic or settings.control_topic,
        out_of_orderness_ms=int(args.out_of_orderness * 1000),
        suppress_minutes=args.suppress_minutes, run_id=args.run_id or uuid.uuid4().hex[:12],
        alert_topic=args.alert_topic)


def intake_streams(env, settings, job: str, inputs: list[Input], options: JobOptions):
    """(validated docs of all inputs unioned, dead-letter streams); dead letters are already wired
    to ``<topic>.dlq``."""
    streams, dead = intake_each(env, settings, job, inputs, options)
    return _union(streams), dead


def intake_each(env, settings, job: str, inputs: list[Input], options: JobOptions):
    """(validated docs of each input, in the order of ``inputs``; dead-letter streams), as :func:`intake_streams`."""
    from impetus.operators import intake

    streams, dead = [], []
    for spec in inputs:
        topic = options.topics[spec.topic]
        function, dead_letters = intake(job, topic, spec.schema, options.tenants, spec.parse)
        valid = _source(env, settings, spec, options).process(function) \
            .name(f"validate {topic}").uid(f"validate-{spec.topic}")
        dead.append(_dead_letters(settings, job, spec, options, valid.get_side_output(dead_letters)))
        streams.append(valid)
    return streams, dead


def _source(env, settings, spec: Input, options: JobOptions):
    """The raw messages of one input (strings), event-time stamped by their Kafka timestamps."""
    from impetus.flink import event_time, kafka_source

    topic = options.topics[spec.topic]
    source = kafka_source(settings, topic, options.group_id, bounded=options.bounded,
                          offsets=options.offsets.get(topic))
    strategy = event_time(options.out_of_orderness_ms, idle_ms=None if options.bounded else 5000)
    return env.from_source(source, strategy, f"kafka: {topic}")


def _dead_letters(settings, job: str, spec: Input, options: JobOptions, letters):
    """``letters`` (an intake's dead letters) wired to ``<topic>.dlq``; returns them for :func:`account`."""
    from impetus.flink import kafka_sink, stamped_now

    topic = options.topics[spec.topic]
    dlq_sink = kafka_sink(settings, topic=dlq_topic(topic), delivery=options.delivery,
                          transactional_id_prefix=f"{job}-{spec.topic}-dlq")
    # stamped when rejected, so the DLQ's retention counts from then, not from the event's time
    stamped_now(letters, settings).sink_to(dlq_sink).name(f"kafka: {dlq_topic(topic)}").uid(f"dlq-{spec.topic}")
    return letters


def detect_raw(env, settings, job: str, inputs: list[Input], options: JobOptions, rules, descriptor, name: str,
               logic, initial_rules, defaults, key_fields: tuple[str, ...] | None = None, handoff=None,
               bundle: tuple[int, ...] | None = None, gate=None):
    """Each input's raw messages straight into a detector that checks them itself (``intake_of`` of
    :func:`impetus.operators.detector`): one Python call per message (or bundle). The messages are keyed in the JVM
    (:func:`impetus.flink.key_in_jvm`), without a Python call: by ``key_fields`` of the JSON document (the
    fields ``logic.key`` joins, e.g. ``("tenant", "sensor_id", "kind")``), with suppression as in
    :func:`detect`; or, without ``key_fields``, by a hash of the message text and without suppression, for a
    logic that keeps nothing per key (its alerts then go through :func:`suppressed`). ``handoff(alert, rules)``:
    alerts for a next stage, ``(key, (alert, rule))`` or None (:func:`impetus.operators.detector`), for
    :func:`detect_handed`. Hash keys are :func:`_hash_keys` (one at parallelism 1, so arrival order is kept).

    ``bundle``: ``(max_count, max_wait_ms)`` or ``(max_count, max_wait_ms, max_span_ms)``, the messages handed to
    the detector in bundles of one key's (:func:`impetus.flink.bundle_in_jvm`), one Python call per bundle.
    With ``key_fields`` the keys are then buckets of entities (their ``key_fields`` hashed into :func:`_hash_keys`
    buckets) and the detector keeps each entity's state under them (``entities`` of
    :func:`impetus.operators.detector`): bundles of one entity's messages would reorder messages across entities
    by as much event time as a bundle spans (BENCHMARKS.md, "Bundles gathered in the JVM"), a bucket's bundle
    keeps the arrival order of its entities' messages, and at parallelism 1 all share one bucket. ``max_span_ms``
    bounds how far bundles of different buckets, taken in turn, reorder messages; with one bucket it is not
    needed and not applied. Returns (alerts as JSON str, tallies, dead-letter streams, the handed-over pairs or
    None).

    ``gate`` (a :class:`Gate`, with ``bundle``): the messages then pass a JVM gate first, which stops those its spec
    calls quiet (counted) and hands the detector the rest (``gated`` of :func:`impetus.operators.detector`). A
    ``QuietGate`` (with ``key_fields``: keyed by entity) also keeps each entity's silence clock and hands the
    detector its silence markers (``logic`` built gated); a ``PostGate`` (without ``key_fields``) keeps nothing.
    The spec follows the rules and model versions: a Python operator on the rules stream compiles it again
    whenever they change (:func:`impetus.operators.spec_compiler`).
    """
    from pyflink.common import Types
    from pyflink.datastream import OutputTag

    from impetus.flink import jvm_key, pair_type
    from impetus.operators import detector
    from impetus.rules import RuleBook

    suppress_ms = int(options.suppress_minutes * 60_000) if key_fields else 0
    buckets = _hash_keys(env) if bundle is not None or not key_fields else None
    entities = buckets if bundle is not None and key_fields else 0
    if bundle is not None and buckets == 1:
        bundle = bundle[:2]  # one bucket keeps the arrival order whatever event time its bundles span
    if gate is not None and not (bundle and bool(key_fields) == gate.keyed_by_entity):
        raise ValueError(f"a {gate.java} needs bundle and {'' if gate.keyed_by_entity else 'no '}key_fields")
    specs = None if gate is None else _quiet_specs(rules, job, logic, gate.compile, initial_rules, defaults)
    alerts, tallies, dead, handed = [], [], [], []
    for spec in inputs:
        topic = options.topics[spec.topic]
        if gate is None:
            function = jvm_key(settings, key_fields, buckets=buckets)
            described = ("|".join(key_fields) + (" buckets" if buckets else "")) if key_fields else "text hash"
            keyed, intake_of = _raw_keyed(env, settings, spec, options, function, described, bundle)
        else:
            keyed, intake_of = _gated(env, settings, spec, options, key_fields, buckets, bundle, specs, gate,
                                      gate.compile(logic, RuleBook(initial_rules, defaults)))
        handed_tag = OutputTag(f"handed-{topic}", pair_type()) if handoff else None
        function = detector(job, logic, descriptor, initial_rules, defaults, suppress_ms, options.out_of_orderness_ms,
                            intake_of=intake_of, handoff=(handed_tag, handoff) if handoff else None,
                            bundled=bundle is not None, entities=entities, gated=gate is not None)
        out = (keyed.connect(rules)
               .process(function, output_type=Types.STRING())
               # one input: the uid detect() gives a detector of that name, so that its state restores either way
               .name(f"{name}: {topic}")
               .uid((name if len(inputs) == 1 else f"{name}-{spec.topic}").replace(" ", "-")))
        dead.append(_dead_letters(settings, job, spec, options, out.get_side_output(intake_of[-1])))
        if handoff:
            handed.append(out.get_side_output(handed_tag))
        found, counted = _alerts_and_tallies(out, f"{name}: {topic}")
        alerts.append(found)
        tallies.append(counted)
    return _union(alerts), _union(tallies), dead, _union(handed) if handed else None


def _raw_keyed(env, settings, spec: Input, options: JobOptions, function, described: str,
               bundle: tuple[int, ...] | None = None):
    """(one input's raw messages keyed in the JVM by ``function`` (:func:`impetus.flink.jvm_key`), in bundles per
    key with ``bundle`` (:func:`impetus.flink.bundle_in_jvm`), the ``intake_of`` an operator that checks them
    itself is given: ``(topic, schema, known tenants, parse, dead-letter OutputTag)``,
    :class:`impetus.operators.Admission`)."""
    from impetus.flink import bundle_in_jvm, key_in_jvm

    topic = options.topics[spec.topic]
    intake_of = _intake_of(spec, options)
    source, name = _source(env, settings, spec, options), f"key {topic} by {described}"
    if bundle is None:
        return key_in_jvm(source, function, name), intake_of
    max_count, max_wait_ms, *span = bundle
    return bundle_in_jvm(source, settings, function, name, max_count, max_wait_ms, uid=f"bundle-{spec.topic}",
                         max_span_ms=span[0] if span else 0), intake_of


def _intake_of(spec: Input, options: JobOptions) -> tuple:
    """The ``intake_of`` of a detector that checks one input's raw messages itself: ``(topic, schema, known
    tenants, parse, dead-letter OutputTag)`` (:class:`impetus.operators.Admission`)."""
    from pyflink.common import Types
    from pyflink.datastream import OutputTag

    topic = options.topics[spec.topic]
    return (topic, spec.schema, frozenset(options.tenants), spec.parse,
            OutputTag(f"dead-letters-{topic}", Types.STRING()))


def _quiet_specs(rules, job: str, logic, compile, initial_rules, defaults):
    """The stream of quiet specs a gate judges by: compiled again from the rules stream (the broadcast ``rules``'
    input) whenever the rules or the model versions change (:func:`impetus.operators.spec_compiler`)."""
    from pyflink.common import Types

    from impetus.operators import spec_compiler

    return (rules.input_stream.key_by(lambda _: "spec", key_type=Types.STRING())
            .process(spec_compiler(job, logic, compile, initial_rules, defaults), output_type=Types.STRING())
            .name("quiet spec").uid("quiet-spec"))


def _gated(env, settings, spec: Input, options: JobOptions, key_fields, buckets: int, bundle, specs, gate: Gate,
           initial_spec: str):
    """(one input's raw messages through ``gate``, keyed by entity (``QuietGate``) or by a hash of the text
    (``PostGate``), then bundled per bucket, the ``intake_of`` of the detector after it, as :func:`_raw_keyed`
    gives)."""
    from impetus.flink import bundle_pairs, gate_in_jvm, jvm_functions, jvm_key
    from impetus.schemas import load_schema, max_payload_bytes

    topic = options.topics[spec.topic]
    intake_of = _intake_of(spec, options)
    if spec.parse is not None:
        raise ValueError("a gate judges messages as they come: no parser")
    source = _source(env, settings, spec, options)
    functions, schema = jvm_functions(settings), json.dumps(load_schema(spec.schema))
    # a task restarted within this run takes up the spec its gate kept; a job built anew starts from its own
    build = uuid.uuid4().hex
    if gate.keyed_by_entity:
        function, described = jvm_key(settings, key_fields), "|".join(key_fields)
        java = functions.QuietGate(schema, max_payload_bytes(spec.schema), initial_spec, buckets,
                                   options.out_of_orderness_ms, build)
    else:
        function, described = jvm_key(settings, None, buckets=buckets), "text hash"
        java = getattr(functions, gate.java)(schema, max_payload_bytes(spec.schema), initial_spec, build)
    uid = f"quiet-gate-{spec.topic}" if gate.keyed_by_entity else f"{gate.java.lower()}-{spec.topic}"
    pairs = gate_in_jvm(source, specs, settings, function, java, f"key {topic} by {described}", uid=uid)
    max_count, max_wait_ms, *span = bundle
    return bundle_pairs(pairs, source, settings, f"{topic} gated", max_count, max_wait_ms,
                        uid=f"bundle-{spec.topic}", max_span_ms=span[0] if span else 0), intake_of


def detect_handed(pairs, job: str, name: str, logic, options: JobOptions, initial_rules, defaults):
    """The ``(key, (alert, rule))`` pairs a detector handed over (:func:`detect_raw` with ``handoff``) through a
    one-input detector keyed by those keys, each alert judged by the rule handed with it (no rules broadcast of
    its own, so Flink can chain it to the detector before it: one operator thread for both). Returns (alerts as
    JSON str, tallies), as :func:`detect`."""
    from pyflink.common import Types

    from impetus.flink import keyed_pairs
    from impetus.operators import detector

    function = detector(job, logic, None, initial_rules, defaults, int(options.suppress_minutes * 60_000),
                        options.out_of_orderness_ms, handed=True)
    out = keyed_pairs(pairs).process(function, output_type=Types.STRING()).name(name).uid(name.replace(" ", "-"))
    return _alerts_and_tallies(out, name)


def suppressed(alerts, settings, rules, descriptor, job: str, options: JobOptions, initial_rules, defaults):
    """Alerts (JSON str) through suppression alone (:class:`impetus.detect.streams.AlertGate`)."""
    from impetus.detect.streams import AlertGate

    out, _ = detect_json(alerts, settings, rules, descriptor, job, "suppression", AlertGate(), options, initial_rules,
                         defaults)
    return out


def detect_json(stream, settings, rules, descriptor, job: str, name: str, logic, options: JobOptions, initial_rules,
                defaults):
    """``stream`` of JSON documents written by another stage (e.g. alerts) through a detector, keyed in the JVM by
    ``logic.KEY_FIELDS`` (:func:`impetus.flink.key_in_jvm`, no Python call to key them).

    Returns (alerts as JSON str, tallies), as :func:`detect`."""
    from pyflink.common import Types

    from impetus.flink import jvm_key, key_in_jvm
    from impetus.operators import detector

    function = detector(job, logic, descriptor, initial_rules, defaults, int(options.suppress_minutes * 60_000),
                        options.out_of_orderness_ms, decode=_json_document)
    keyed = key_in_jvm(stream, jvm_key(settings, logic.KEY_FIELDS), f"key by {'|'.join(logic.KEY_FIELDS)}")
    out = (keyed.connect(rules)
           .process(function, output_type=Types.STRING())
           .name(name).uid(name.replace(" ", "-")))
    return _alerts_and_tallies(out, name)


def _json_document(text: str):
    return json.loads(text), False, None


def score_in_batches(env, settings, job: str, spec: Input, options: JobOptions, rules, descriptor, name: str, logic,
                     batch_size: int, max_wait_ms: int, key_out):
    """One input's raw messages checked and scored in batches (:func:`impetus.operators.batch_scorer` with its
    own intake), each batch of documents handed to ``logic.score`` in one Python call (``logic`` None: checked
    only, as an intake in bundles). The batches are bundles gathered in the JVM (:func:`impetus.flink.bundle_in_jvm`:
    up to ``batch_size`` messages, at most ``max_wait_ms`` after the oldest arrived, and always before a watermark
    or a checkpoint barrier passes), keyed by a hash of the text into :func:`_hash_keys`: one key at parallelism 1,
    so they keep the arrival order. A model call costs about as much for a few records as for a few hundred
    (BENCHMARKS.md, "Cyber: keys from the stage before"). Returns (the records as ``Row(key_out(doc), (doc, late,
    topic))`` pairs for :func:`detect_pairs`, dead letters wired to ``<topic>.dlq``)."""
    from impetus.flink import jvm_key, pair_type
    from impetus.operators import batch_scorer

    bundles, intake_of = _raw_keyed(env, settings, spec, options, jvm_key(settings, buckets=_hash_keys(env)),
                                    "text hash", (batch_size, max_wait_ms))
    function = batch_scorer(job, logic, descriptor, intake_of, key_out=key_out)
    scored = (bundles.connect(rules)
              .process(function, output_type=pair_type())
              .name(f"{name}: {options.topics[spec.topic]}").uid(name.replace(" ", "-")))
    return scored, _dead_letters(settings, job, spec, options, scored.get_side_output(intake_of[-1]))


def _hash_keys(env) -> int:
    """Keys for records hashed only to be handled together (batches, bundles): one at parallelism 1, which
    keeps them in arrival order, else 8 per parallel instance so that the instances share them."""
    parallelism = env.get_parallelism()
    return 1 if parallelism == 1 else 8 * parallelism


def _union(streams):
    return streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]


def detect(stream, rules, descriptor, job: str, name: str, logic, options: JobOptions, initial_rules, defaults):
    """``stream`` of (doc, late, source topic) keyed by ``logic.key`` through a detector.

    Returns (alerts as JSON str, tallies of processed messages for :func:`account`)."""
    from pyflink.common import Types

    from impetus.flink import key_by

    return _detect_keyed(key_by(stream, lambda value: logic.key(value[0]), Types.STRING()), rules, descriptor, job,
                         name, logic, options, initial_rules, defaults)


def detect_pairs(pairs, rules, descriptor, job: str, name: str, logic, options: JobOptions, initial_rules,
                 defaults):
    """As :func:`detect`, for ``Row(key, (doc, late, source topic))`` pairs whose key the stage before computed
    (:func:`score_in_batches`, with or without a model): no Python call to key them."""
    from impetus.flink import keyed_pairs

    return _detect_keyed(keyed_pairs(pairs), rules, descriptor, job, name, logic, options, initial_rules, defaults)


def _detect_keyed(keyed, rules, descriptor, job: str, name: str, logic, options: JobOptions, initial_rules,
                  defaults):
    from pyflink.common import Types

    from impetus.operators import detector

    function = detector(job, logic, descriptor, initial_rules, defaults,
                        int(options.suppress_minutes * 60_000), options.out_of_orderness_ms)
    out = (keyed.connect(rules)
           .process(function, output_type=Types.STRING())
           .name(name).uid(name.replace(" ", "-")))
    return _alerts_and_tallies(out, name)


def _alerts_and_tallies(out, name: str):
    """A detector's output split: (alerts as JSON str, tallies as tuples for :func:`account`)."""
    from pyflink.common import Types

    from impetus.operators import is_tally

    alerts = out.filter(lambda text: not is_tally(text)).name(f"{name}: alerts")
    tallies = (out.filter(is_tally)
               .map(lambda text: tuple(json.loads(text)), output_type=Types.PICKLED_BYTE_ARRAY())
               .name(f"{name}: tallies"))
    return alerts, tallies


def account(settings, job: str, options: JobOptions, tallies: list, dead_letters: list):
    """Per-run counts (processed, dead-lettered, late per input topic) -> ``jobs.accounting``."""
    from pyflink.common import Types

    from impetus.flink import kafka_sink, stamped_now
    from impetus.operators import accounting

    tokens = [d.map(lambda letter: ("dead", json.loads(letter)["source_topic"]),
                    output_type=Types.PICKLED_BYTE_ARRAY()) for d in dead_letters]
    counts = (_union(list(tallies) + tokens)
              .key_by(lambda item: item[1], key_type=Types.STRING())
              .process(accounting(job, options.run_id), output_type=Types.STRING())
              .name("accounting").uid("accounting"))
    sink = kafka_sink(settings, topic="jobs.accounting", delivery=options.delivery,
                      transactional_id_prefix=f"{job}-accounting")
    stamped_now(counts, settings).sink_to(sink).name("kafka: jobs.accounting").uid("accounting-sink")


def sink_alerts(alerts, settings, job: str, options: JobOptions):
    from impetus.flink import kafka_sink, stamped_now

    by_tenant = None if options.alert_topic else (lambda a: alert_topic(json.loads(a)["tenant"]))
    sink = kafka_sink(settings, topic=options.alert_topic, topic_selector=by_tenant, delivery=options.delivery,
                      transactional_id_prefix=f"{job}-alerts")
    # the same uid whichever topic: a run restored from a checkpoint keeps the sink's state
    stamped_now(alerts, settings).sink_to(sink).name(f"kafka: {options.alert_topic or 'alerts.<tenant>'}") \
        .uid("alerts-sink")


def prepare(job: str, description: str, inputs: list[Input], argv=None, out_of_orderness_s: float = 5.0,
            python_mode: str = "thread"):
    """(settings, options, env, rules broadcast stream, rules descriptor, initial rules) for a job run."""
    from impetus.flink import latest_checkpoint, rules_snapshot, rules_stream, stream_environment

    args = argument_parser(job, description, inputs, out_of_orderness_s).parse_args(argv)
    settings = load_settings()
    options = options_from(args, inputs, settings)
    resume = options.resume
    if resume == "latest":
        resume = latest_checkpoint(settings, job)
        if resume is None:
            raise SystemExit(f"--resume latest: no completed checkpoint of {job} under "
                             f"{settings.checkpoint_path('flink/' + job)}; start without --resume")
    print(json.dumps({"job": job, "run_id": options.run_id, "resume_from": resume,
                      "inputs": list(options.topics.values()), "delivery": options.delivery}), flush=True)
    env = stream_environment(settings, job, resume_from=resume, restart=not options.bounded, python_mode=python_mode,
                             delivery=options.delivery)
    rules, descriptor = rules_stream(env, settings, options.bounded, job, options.rules_topic, options.control_topic)
    initial = rules_snapshot(settings, options.rules_topic)
    return settings, options, env, rules, descriptor, initial


def run_job(job: str, description: str, inputs: list[Input], build, argv=None, out_of_orderness_s: float = 5.0,
            python_mode: str = "thread"):
    """Parse the options, wire the job with ``build(env, settings, options, rules, descriptor, initial_rules)``
    and execute it: the ``main`` of every job in jobs/streaming/. ``python_mode``: PyFlink's
    execution mode for this job (see :func:`impetus.flink.stream_environment`)."""
    settings, options, env, rules, descriptor, initial = prepare(job, description, inputs, argv,
                                                                 out_of_orderness_s, python_mode)
    build(env, settings, options, rules, descriptor, initial)
    return env.execute(job)
