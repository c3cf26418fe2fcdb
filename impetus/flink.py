"""Flink wiring shared by the jobs in jobs/streaming/: environment, Kafka sources and sinks,
event time, runtime rules and restarts.

Everything location-specific comes from :class:`impetus.config.Settings`: on the
``local`` profile a job runs in PyFlink's embedded mini-cluster with the Kafka
connector jar fetched by ``make jars``; on ``cluster`` it is submitted to the
configured JobManager and ships the ``impetus`` package with it.

Event time is the Kafka record timestamp. Producers stamp it with the event's own
time (the replayers do; see ``impetus.replay.producer``), so the watermark is
generated per partition inside the Kafka source, in Java: a partition that is read
ahead of the others cannot make their events late.

Delivery: alerts and dead letters go through a transactional Kafka sink
(``exactly-once``, the default): they become visible to ``read_committed``
consumers when the checkpoint that covers them completes, and a job restarted from
a checkpoint neither loses nor duplicates them. ``at-least-once`` publishes at once;
consumers then de-duplicate on the deterministic ``alert_id``. README, "Delivery and
latency", says when to pick which.
"""

from __future__ import annotations

import json
import os
import site
import sys
from pathlib import Path
from urllib.parse import urlparse

from impetus.config import PACKAGE_DIR, ConfigError, Settings

DELIVERY_MODES = ("exactly-once", "at-least-once")
# Transactions must outlive the longest checkpoint gap plus a restart, and stay below the
# broker's transaction.max.timeout.ms (15 min by default).
TRANSACTION_TIMEOUT_MS = 10 * 60 * 1000


