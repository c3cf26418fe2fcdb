"""The PyFlink operators every detection job is assembled from.

- :func:`intake`: raw message -> validated (and optionally parsed) document, or a dead
  letter with the reason on a side output. Counts every message and publishes the
  counts of the run to ``jobs.accounting`` (in = processed + dead-lettered), and flags
  messages whose event time is already behind the watermark (late: processed anyway,
  counted, and marked in the evidence of any alert they raise).
- :func:`detector`: a keyed operator connected to the broadcast ``rules`` stream. It
  holds the rules (:class:`impetus.rules.RuleBook`), one plain state value per key, and
  one event-time timer per key, and delegates the detection itself to a *logic*
  object from ``impetus.detect.streams`` — plain Python that the unit tests, the
  benchmarks' plain-consumer baseline and the batch evaluation run without Flink.
  Alerts pass through :mod:`impetus.detect.suppression` before they leave. The same
  broadcast carries ``models.control``: a logic object that names the models it uses in
  ``MODELS`` and has ``model_version(name)`` / ``load_model(name, version)`` switches to an
  announced version between two events (a version that fails to load is reported and the
  current one kept); the version in use is kept in broadcast state, so a restored job loads it again.

A logic object provides ``key(doc) -> str``, ``on_event(state, doc, book, ts_ms) ->
(state, alerts)``, ``on_timer(state, ts_ms, book, end_of_input) -> (state, alerts)``
and ``deadline(state) -> int | None`` (event time of the next timer it needs). One that keeps
nothing per key says so with ``STATELESS = True``: without suppression its operator then never reads state.
"""

from __future__ import annotations

import json
import time

from impetus.dlq import dead_letter_json
from impetus.embedded import on_python_thread
from impetus.schemas import PayloadRejected, check_payload

ACCOUNTING_EVERY_S = 5.0
WATERMARK_REFRESH_S = 0.05
# first element of a detector's tally records
TALLY = "tally"
# Flink's watermark at the end of a bounded input (Long.MAX_VALUE)
END_OF_INPUT = 2 ** 63 - 1
# the timestamp of a message without one in a bundle (io.impetus.flink.Bundle: Long.MIN_VALUE)
NO_TIMESTAMP = -2 ** 63


def intake(job: str, source_topic: str, schema: str, known_tenants: list[str], parse=None):
    """(ProcessFunction, dead-letter OutputTag) for messages of ``source_topic``.

    ``parse(doc)`` may enrich a valid document (e.g. parse the syslog line in it); a
    ValueError it raises dead-letters the message with the error as the reason.
    Emits ``(doc, late, source_topic)`` tuples.
    """
    from pyflink.common import Types
    from pyflink.datastream import OutputTag, ProcessFunction

    dead_letters = OutputTag(f"dead-letters-{source_topic}", Types.STRING())
    tenants = frozenset(known_tenants)

    class Intake(ProcessFunction):
        def open(self, runtime_context):
            self.admission = Admission(job, (source_topic, schema, tenants, parse, dead_letters), runtime_context)

        def process_element(self, value, ctx):
            doc, late, letter = self.admission(value, ctx.timestamp(), ctx)
            if letter is not None:
                yield dead_letters, letter
            else:
                yield doc, late, source_topic

    return Intake(), dead_letters


class Admission:
    """An operator's intake of one topic's raw messages: the check (:func:`admit`), the late flag
    (:class:`LateCheck`) and the intake's metrics: ``messages_in`` (brought up to date about once a second,
    not with a call per message), ``messages_dead_lettered``, ``messages_late``. ``intake_of``: ``(topic, schema,
    known tenants, parse, dead-letter OutputTag)``; the tag is ``dead_letters``, for the operator to emit to."""

    def __init__(self, job: str, intake_of: tuple, runtime_context):
        self.job = job
        self.topic, self.schema, self.tenants, self.parse, self.dead_letters = intake_of
        metrics = runtime_context.get_metrics_group()
        self.metric_in = metrics.counter("messages_in")
        self.metric_dead = metrics.counter("messages_dead_lettered")
        self.metric_late = metrics.counter("messages_late")
        self.is_late = LateCheck()
        self.uncounted, self.counted_at = 0, time.monotonic()

    def __call__(self, value, stamp, ctx):
        """``(doc, late, None)`` for a valid message (``stamp``: its timestamp), else ``(None, False, the dead
        letter as JSON)``."""
        self.uncounted += 1
        if self.uncounted >= 10_000 or time.monotonic() - self.counted_at >= 1.0:
            self.metric_in.inc(self.uncounted)
            self.uncounted, self.counted_at = 0, time.monotonic()
        try:
            doc = admit(self.schema, self.tenants, self.parse, value)
        except ValueError as err:  # PayloadRejected and parse errors alike
            self.metric_dead.inc()
            return None, False, dead_letter_json(self.topic, str(err), value, self.job)
        late = self.is_late(stamp, ctx)
        if late:
            self.metric_late.inc()
        return doc, late, None