def stream_environment(settings: Settings, job_name: str, resume_from: str | None = None, restart: bool = True,
                       python_mode: str = "thread", delivery: str = "exactly-once"):
    """A StreamExecutionEnvironment for ``job_name``; ``resume_from`` is a checkpoint or savepoint path.

    ``restart``: after a failure, restart from the last checkpoint (Flink's exponential back-off);
    without it a failure ends the run with an error at once (bounded runs: demo, tests, backfills).
    ``python_mode``: the job's own choice of PyFlink execution mode, used unless
    ``IMPETUS_FLINK_PYTHON_MODE`` names one (its default, ``auto``, leaves it to the job).
    ``delivery``: the job's sinks' guarantee (:data:`DELIVERY_MODES`); ``at-least-once`` also
    checkpoints without aligning barriers.
    """
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    mode = python_mode if settings.flink_python_mode == "auto" else settings.flink_python_mode
    if mode not in ("thread", "process"):
        raise ValueError(f"python_mode must be 'thread' or 'process', not {mode!r}")
    embedded_here = mode == "thread" and settings.flink_jobmanager == "local"
    if embedded_here:
        # The local JVM inherits this environment. With Python's fault handler on, the interpreter
        # embedded in it takes over the JVM's own SIGSEGV signals and the JVM crashes.
        os.environ.pop("PYTHONFAULTHANDLER", None)
    config = Configuration()
    config.set_string("pipeline.name", job_name)
    config.set_string("pipeline.jars", ";".join(j.as_uri() for j in settings.jars("flink")))
    # Python workers must use this interpreter (the one with the locked stack), not whatever is on PATH.
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    # Checkpoints commit the source offsets and the sink's transactions; they are kept when a job
    # stops so that it can be resumed from the last one (``--resume``).
    config.set_string("execution.checkpointing.interval", f"{settings.flink_checkpoint_interval_ms} ms")
    config.set_string("execution.checkpointing.dir", settings.checkpoint_path(f"flink/{job_name}"))
    config.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    config.set_string("execution.checkpointing.num-retained", "3")
    # "thread": the operators' Python runs inside the TaskManager's JVM, so a record is handed to
    # it by a call instead of being batched, serialised and sent to a worker process (several times
    # faster here: BENCHMARKS.md). Native extensions that hang on the JVM's threads (ONNX Runtime)
    # are called through impetus.embedded. The embedded interpreter does not know the virtual
    # environment (nor the files shipped with a job), so its packages and this checkout are put on its
    # path: on a cluster, the TaskManagers are expected to have them at the same paths, as for
    # python.executable.
    config.set_string("python.execution-mode", mode)
    if mode == "thread":
        config.set_string("python.pythonpath", os.pathsep.join([*site.getsitepackages(), str(PACKAGE_DIR.parent)]))
    # In "process" mode PyFlink hands records to its Python workers in bundles and waits up to this
    # long to fill one (1 s by default): each Python operator on the path adds it to the latency.
    config.set_string("python.fn-execution.bundle.time", str(settings.flink_bundle_time_ms))
    # Records cross a network buffer at each shuffle (key_by); Flink sends a buffer when it is full
    # or after this long. Its default (100 ms) was most of an alert's median latency here.
    config.set_string("execution.buffer-timeout.interval", f"{settings.flink_buffer_timeout_ms} ms")
    if delivery == "at-least-once":
        # Duplicates after a restore are already accepted (consumers de-duplicate on alert_id), so
        # barriers need not be aligned: an operator keeps processing while a checkpoint passes.
        config.set_string("execution.checkpointing.mode", "AT_LEAST_ONCE")
    if resume_from:
        config.set_string("execution.state-recovery.path", resume_from)
    if not restart:
        config.set_string("restart-strategy.type", "none")
    if settings.flink_jobmanager != "local":
        host, _, port = settings.flink_jobmanager.partition(":")
        config.set_string("execution.target", "remote")
        config.set_string("rest.address", host)
        config.set_string("rest.port", port or "8081")
        # a bounded run (no restarts) waits for the job's end and its result, as locally; an unbounded one is
        # submitted and left to the cluster
        config.set_string("execution.attached", "false" if restart else "true")
        # get_execution_environment() gives a local environment to a script started with python (only the
        # `flink run` CLI sets a context one), whatever execution.target says; an environment made from the
        # configuration itself submits to the cluster it names
        from pyflink.java_gateway import get_gateway

        env = StreamExecutionEnvironment(get_gateway().jvm.org.apache.flink.streaming.api.environment
                                         .StreamExecutionEnvironment(config._j_configuration))
        env.add_python_file(str(PACKAGE_DIR))
    else:
        # a small embedded cluster: the machine has 2 cores
        config.set_string("taskmanager.memory.process.size", "1600m")
        config.set_string("rest.bind-port", "0")
        env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(settings.flink_parallelism)
    return env


def key_by(stream, key_selector, key_type):
    """``stream.key_by(key_selector, key_type)``, without the shuffle when the job runs at parallelism 1.

    PyFlink keys a stream with a Python function that pairs each record with its key and a hash
    shuffle to the keyed operator. At parallelism 1 every key group belongs to the one subtask, so
    the shuffle only moves each record to the same place: the paired stream is declared keyed as it
    is (Flink's ``DataStreamUtils.reinterpretAsKeyedStream``) and the keyed operator is fed by a
    forward connection instead. Keyed state and timers are laid out the same either way (a key's state
    lives in the key group its hash names). Measured in scratch runs (BENCHMARKS.md, "Where a thread-mode
    detector's time goes"): 1.3x the rate of a shuffled stream for a keyed function that does little per
    record; for the urban job no difference the noise shows. At a higher parallelism, or when ``stream``
    itself runs wider, this is ``key_by``.
    """
    from pyflink.common import Row, Types
    from pyflink.common.typeinfo import _from_java_type
    from pyflink.java_gateway import get_gateway

    if not _single(stream):
        return stream.key_by(key_selector, key_type=key_type)
    value_type = _from_java_type(stream._j_data_stream.getTransformation().getOutputType())
    paired = stream.map(lambda value: Row(key_selector(value), value),
                        output_type=Types.ROW([key_type, value_type]))
    # the name PyFlink gives its own keying step: its Python operators are fused with those before it
    paired.name(get_gateway().jvm.org.apache.flink.python.util.PythonConfigUtil.STREAM_KEY_BY_MAP_OPERATOR_NAME)
    return _keyed_pairs(paired._j_data_stream, key_type, value_type, stream)