class HandedRule:
    """The rules of a ``handed`` detector (:func:`detector`): the one rule the stage before handed over with the
    record, answering :meth:`impetus.rules.RuleBook.single` for its kind (None: no rule, or a timer)."""

    def __init__(self, rule: dict | None):
        self.rule = rule

    def single(self, tenant: str, kind: str) -> dict | None:
        return self.rule if self.rule is not None and self.rule["kind"] == kind else None


class LateCheck:
    """Whether a record is behind the watermark, asking Flink for the watermark at most every
    ``WATERMARK_REFRESH_S`` (each question is a call out of Python, which in ``thread`` mode costs more than
    the check itself). A record older than the watermark last seen is late at once; a newer one is judged
    against a watermark at most that old, which the source itself only advances every 200 ms."""

    def __init__(self):
        self.watermark = None
        self.asked_at = float("-inf")

    def __call__(self, stamp, ctx) -> bool:
        if stamp is None:
            return False
        if self.watermark is None or stamp >= self.watermark:
            now = time.monotonic()
            if now - self.asked_at >= WATERMARK_REFRESH_S:
                self.watermark, self.asked_at = ctx.timer_service().current_watermark(), now
        return stamp < self.watermark


def admit(schema: str, tenants: frozenset[str], parse, value) -> dict:
    """The intake's check of one raw message: the valid document (enriched by ``parse``), or ValueError
    (:class:`PayloadRejected` or the parser's) whose message is the dead letter's reason."""
    doc = check_payload(schema, value)
    if doc["tenant"] not in tenants:
        raise PayloadRejected(f"unknown tenant {doc['tenant']!r} (no alert topic for it)")
    return parse(doc) if parse is not None else doc


def accounting(job: str, run_id: str):
    """Keyed by source topic: sums the detectors' tallies and the dead letters into ``jobs.accounting`` records.

    Input: ``("tally", topic, subtask, processed, late)`` (cumulative per detector instance) and
    ``("dead", topic)``; a record goes out every few seconds while counts change and a final
    one when a bounded input ends. Counts are per run: a restarted run counts from where its
    checkpoint resumed.
    """
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    from impetus.alerts import utc_iso

    class Accounting(KeyedProcessFunction):
        def open(self, runtime_context):
            self.counts = runtime_context.get_state(ValueStateDescriptor("counts", Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, value, ctx):
            from datetime import datetime, timezone

            counts = self.counts.value() or {"tallies": {}, "dead": 0, "reported": None, "armed": False}
            if value[0] == "dead":
                counts["dead"] += 1
            else:
                counts["tallies"][value[2]] = (value[3], value[4])
            if not counts["armed"]:
                ctx.timer_service().register_event_time_timer(END_OF_INPUT - 1)
                counts["armed"] = True
            now = ctx.timer_service().current_processing_time()
            if counts["reported"] is None or now - counts["reported"] >= ACCOUNTING_EVERY_S * 1000:
                counts["reported"] = now
                yield self._record(ctx.get_current_key(), counts, False, datetime.now(timezone.utc))
            self.counts.update(counts)

        def on_timer(self, timestamp, ctx):
            from datetime import datetime, timezone

            counts = self.counts.value()
            if counts:
                yield self._record(ctx.get_current_key(), counts, True, datetime.now(timezone.utc))

        @staticmethod
        def _record(topic, counts, final, now):
            processed = sum(p for p, _ in counts["tallies"].values())
            late = sum(n for _, n in counts["tallies"].values())
            return json.dumps({"job": job, "run_id": run_id, "source_topic": topic,
                               "messages_in": processed + counts["dead"], "processed": processed,
                               "dead_lettered": counts["dead"], "late": late, "reported_at": utc_iso(now),
                               "final": final})

    return Accounting()


def subtask_index(runtime_context) -> int:
    """This parallel instance's index (0-based), in both of PyFlink's execution modes.

    In ``thread`` mode PyFlink 2.2 asks the Java context for a method Flink 2 moved to
    ``getTaskInfo()``, so the call fails there; the task info is asked directly instead.
    """
    try:
        return runtime_context.get_index_of_this_subtask()
    except AttributeError:
        return runtime_context._runtime_context.getTaskInfo().getIndexOfThisSubtask()


def _is_control(value: str) -> bool:
    """Whether a broadcast message is a ``models.control`` announcement rather than a rule."""
    try:
        doc = json.loads(value)
    except ValueError:
        return False
    return isinstance(doc, dict) and "model" in doc and "action" in doc and "rule_id" not in doc


def switch_model(job: str, logic, message: dict, loaded, failed) -> None:
    """Load the announced model version if ``logic`` uses that model (one of ``logic.MODELS``).

    ``loaded`` / ``failed``: metric counters. A version that fails to load is reported and the current one kept.
    """
    if message["model"] not in getattr(logic, "MODELS", ()):
        return
    if logic.model_version(message["model"]) == message["version"]:
        return
    try:
        # on a thread Python started: models load native extensions (impetus.embedded)
        on_python_thread(logic.load_model, message["model"], message["version"])
    except Exception as err:  # a broken or unreachable version must not stop detection
        failed.inc()
        print(f"[{job}] could not load {message['model']} version {message['version']} "
              f"({type(err).__name__}: {err}); keeping version {logic.model_version(message['model'])}",
              flush=True)
    else:
        loaded.inc()
        print(f"[{job}] now using {message['model']} version {message['version']}", flush=True)


def _keep_control(job: str, value: str, broadcast_state, rejected) -> dict | None:
    """A valid ``models.control`` announcement, kept in ``broadcast_state`` (so that a job restored from a
    checkpoint loads the version it was using); None, counted in ``rejected``, for an invalid one."""
    try:
        check_payload("models.control", value)
    except PayloadRejected as err:
        rejected.inc()
        print(f"[{job}] ignored an invalid models.control message: {err}", flush=True)
        return None
    doc = json.loads(value)
    broadcast_state.put(f"model:{doc['model']}", value)
    return doc


def rebuilt_book(job: str, logic, initial_rules: dict[str, dict], defaults: dict[str, dict], kept, loads, failures):
    """The rule book an operator judges by after it starts: the snapshot taken when the job was built, then the
    rules it keeps in ``kept`` (broadcast or map state: rule_id -> JSON, ``model:<name>`` -> announcement), the
    model versions announced there loaded into ``logic``."""
    from impetus.rules import RuleBook

    book = RuleBook(initial_rules, defaults)
    for _, text in kept.items():
        if _is_control(text):
            switch_model(job, logic, json.loads(text), loads, failures)
        else:
            book.apply(json.loads(text))
    return book


def take_rules_message(job: str, logic, value: str, kept, book, rejected, loads, failures) -> bool:
    """One message of the rules stream kept in ``kept`` and applied: a rule to ``book`` (if given), a model
    announcement to ``logic``; an invalid one counted in ``rejected`` and said why. Whether it changed anything."""
    from impetus.rules import check_rule

    if _is_control(value):
        doc = _keep_control(job, value, kept, rejected)
        if doc is None:
            return False
        switch_model(job, logic, doc, loads, failures)
        return True
    try:
        rule = check_rule(json.loads(value))
    except ValueError as err:
        rejected.inc()
        print(f"[{job}] ignored an invalid rule: {err}", flush=True)
        return False
    if rule.get("deleted"):
        kept.remove(rule["rule_id"])
    else:
        kept.put(rule["rule_id"], value)
    if book is not None:
        book.apply(rule)
    return True


def bundle_items(bundle):
    """``(message, timestamp or None)`` of each message of a bundle (:func:`impetus.flink.bundle_type`)."""
    return zip(bundle[0], [None if stamp == NO_TIMESTAMP else stamp for stamp in bundle[1]])


def is_tally(text: str) -> bool:
    """Whether a detector's output is a tally (a JSON array) rather than an alert (a JSON object)."""
    return text.startswith("[")


def detector(job: str, logic, rules_descriptor, initial_rules: dict[str, dict], defaults: dict[str, dict],
             suppress_window_ms: int, out_of_orderness_ms: int, intake_of=None, decode=None, handoff=None,
             handed=False, bundled=False, entities: int = 0, gated: bool = False):
    """A KeyedBroadcastProcessFunction running ``logic`` per key, with rules and suppression.

    ``intake_of``: None, the input is ``(doc, late, source topic)`` from :func:`intake`; or
    ``(source topic, schema, known tenants, parse, dead-letter OutputTag)``, the input is the raw messages of
    that topic and the detector checks them itself as :func:`intake` does (dead letters to the tag, late
    ones flagged): one Python operator per message instead of two (the stream keyed in the JVM, on the raw
    text or fields of it: :func:`impetus.flink.key_in_jvm`). ``decode``: the input is text another stage
    wrote (e.g. alerts as JSON), ``decode(text)`` gives ``(doc, late, source topic)``, or None to pass it by.

    ``handoff``: ``(OutputTag, select)``; each alert this detector lets out when an event arrives is offered to
    ``select(alert, rules)``, and what it returns, ``(key, (alert, rule))`` or None, goes to the tag as a
    ``Row(key, (alert, rule))`` pair, for a detector made with ``handed=True``: a one-input KeyedProcessFunction
    (no rules broadcast) that takes those pairs keyed as they are (:func:`impetus.flink.keyed_pairs`) and judges
    each alert by the rule handed with it. One input and a forward connection let Flink chain it to the detector
    before it, so both run on one operator thread (in ``thread`` mode, one thread less taking turns on the
    interpreter lock). Alerts of timers (suppression follow-ups, silence without a gate) are not handed over: PyFlink's
    ``thread`` mode drops side outputs emitted from ``on_timer``.

    ``bundled`` (with ``intake_of``): the input is bundles of one key's raw messages, ``Row(messages,
    timestamps)`` (:func:`impetus.flink.bundle_in_jvm`), taken in one call: each message is checked and judged
    in turn with its own timestamp, as if it had come alone, and the key's state is read, written and its
    timer registered once per bundle instead of once per message.

    ``entities`` (with ``bundled``; 0: off): the Flink key is a bucket of entities, one of ``entities`` buckets
    (``"<buckets>:<n>"``, their key hashed in the JVM, :func:`impetus.flink.jvm_key` with ``buckets``), so that one
    bundle holds several entities' messages in arrival order. Each entity keeps its own record (logic state,
    suppression, timer) in a Flink MapState under ``logic.key(doc)``, read once and written once per bundle that
    touches it, so the cost of a bundle does not grow with the entities a bucket holds; a second MapState lists,
    per timer moment, the entities waiting for it. Each entity is judged exactly as under a Flink key of its own.
    A job restored with another bucket count (another parallelism) finds its entities under new buckets with no
    record: the records kept under the old count are cleared when their timers fire, never judged (a silence
    pending then is not reported, an open suppression window not summarised), so that a sensor that reports on
    under its new bucket is never called silent by its old one.

    ``gated``: the messages come through a JVM gate (``io.impetus.flink.QuietGate`` or ``PostGate``,
    :func:`impetus.streaming.detect_raw` with ``gate``), tagged: ``R`` and a message it passed on, judged as
    above; ``C<n>``: n messages it found quiet, counted as processed; ``S<deadline> <message>`` (``QuietGate``,
    with ``entities``): a silence marker, handed to the logic as ``logic.silence_marker(deadline, document)`` (not
    counted: it is no message).

    When a bounded input ends, Flink advances the watermark to the end of time and every
    pending timer fires. Timers up to the watermark the data itself implies (newest event
    time seen minus the tolerated disorder) are judged as usual; only those beyond it are
    passed to the logic as ``end_of_input`` (the data ended, which is not evidence of
    anything). So a fast bounded run and a live run raise the same timer-driven alerts.

    Emits JSON strings: alerts (objects) and, about once a second and when a bounded input
    ends, this instance's tallies (arrays ``["tally", topic, subtask, processed, late]``,
    told apart by :func:`is_tally`). Tallies share the main output rather than a side
    output because PyFlink's ``thread`` mode drops side outputs emitted from ``on_timer``.
    """
    from pyflink.common import Row, Types
    from pyflink.datastream import KeyedBroadcastProcessFunction, KeyedProcessFunction
    from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

    from impetus.detect.suppression import close_windows, next_deadline, suppress_step

    stateless = getattr(logic, "STATELESS", False) and suppress_window_ms <= 0
    handoff_tag, handoff_select = handoff or (None, None)

    class Detector(KeyedProcessFunction if handed else KeyedBroadcastProcessFunction):
        def open(self, runtime_context):
            self.state = runtime_context.get_state(ValueStateDescriptor("detector", Types.PICKLED_BYTE_ARRAY()))
            if entities:
                self.entities = runtime_context.get_map_state(
                    MapStateDescriptor("entities", Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
                self.due = runtime_context.get_map_state(
                    MapStateDescriptor("entities-due", Types.LONG(), Types.PICKLED_BYTE_ARRAY()))
            metrics = runtime_context.get_metrics_group()
            self.metric_alerts = metrics.counter("alerts_out")
            self.metric_suppressed = metrics.counter("alerts_suppressed")
            self.metric_bad_rules = metrics.counter("rules_rejected")
            self.metric_model_loads = metrics.counter("model_versions_loaded")
            self.metric_model_failures = metrics.counter("model_loads_failed")
            self.book = None
            self.newest = None  # newest record timestamp this instance has seen
            self.subtask = subtask_index(runtime_context)
            self.tally = {}  # source topic -> [processed, late] in this run
            self.tallied_at = 0.0
            self.final_sent = False
            self.armed = False  # the end-of-input timer is registered (this start of the instance)
            if intake_of is not None:  # the intake's checks and metrics, as intake() has them
                self.admission = Admission(job, intake_of, runtime_context)

        def _rules(self, ctx):
            if handed:
                return HandedRule(None)  # a timer's: the logic's own state holds what it judges by
            # Rebuilt once per task start: the snapshot taken at submission, then what the
            # broadcast state holds (restored from a checkpoint, or delivered since start).
            if self.book is None:
                self.book = rebuilt_book(job, logic, initial_rules, defaults, ctx.get_broadcast_state(rules_descriptor),
                                         self.metric_model_loads, self.metric_model_failures)
            return self.book

        def process_broadcast_element(self, value, ctx):
            take_rules_message(job, logic, value, ctx.get_broadcast_state(rules_descriptor), self.book,
                               self.metric_bad_rules, self.metric_model_loads, self.metric_model_failures)
            return
            yield  # a generator, like every PyFlink process method

        def process_element(self, value, ctx):
            items = bundle_items(value) if bundled else ((value, ctx.timestamp()),)
            book = held = topic = None
            logic_state = suppression = None
            out = []
            touched = {}  # entities: entity key -> its record, as read at its first message in this bundle
            counts = False  # the gate's counts of quiet messages came
            for value, stamp in items:
                marker = False
                if gated:
                    tag, value = value[:1], value[1:]
                    if tag == "C":
                        topic = self.admission.topic
                        self.tally.setdefault(topic, [0, 0])[0] += int(value)
                        counts = True
                        continue
                    if tag == "S":
                        deadline, _, value = value.partition(" ")
                        marker, stamp = logic.silence_marker(int(deadline), json.loads(value)), None
                if decode is not None:
                    value = decode(value)
                    if value is None:
                        continue
                if handed:
                    (doc, rule), late, topic = value, False, None
                    book = HandedRule(rule)
                elif intake_of is None:
                    doc, late, topic = value
                elif marker:
                    doc, late = marker, False
                else:
                    topic = self.admission.topic
                    doc, late, letter = self.admission(value, stamp, ctx)
                    if letter is not None:
                        yield self.admission.dead_letters, letter
                        continue
                if topic is not None and not marker:
                    counted = self.tally.setdefault(topic, [0, 0])
                    counted[0] += 1
                    counted[1] += bool(late)
                if stamp is not None and (self.newest is None or stamp > self.newest):
                    self.newest = stamp
                if book is None:
                    book = self._rules(ctx)
                if entities:
                    entity = logic.key(doc)
                    record = touched.get(entity)
                    if record is None:
                        record = touched[entity] = self.entities.get(entity) or {}
                    record["logic"], record["suppress"] = self._judge(record.get("logic"), record.get("suppress"),
                                                                      doc, book, stamp, late, out)
                    continue
                if held is None:
                    # a logic that keeps nothing, without suppression, never has state to read (one call less)
                    held = {} if stateless else (self.state.value() or {})
                    logic_state, suppression = held.get("logic"), held.get("suppress")
                logic_state, suppression = self._judge(logic_state, suppression, doc, book, stamp, late, out)
            if held is None and not touched and not counts:
                return  # nothing but dead letters
            if topic is not None:
                if not self.armed:
                    # One timer at the end of time, on the first key this instance sees after it starts: it
                    # fires only when a bounded input ends, and sends the final tallies. Once per instance, not
                    # per key, so that a key with nothing pending keeps no state (one per source IP or post
                    # seen would pile up in a long run). A restored instance arms another; final_sent keeps
                    # the tallies to one report.
                    ctx.timer_service().register_event_time_timer(END_OF_INPUT - 1)
                    self.armed = True
                now = time.monotonic()
                if now - self.tallied_at >= 1.0:
                    self.tallied_at = now
                    yield from self._tallies()
            if entities:
                yield from self._emit_entities(ctx, touched, out)
            elif held is not None:  # (None: only the gate's counts came)
                yield from self._emit(ctx, held, logic_state, suppression, out)

        def _tallies(self):
            for topic, (processed, late) in self.tally.items():
                yield json.dumps([TALLY, topic, self.subtask, processed, late])

        def on_timer(self, timestamp, ctx):
            if timestamp == END_OF_INPUT - 1:
                if not self.final_sent:
                    self.final_sent = True
                    yield from self._tallies()
                return
            book = self._rules(ctx)
            implied = None if self.newest is None else self.newest - out_of_orderness_ms
            end_of_input = (ctx.timer_service().current_watermark() >= END_OF_INPUT
                            and (implied is None or timestamp > implied))
            if entities:
                yield from self._entities_timer(timestamp, ctx, book, end_of_input)
                return
            held, out = self.state.value() or {}, []
            logic_state, suppression = self._fire(held.get("logic"), held.get("suppress"), timestamp, book,
                                                  end_of_input, out)
            yield from self._emit(ctx, dict(held, timer=None), logic_state, suppression, out, fired_at=timestamp)

        def _entities_timer(self, timestamp, ctx, book, end_of_input):
            """A bucket's timer: each entity waiting for this moment judged as its own key's timer would be."""
            waiting = self.due.get(timestamp)
            if waiting is None:
                # a timer of a key from before the entities were bucketed (one entity's own key): its state goes
                self.state.clear()
                return
            self.due.remove(timestamp)
            if not str(ctx.get_current_key()).startswith(f"{entities}:"):
                # a bucket of another count (the job was restored at another parallelism): its entities now
                # live under other buckets, so what it kept is cleared, not judged
                for entity in waiting:
                    self.entities.remove(entity)
                return
            out, touched = [], {}
            for entity in waiting:
                record = self.entities.get(entity)
                if record is None or record.get("timer") != timestamp:
                    continue  # cleared since, or an earlier moment was registered for it since and has fired
                record["timer"] = None
                record["logic"], record["suppress"] = self._fire(record.get("logic"), record.get("suppress"),
                                                                 timestamp, book, end_of_input, out)
                touched[entity] = record
            yield from self._emit_entities(ctx, touched, out, fired_at=timestamp)

        def _emit_entities(self, ctx, touched, out, fired_at=None):
            """Each touched entity's timer and record, then the alerts out (as :meth:`_emit`)."""
            registered = {}  # deadline -> entities newly waiting for it (each list written once per call)
            for entity, record in touched.items():
                logic_state, suppression = record.get("logic"), record.get("suppress")
                deadline = self._deadline(logic_state, suppression, fired_at)
                timer = record.get("timer")
                if deadline is not None and (timer is None or deadline < timer):
                    registered.setdefault(deadline, []).append(entity)
                    record["timer"] = deadline
                if logic_state is None and not suppression:
                    self.entities.remove(entity)
                else:
                    self.entities.put(entity, record)
            for deadline, added in registered.items():
                ctx.timer_service().register_event_time_timer(deadline)
                waiting = self.due.get(deadline) or []
                known = set(waiting)
                self.due.put(deadline, waiting + [entity for entity in added if entity not in known])
            yield from self._out(out, fired_at)

        def _deadline(self, logic_state, suppression, fired_at):
            deadline = min((d for d in (logic.deadline(logic_state), next_deadline(suppression)) if d is not None),
                           default=None)
            if deadline is not None and fired_at is not None and deadline <= fired_at:
                # a logic that asks again for the moment that just fired would loop forever
                raise RuntimeError(f"{job}: {type(logic).__name__} asked for a timer at {deadline}, "
                                   f"not after the one that fired at {fired_at}")
            return deadline

        def _out(self, out, fired_at):
            for alert, book in out:
                self.metric_alerts.inc()
                yield json.dumps(alert, ensure_ascii=False)
                if handoff_tag is not None and fired_at is None:
                    pair = handoff_select(alert, book)
                    if pair is not None:
                        yield handoff_tag, Row(*pair)

        def _judge(self, logic_state, suppression, doc, book, stamp, late, out):
            """One message through the logic and suppression into ``out``; returns both states after it."""
            logic_state, alerts = logic.on_event(logic_state, doc, book, stamp)
            if late:
                for alert in alerts:
                    alert.setdefault("evidence", {})["late_event"] = True
            return logic_state, self._suppress(suppression, alerts, out, book)

        def _fire(self, logic_state, suppression, timestamp, book, end_of_input, out):
            """A timer through the logic and suppression (windows it ends summarised first) into ``out``."""
            logic_state, alerts = logic.on_timer(logic_state, timestamp, book, end_of_input)
            suppression, follow_ups = close_windows(suppression, timestamp)
            out.extend((alert, None) for alert in follow_ups)
            return logic_state, self._suppress(suppression, alerts, out, None)

        def _suppress(self, suppression, alerts, out, book):
            """``alerts`` through suppression into ``out`` as ``(alert, book)``; returns the suppression state."""
            for alert in alerts:
                if suppress_window_ms > 0:
                    suppression, passed = suppress_step(suppression, alert, suppress_window_ms)
                    if alert not in passed:
                        self.metric_suppressed.inc()
                    out.extend((each, book) for each in passed)
                else:
                    out.append((alert, book))
            return suppression

        def _emit(self, ctx, held, logic_state, suppression, out, fired_at=None):
            """The key's timer and state after an event, a bundle or a timer, then its alerts out (``(alert, the
            rules it was judged by)``; handed over too when an event raised it)."""
            deadline = self._deadline(logic_state, suppression, fired_at)
            # Timers are kept, not moved: each call into Flink costs a thread-mode detector far more than the
            # Python around it, and a silence deadline moves on with every reading. The earliest timer
            # registered stays; when it fires before anything is due, the logic finds nothing and the next
            # deadline is registered then. A timer left behind by a cleared key fires the same way.
            timer = held.get("timer")
            if deadline is not None and (timer is None or deadline < timer):
                ctx.timer_service().register_event_time_timer(deadline)
                timer = deadline
            if logic_state is None and not suppression:
                if held:
                    self.state.clear()
            else:
                self.state.update({"logic": logic_state, "suppress": suppression, "timer": timer})
            yield from self._out(out, fired_at)

    return Detector()


def spec_compiler(job: str, logic, compile, initial_rules: dict[str, dict], defaults: dict[str, dict]):
    """A KeyedProcessFunction over the raw rules stream (rules and ``models.control``, all under one key) that
    emits ``compile(logic, book)`` (text) whenever a message changes what it gives: the spec a JVM gate judges
    by (:mod:`impetus.detect.quiet`), kept in step with the rules and the model version the detector applies.
    The rule book is built and kept as the detector's is (:func:`rebuilt_book`, :func:`take_rules_message`)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import MapStateDescriptor

    class SpecCompiler(KeyedProcessFunction):
        def open(self, runtime_context):
            self.kept = runtime_context.get_map_state(MapStateDescriptor("rules", Types.STRING(), Types.STRING()))
            metrics = runtime_context.get_metrics_group()
            self.metric_bad = metrics.counter("rules_rejected")
            self.metric_loads = metrics.counter("model_versions_loaded")
            self.metric_failures = metrics.counter("model_loads_failed")
            self.book = None
            self.emitted = None

        def process_element(self, value, ctx):
            if self.book is None:
                self.book = rebuilt_book(job, logic, initial_rules, defaults, self.kept, self.metric_loads,
                                         self.metric_failures)
            if not take_rules_message(job, logic, value, self.kept, self.book, self.metric_bad, self.metric_loads,
                                      self.metric_failures):
                return
            spec = compile(logic, self.book)
            if spec != self.emitted:
                self.emitted = spec
                yield spec

    return SpecCompiler()


def batch_scorer(job: str, logic, rules_descriptor, intake_of, key_out=None):
    """A KeyedBroadcastProcessFunction handing bundles of raw messages, checked, to ``logic.score`` in one call.

    For models that cost about as much per call as per batch (e.g. :class:`impetus.detect.streams.FlowScoring`);
    ``logic`` None: the messages are only checked (an intake taking bundles).
    The input is the bundles :func:`impetus.flink.bundle_in_jvm` gathers in the JVM, ``Row(messages,
    timestamps)``; ``intake_of`` is as for :func:`detector`: each message is checked here (dead letters to the tag,
    late ones flagged by their own timestamp) and the valid ones are scored together. The bundler, not this
    function, decides when a batch is complete (full, after a wait, before a watermark is passed on, before a
    checkpoint barrier), so nothing waits in Flink state here and a restored job neither loses nor repeats a
    record. Records leave in arrival order, as ``(doc, late, topic)``, or with ``key_out`` as ``Row(key_out(doc),
    (doc, late, topic))`` pairs keyed for the next operator without a Python call of its own
    (:func:`impetus.flink.keyed_pairs`; declare ``output_type=impetus.flink.pair_type()``). The broadcast side
    takes ``models.control`` announcements and switches ``logic``'s model like :func:`detector` does (rules are
    ignored).
    """
    from pyflink.common import Row
    from pyflink.datastream import KeyedBroadcastProcessFunction

    class BatchScorer(KeyedBroadcastProcessFunction):
        def open(self, runtime_context):
            self.admission = Admission(job, intake_of, runtime_context)
            metrics = runtime_context.get_metrics_group()
            self.metric_batches = metrics.counter("batches_scored")
            self.metric_bad = metrics.counter("control_messages_rejected")
            self.metric_loads = metrics.counter("model_versions_loaded")
            self.metric_failures = metrics.counter("model_loads_failed")
            self.restored = False

        def _restore(self, ctx) -> None:
            # once per task start: the model version announced before a restore
            if not self.restored:
                self.restored = True
                for _, text in ctx.get_broadcast_state(rules_descriptor).items():
                    if _is_control(text):
                        switch_model(job, logic, json.loads(text), self.metric_loads, self.metric_failures)

        def process_broadcast_element(self, value, ctx):
            if _is_control(value):
                doc = _keep_control(job, value, ctx.get_broadcast_state(rules_descriptor), self.metric_bad)
                if doc is not None:
                    switch_model(job, logic, doc, self.metric_loads, self.metric_failures)
            return
            yield  # a generator, like every PyFlink process method

        def process_element(self, value, ctx):
            self._restore(ctx)
            admitted = []
            for message, stamp in bundle_items(value):
                doc, late, letter = self.admission(message, stamp, ctx)
                if letter is not None:
                    yield self.admission.dead_letters, letter
                else:
                    admitted.append((doc, late))
            if not admitted:
                return
            self.metric_batches.inc()
            topic = self.admission.topic
            docs = [doc for doc, _ in admitted]
            for doc, (_, late) in zip(docs if logic is None else logic.score(docs), admitted):
                yield (doc, late, topic) if key_out is None else Row(key_out(doc), (doc, late, topic))

    return BatchScorer()