def _single(stream) -> bool:
    """``stream`` and its job run at parallelism 1: every key group belongs to the one subtask."""
    j_stream = stream._j_data_stream
    return j_stream.getParallelism() == 1 and j_stream.getExecutionEnvironment().getParallelism() == 1


def _keyed_pairs(j_paired, key_type, value_type, origin):
    """A KeyedStream of ``value_type`` records from a Java stream of ``Row(key, value)`` pairs (key in field 0, as
    PyFlink's keyed operators expect): declared keyed in place when ``origin`` runs at parallelism 1, else hashed
    to the subtasks by Flink."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    key_info = Types.ROW([key_type]).get_java_type_info()
    if _single(origin):
        keyed = gateway.jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
            j_paired, gateway.jvm.KeyByKeySelector(), key_info)
    else:
        keyed = j_paired.keyBy(gateway.jvm.KeyByKeySelector(), key_info)
    return KeyedStream(keyed, value_type, origin)


def pair_type():
    """The type of ``Row(key, value)`` pairs a Python operator emits for :func:`keyed_pairs` (key str, value any
    Python object)."""
    from pyflink.common import Types

    return Types.ROW([Types.STRING(), Types.PICKLED_BYTE_ARRAY()])


def keyed_pairs(stream):
    """``stream`` of ``Row(key, value)`` pairs (:func:`pair_type`) as a stream of the values keyed by the keys.

    For a Python operator that knows the next operator's key as it emits a record (e.g. the intake that has
    just parsed it): PyFlink's ``key_by`` would call a Python key selector per record again. At parallelism 1
    the pairs are declared keyed as they are (as :func:`key_by` does), else hashed to their subtask by Flink.
    """
    from pyflink.common import Types

    return _keyed_pairs(stream._j_data_stream, Types.STRING(), Types.PICKLED_BYTE_ARRAY(), stream)


FUNCTIONS_JAR = "impetus-flink-functions.jar"


def jvm_functions(settings: Settings):
    """impetus's own Flink functions (infra/jvm/flink-functions, built by ``make jars``): the Java package
    ``io.impetus.flink`` through Flink's gateway, its jar loaded into it (jobs ship it with pipeline.jars)."""
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    jar = settings.jars_dir / "flink" / FUNCTIONS_JAR
    if not jar.is_file():
        raise ConfigError(f"{jar} is missing: impetus's own Flink functions are built by `make jars` "
                          "(or `make setup`); it needs a JDK (javac)")
    add_jars_to_context_class_loader([jar.as_uri()])
    return get_gateway().jvm.io.impetus.flink


def jvm_key(settings: Settings, fields: list[str] | tuple[str, ...] | None = None, buckets: int | None = None):
    """A JVM function pairing each raw message with its key (``Row(key, message)``), for :func:`key_in_jvm`.

    ``fields``: the JSON document's fields (dotted paths allowed) joined by ``|``, e.g. ``tenant|sensor_id|kind``
    (the key impetus.detect.streams computes in Python); a message that is not JSON or lacks a field gets
    empty parts (the checks downstream dead-letter it). With ``buckets`` as well, that key hashed into so many
    buckets (each entity's messages under one key, many entities per key). Without ``fields``: a stable hash of
    the text modulo ``buckets`` (default 128), for a function that keeps nothing per message.
    """
    functions = jvm_functions(settings)
    if fields:
        return functions.KeyByFields(",".join(fields), buckets or 0)
    return functions.KeyByHash(buckets or 128)


def stamped_now(stream, settings: Settings):
    """``stream`` with each record's timestamp set to the wall-clock time it passes, in the JVM.

    Alerts, dead letters and accounting records are new facts: their Kafka timestamp (which
    drives the topics' retention) is when they were raised; their event time is inside them. Records
    emitted when a bounded input ends would otherwise carry Flink's end-of-time timestamp,
    which the broker rejects. (A Python timestamp assigner would cost a Python call per record, on a
    thread of its own in ``thread`` mode.)
    """
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    strategy = (get_gateway().jvm.org.apache.flink.api.common.eventtime.WatermarkStrategy.noWatermarks()
                .withTimestampAssigner(jvm_functions(settings).StampedNow()))
    return DataStream(stream._j_data_stream.assignTimestampsAndWatermarks(strategy).name("stamped now"))


def key_in_jvm(stream, function, name: str):
    """``stream`` (str messages) keyed by the key ``function`` (:func:`jvm_key`) computes in the JVM.

    The keyed stream's records are the messages themselves, as with ``stream.key_by(selector)``, but no
    Python runs to key them: PyFlink's ``key_by`` calls a Python selector per record (on the upstream
    operator's thread, which in ``thread`` mode takes the interpreter lock the keyed function needs too).
    At parallelism 1 the pairs are declared keyed as they are (as :func:`key_by` does), else hashed to
    their subtask by Flink.
    """
    from pyflink.common import Types

    paired = stream._j_data_stream.map(function, Types.ROW([Types.STRING(), Types.STRING()]).get_java_type_info())
    return _keyed_pairs(paired.name(name), Types.STRING(), Types.STRING(), stream)


def bundle_type():
    """The records :func:`bundle_in_jvm` hands a keyed function: ``Row(messages, timestamps)``, one key's raw
    messages in arrival order with each one's timestamp (``impetus.operators.NO_TIMESTAMP`` for none)."""
    from pyflink.common import Types

    return Types.ROW([Types.BASIC_ARRAY(Types.STRING()), Types.PRIMITIVE_ARRAY(Types.LONG())])


def bundle_in_jvm(stream, settings: Settings, function, name: str, max_count: int, max_wait_ms: int, uid: str,
                  max_span_ms: int = 0):
    """``stream`` (str messages) keyed by the key ``function`` (:func:`jvm_key`) computes, in bundles of one key's
    messages (:func:`bundle_type`), all in the JVM (``io.impetus.flink.Bundle``).

    A bundle leaves at ``max_count`` messages, ``max_wait_ms`` after the oldest waiting arrived, and whenever a
    watermark or a checkpoint barrier comes (so a message waits at most ``max_wait_ms`` and the bundler keeps
    no state). ``max_span_ms`` (0: none): a key's bundle also leaves before a message more than that much event
    time from those waiting, so that no bundle spans more event time than that (a key whose messages are sparse
    can still hold a short bundle until the wait ends or a watermark comes). For a keyed Python function that
    takes a bundle in one call: in ``thread`` mode the call, with its keyed-state access and timer, costs several
    times the Python work on a message. At parallelism 1 the
    bundles stay on the thread of the source (declared keyed in place); above it the messages are hashed to
    their subtask by key before bundling and the bundles again after.
    """
    from pyflink.common import Types

    paired = stream._j_data_stream.map(function, Types.ROW([Types.STRING(), Types.STRING()]).get_java_type_info())
    return bundle_pairs(paired.name(name), stream, settings, name, max_count, max_wait_ms, uid, max_span_ms)


def bundle_pairs(j_pairs, origin, settings: Settings, name: str, max_count: int, max_wait_ms: int, uid: str,
                 max_span_ms: int = 0):
    """:func:`bundle_in_jvm` of a Java stream of ``Row(key, message)`` pairs made from ``origin`` (whose
    parallelism decides whether the pairs are hashed to their subtask first)."""
    from pyflink.common import Types
    from pyflink.java_gateway import get_gateway

    if not _single(origin):  # each key's messages on one subtask before they are bundled
        j_pairs = j_pairs.keyBy(get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    bundles = j_pairs.transform(f"bundle {name}", Types.ROW([Types.STRING(), bundle_type()]).get_java_type_info(),
                                jvm_functions(settings).Bundle(max_count, max_wait_ms, max_span_ms)).uid(uid)
    return _keyed_pairs(bundles, Types.STRING(), bundle_type(), origin)


def gate_in_jvm(stream, specs, settings: Settings, function, gate, name: str, uid: str):
    """``stream`` (str messages) keyed by the key ``function`` (:func:`jvm_key`) computes, through ``gate`` (an
    ``io.impetus.flink.CountingGate``: ``QuietGate`` keyed by entity, ``PostGate`` by a hash of the text), its spec
    stream ``specs`` (str) broadcast to it: the Java stream of ``Row(bucket, tagged message)`` pairs it lets on, for
    :func:`bundle_pairs`."""
    from pyflink.common import Types
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import to_jarray

    pair = Types.ROW([Types.STRING(), Types.STRING()]).get_java_type_info()
    paired = stream._j_data_stream.map(function, pair).name(name)
    keyed = paired.keyBy(get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    descriptors = to_jarray(get_gateway().jvm.org.apache.flink.api.common.state.MapStateDescriptor,
                            [jvm_functions(settings).CountingGate.specDescriptor()])
    broadcast = specs._j_data_stream.broadcast(descriptors)
    return keyed.connect(broadcast).process(gate, pair).name(f"gate: {name}").uid(uid)


def latest_checkpoint(settings: Settings, job_name: str) -> str | None:
    """The newest completed checkpoint of ``job_name`` (any earlier run), or None.

    Only local file system checkpoint folders can be listed here; on a cluster pass the
    path (or a savepoint) explicitly.
    """
    root = urlparse(settings.checkpoint_path(f"flink/{job_name}"))
    if root.scheme not in ("", "file"):
        return None
    completed = [meta.parent for meta in Path(root.path).glob("*/chk-*/_metadata")]
    if not completed:
        return None
    newest = max(completed, key=lambda p: (p.stat().st_mtime, int(p.name.split("-")[1])))
    return newest.as_uri()


def start_offsets(spec: str) -> dict[int, int]:
    """``"0:120,1:98"`` -> {0: 120, 1: 98} (partition: offset), as given to ``--start-offsets``."""
    try:
        pairs = [part.split(":") for part in spec.split(",") if part.strip()]
        return {int(p): int(o) for p, o in pairs}
    except ValueError:
        raise ValueError(f"--start-offsets {spec!r}: expected partition:offset pairs, e.g. 0:120,1:98") from None


def kafka_source(settings: Settings, topic: str, group_id: str, bounded: bool = False,
                 offsets: dict[int, int] | None = None):
    """A source of raw message values (str) from ``topic``.

    Starts at ``offsets`` ({partition: offset}) when given, else at the group's
    committed offsets (earliest when it has none). A job restored from a checkpoint
    ignores both and resumes at the checkpointed offsets. ``bounded`` stops at the
    offsets that were the latest when the job started (demo, tests, backfills);
    otherwise the source runs forever.
    """
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.kafka import (KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource,
                                                     KafkaTopicPartition)

    if offsets:
        starting = KafkaOffsetsInitializer.offsets({KafkaTopicPartition(topic, p): o for p, o in offsets.items()})
    else:
        starting = KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    builder = (KafkaSource.builder()
               .set_bootstrap_servers(settings.kafka_bootstrap)
               .set_topics(topic)
               .set_group_id(group_id)
               .set_starting_offsets(starting)
               # only committed alerts/rules count, whichever job wrote them
               .set_property("isolation.level", "read_committed")
               .set_value_only_deserializer(SimpleStringSchema()))
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


def event_time(out_of_orderness_ms: int, idle_ms: int | None = 5000):
    """Watermarks from Kafka record timestamps, tolerating ``out_of_orderness_ms`` of disorder.

    A partition without messages for ``idle_ms`` stops holding the watermark back (live runs).
    ``idle_ms=None`` for bounded runs: all their data is there, and an input marked idle while its
    records are still queued in the Python operators would hand the event-time clock to the rules
    side, which ends (at the end of time) as soon as it has read the rules: every timer would fire
    early.
    """
    from pyflink.common import Duration, WatermarkStrategy

    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(out_of_orderness_ms))
    return strategy if idle_ms is None else strategy.with_idleness(Duration.of_millis(idle_ms))


def kafka_sink(settings: Settings, topic: str | None = None, topic_selector=None,
               delivery: str = "exactly-once", transactional_id_prefix: str | None = None):
    """A sink of str values to a fixed ``topic`` or to ``topic_selector(value)``.

    ``exactly-once`` needs a ``transactional_id_prefix`` that is unique per job and sink
    and stable across restarts (lingering transactions of a killed run are aborted by it).
    """
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    if delivery not in DELIVERY_MODES:
        raise ValueError(f"delivery must be one of {', '.join(DELIVERY_MODES)}, not {delivery!r}")
    record = KafkaRecordSerializationSchema.builder().set_value_serialization_schema(SimpleStringSchema())
    record = record.set_topic(topic) if topic else record.set_topic_selector(topic_selector)
    builder = (KafkaSink.builder()
               .set_bootstrap_servers(settings.kafka_bootstrap)
               .set_record_serializer(record.build()))
    if delivery == "exactly-once":
        if not transactional_id_prefix:
            raise ValueError("an exactly-once Kafka sink needs a transactional_id_prefix")
        builder = (builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
                   .set_transactional_id_prefix(transactional_id_prefix)
                   .set_property("transaction.timeout.ms", str(TRANSACTION_TIMEOUT_MS)))
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return builder.build()


def rules_stream(env, settings: Settings, bounded: bool, job_name: str, topic: str = "rules",
                 control_topic: str | None = None):
    """The ``rules`` topic (and ``models.control``) as one broadcast stream, and the state descriptor
    that holds what it delivered.

    Every rule document is broadcast to every parallel instance of the detector, which
    keeps them in broadcast state (rule_id -> JSON) and applies them from the next event
    on: adding, changing, pausing or deleting a rule needs no restart. Rules are read from
    the beginning of the compacted topic. ``control_topic`` is read from its end as of
    submission (the job starts with the registry's current champion; later announcements
    make it load another version) and kept in the same state (``model:<name>`` -> message).
    Both sources are marked idle at once, so their quiet streams never hold back the event-time clock, and their
    records are stamped with time 0 (``StampedZero``), so that they never move it either: a rule is published at
    the wall-clock time, and as the event time of the operators it reaches it would make every reading older
    than that late and every silence due while the data's own source is idle.
    """
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.datastream.state import MapStateDescriptor
    from pyflink.java_gateway import get_gateway

    from impetus.topics import end_offsets

    descriptor = MapStateDescriptor("rules", Types.STRING(), Types.STRING())
    jvm = get_gateway().jvm
    strategy = WatermarkStrategy(jvm.org.apache.flink.api.common.eventtime.WatermarkStrategy.forMonotonousTimestamps()
                                 .withTimestampAssigner(jvm_functions(settings).StampedZero())
                                 .withIdleness(jvm.java.time.Duration.ofMillis(200)))
    source = kafka_source(settings, topic, f"impetus-{job_name}-rules-{_unique_suffix()}", bounded=bounded,
                          offsets=None)
    raw = env.from_source(source, strategy, f"kafka: {topic}")
    if control_topic:
        control = kafka_source(settings, control_topic, f"impetus-{job_name}-control-{_unique_suffix()}",
                               bounded=bounded, offsets=end_offsets(settings, control_topic) or None)
        raw = raw.union(env.from_source(control, strategy, f"kafka: {control_topic}"))
    return raw.broadcast(descriptor), descriptor


def _unique_suffix() -> str:
    # Rules are always read from the beginning of the compacted topic: a fresh group has no offsets.
    import uuid

    return uuid.uuid4().hex[:8]


def rules_snapshot(settings: Settings, topic: str = "rules") -> dict[str, dict]:
    """The rules on the topic now (rule_id -> rule), read when the job is built.

    Passed into the detectors as their starting rule set, so that events processed
    before the broadcast side has delivered the rules are judged by them too.
    """
    from impetus.rules import read_rules

    return read_rules(settings, topic)


def to_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)
