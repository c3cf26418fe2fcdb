"""The detection logic of each streaming job, per key, as plain Python.

Each class here is what one keyed operator of a job in jobs/streaming/ runs (see
:mod:`impetus.operators` for the contract: ``key``, ``on_event``, ``on_timer``,
``deadline``). The same objects run without Flink in :func:`run_plain`, which the
unit tests, the evaluation of detection quality and the benchmarks' plain
kafka-python baseline use, so the stream and the batch judge events identically.

State per key is plain picklable data; rules come from a :class:`impetus.rules.RuleBook`.
"""

from __future__ import annotations

from functools import lru_cache

from impetus.detect import thresholds, urban
from impetus.rules import detector_of


class SensorWatch:
    """Per sensor (tenant, sensor, kind): hard thresholds, baseline anomalies, silence.

    State: ``{"last": epoch ms of the newest reading, "kind", "location", "deadlines": [ms, ...]}``.
    Silence is judged on event time: the operator's timer fires at each deadline once the
    watermark (the event time of the whole stream) passes it. When a bounded input ends,
    the watermark jumps to the end of time and every pending deadline fires; that is the
    end of the data, not evidence of a silent sensor, so no alert is raised then.
    """

    MODELS = ("urban_baseline",)
    # a silence marker of the JVM gate, handed to on_event: the reading it carries plus this field (the deadline)
    SILENT_AT = "impetus_silent_at"

    def __init__(self, configured_thresholds: dict[str, float], baseline: dict | None = None, gated: bool = False):
        self.configured = dict(configured_thresholds)
        self.baseline = baseline
        # gated: the JVM gate (io.impetus.flink.QuietGate, impetus.detect.quiet) keeps each sensor's silence clock
        # and hands over the readings that may alert and silence markers; this watch then keeps no state
        self.gated = gated

    def silence_marker(self, deadline_ms: int, reading: dict) -> dict:
        """The document :meth:`on_event` takes for the gate's marker: ``reading`` (the sensor's newest) still
        the newest when the watermark passed ``deadline_ms``."""
        return dict(reading, **{self.SILENT_AT: deadline_ms})

    def model_version(self, name: str) -> str | None:
        return self.baseline["version"] if self.baseline else None

    def load_model(self, name: str, version: str) -> None:
        """Switch to a registered baseline version (announced on ``models.control``)."""
        from impetus.config import load_settings
        from impetus.registry import load_artefact

        self.baseline, _ = load_artefact(load_settings(), name, version)

    # the key's fields, in order; the urban job computes the same key in the JVM from them (impetus.flink.jvm_key)
    KEY_FIELDS = ("tenant", "sensor_id", "kind")

    @staticmethod
    def key(reading: dict) -> str:
        return "|".join(reading[name] for name in SensorWatch.KEY_FIELDS)

    def on_event(self, state, reading, book, ts_ms=None):
        tenant = reading["tenant"]
        if self.gated and self.SILENT_AT in reading:
            rule = book.single(tenant, "silent_sensor")
            if rule is None:  # paused or deleted since the reading: no alert
                return None, []
            return None, [self._silent(tenant, reading["sensor_id"], reading["kind"], reading["event_time"],
                                       reading[self.SILENT_AT], reading.get("location"), rule)]
        alerts = []
        limits, rules = thresholds.thresholds_for(tenant, book, self.configured)
        rule = rules.get(reading["kind"])
        alert = thresholds.threshold_alert(reading, limits, detector=detector_of(rule) if rule else None)
        if alert:
            alerts.append(alert)
        anomaly_rule = book.single(tenant, "urban_anomaly")
        if anomaly_rule and self.baseline:
            alert = urban.urban_anomaly_alert(reading, self.baseline, anomaly_rule["params"])
            if alert:
                alerts.append(alert)
        if self.gated:
            return None, alerts
        moment = urban.event_ms(reading["event_time"])
        state = dict(state or {})
        if moment >= state.get("last", moment):
            silence_rule = book.single(tenant, "silent_sensor")
            state.update(last=moment, kind=reading["kind"], location=reading.get("location"), tenant=tenant,
                         sensor=reading["sensor_id"],
                         rule=silence_rule,
                         deadlines=(urban.silent_sensor_deadlines(moment, silence_rule["params"])
                                    if silence_rule else []))
        return state, alerts

    def on_timer(self, state, ts_ms, book, end_of_input=False):
        if not state or self.gated:
            return None, []  # gated: state from before the gate (its silences are the gate's now)
        due = [d for d in state["deadlines"] if d <= ts_ms]
        state = dict(state, deadlines=[d for d in state["deadlines"] if d > ts_ms])
        if end_of_input:
            return state, []
        rule = state["rule"]
        alerts = [self._silent(state["tenant"], state["sensor"], state["kind"], state["last"], d, state["location"],
                               rule) for d in due]
        return state, alerts

    @staticmethod
    def _silent(tenant, sensor, kind, last, deadline, location, rule):
        return urban.silent_sensor_alert(tenant, sensor, kind, last, deadline, location, rule["params"],
                                         detector=detector_of(rule))

    @staticmethod
    def deadline(state):
        return min(state["deadlines"]) if state and state.get("deadlines") else None


class AreaWatch:
    """Per area (tenant, area): bursts of urban anomalies at several counters -> one area alert.

    Input: the ``urban_anomaly`` alerts of :class:`SensorWatch` (in the Flink job, handed over by the sensor
    watch with the tenant's ``area_burst`` rule: :meth:`handed`). State: the burst state of
    :func:`impetus.detect.urban.area_burst_step` and the params it was judged with.
    """

    @staticmethod
    def key(anomaly: dict) -> str:
        return f"{anomaly['tenant']}|{(anomaly.get('location') or {}).get('area', '')}"

    @staticmethod
    def handed(alert: dict, book) -> tuple[str, tuple[dict, dict]] | None:
        """What the sensor watch hands the area watch of one of its alerts (``impetus.operators.detector``'s
        ``handoff``): ``(key, (alert, the tenant's area_burst rule))`` for an urban anomaly with an area while
        that rule is on, else None (not the area watch's concern)."""
        area = (alert.get("location") or {}).get("area")
        if alert["category"] != "urban_anomaly" or not area:
            return None
        rule = book.single(alert["tenant"], "area_burst")
        return None if rule is None else (AreaWatch.key(alert), (alert, rule))

    def on_event(self, state, anomaly, book, ts_ms=None):
        rule = book.single(anomaly["tenant"], "area_burst")
        if rule is None:
            return state, []
        burst, alerts = urban.area_burst_step((state or {}).get("burst"), anomaly, rule["params"],
                                              detector=detector_of(rule))
        return ({"burst": burst, "params": rule["params"]} if burst else None), alerts

    def on_timer(self, state, ts_ms, book, end_of_input=False):
        if state and (urban.expires_at(state["burst"]) or 0) <= ts_ms:
            return None, []
        return state, []

    @staticmethod
    def deadline(state):
        return urban.expires_at(state["burst"]) if state else None


def run_plain(logic, documents, book, timers: bool = True) -> list[dict]:
    """Run ``logic`` over documents in order, as the keyed operator would, without Flink.

    Event time advances with the documents (the watermark is the newest event time seen,
    i.e. no tolerance for disorder); timers fire when it passes them; at the end of the
    input pending timers fire as at the end of a bounded Flink run. Suppression is not
    applied (it is the operator's). Returns the alerts in emission order.
    """
    states: dict[str, object] = {}
    alerts: list[dict] = []
    watermark = None
    for doc in documents:
        moment = urban.event_ms(doc.get("event_time") or doc.get("received_time"))
        if timers and watermark is not None and moment > watermark:
            _fire(logic, states, moment - 1, book, alerts, end_of_input=False)
        watermark = moment if watermark is None else max(watermark, moment)
        key = logic.key(doc)
        states[key], out = logic.on_event(states.get(key), doc, book, moment)
        alerts.extend(out)
    if timers:
        _fire(logic, states, 2 ** 63 - 1, book, alerts, end_of_input=True)
    return alerts


def _fire(logic, states, watermark, book, alerts, end_of_input):
    for key in sorted(states):
        while True:
            due = logic.deadline(states[key])
            if due is None or due > watermark:
                break
            states[key], out = logic.on_timer(states[key], due, book, end_of_input)
            alerts.extend(out)


class FlowModel:
    """The flow-anomaly model a logic object scores with, switched to announced versions (``models.control``)."""

    MODELS = ("flow_anomaly",)

    def __init__(self, flow_scorer=None):
        self.scorer = flow_scorer

    def model_version(self, name: str) -> str | None:
        return self.scorer.metadata["version"] if self.scorer else None

    def load_model(self, name: str, version: str) -> None:
        """Switch to a registered flow-model version (announced on ``models.control``)."""
        from impetus.config import load_settings
        from impetus.registry import load_artefact

        self.scorer, _ = load_artefact(load_settings(), name, version)


class SourceWatch(FlowModel):
    """Per source (tenant, source IP; or tenant, host, user for sudo): brute force, port scans, flow anomalies.

    Input: ``security.syslog`` documents enriched by :func:`syslog_event` (the parsed security
    event, or None for lines that are not one) and ``network.flows`` documents. State: one
    step state per rule kind (:mod:`impetus.detect.cyber`; port scans seen in flows apart from
    those seen in firewall logs), dropped when it expires. Flow anomalies are judged on the
    score :class:`FlowScoring` attached to a flow (``flow_score``: the cyber job scores flows in
    batches ahead of this operator), else the flow is scored here, one at a time, by the ONNX
    model (:mod:`impetus.detect.flow_anomaly`) when it has been built; without either that check
    is off. ``scored_upstream``: every flow arrives scored, so this object holds no model.
    """

    def __init__(self, flow_scorer=None, scored_upstream: bool = False):
        super().__init__(flow_scorer)
        if scored_upstream:
            self.MODELS = ()

    @staticmethod
    def key(doc: dict) -> str:
        from impetus.detect import cyber

        tenant = doc["tenant"]
        if "line" not in doc:
            return f"{tenant}|{doc['src_ip']}"
        event = doc.get("security_event")
        keys = cyber.state_keys(tenant, event) if event else []
        # lines that are no security event do nothing; one key keeps them off the sources' state
        return keys[0][1] if keys else f"{tenant}|-"

    def on_event(self, state, doc, book, ts_ms=None):
        from impetus.detect import cyber

        tenant = doc["tenant"]
        state = dict(state or {})
        alerts = []
        if "line" in doc:
            event = doc.get("security_event")
            work = [(kind, kind, cyber.firewall_observation(event) if kind == "port_scan" else event)
                    for kind, _ in (cyber.state_keys(tenant, event) if event else [])]
        else:
            scan_rule = book.single(tenant, "port_scan")
            observation = cyber.flow_observation(doc, scan_rule) if scan_rule else None
            # Flows and firewall logs come from different topics, each in order per source but not in
            # step with each other: one scan state per topic, so that neither's events look too old
            # against the other's newest.
            work = [("port_scan", "port_scan/flows", observation)] if observation else []
            anomaly_rule = book.single(tenant, "flow_anomaly")
            if anomaly_rule is not None:
                alerts.extend(self._flow_alerts(doc, anomaly_rule))
        for kind, slot, payload in work:
            rule = book.single(tenant, kind)
            if rule is None or payload is None:
                continue
            state[slot], raised = cyber.STEPS[kind](state.get(slot), payload, rule, tenant=tenant)
            alerts.extend(raised)
        return (state or None), alerts

    def _flow_alerts(self, flow: dict, rule: dict) -> list[dict]:
        from impetus.detect import flow_anomaly

        if "flow_score" in flow:
            scored = flow["flow_score"]
            if scored is None:  # no model when it was scored
                return []
            return flow_anomaly.alerts_for_scores([flow], [scored["score"]], scored["model"], rule["params"],
                                                  rule_id=rule["rule_id"])
        if self.scorer is None:
            return []
        return flow_anomaly.flow_alerts(self.scorer, [flow], rule["params"], rule_id=rule["rule_id"])

    def on_timer(self, state, ts_ms, book, end_of_input=False):
        from impetus.detect import cyber

        kept = {kind: st for kind, st in (state or {}).items() if (cyber.expires_at(st) or 0) > ts_ms}
        return (kept or None), []

    @staticmethod
    def deadline(state):
        from impetus.detect import cyber

        times = [cyber.expires_at(st) for st in (state or {}).values()]
        times = [t for t in times if t is not None]
        return min(times) if times else None


class PostWatch:
    """Per post: investigations, watched indicators and threat language in social posts and CTI items.

    Stateless per post; the tenant's text rules are compiled once per change of the rule
    set (kept on the object, not in Flink state: it is rebuilt from the rules after a
    restart). The ``threat_language`` rule has a built-in default, so threats are flagged
    before any rule is published; investigations and watched assets exist only as rules.
    """

    # nothing is kept per post: the operator need not read state for it (impetus.operators.detector)
    STATELESS = True

    def __init__(self):
        self.compiled = {}  # tenant -> (rules signature, CompiledRules)

    def __getstate__(self):
        return {"compiled": {}}

    @staticmethod
    def key(post: dict) -> str:
        # per post: nothing is kept across posts, and suppression (same detector and post within the window:
        # a replayed post) then keeps a small state per post rather than one growing state per tenant, which
        # every post would read and write
        return f"{post['tenant']}|{PostWatch.topic_of(post)}|{post['post_id']}"

    @staticmethod
    def topic_of(post: dict) -> str:
        # social posts name their platform, CTI items their source (schemas/social.posts, cti.posts)
        return "social.posts" if "platform" in post else "cti.posts"

    def rules(self, tenant: str, book):
        from impetus.detect import text

        chosen = [r for r in text.rules_for(tenant, book.rules) if r["kind"] != "threat_language"]
        threat = book.single(tenant, "threat_language")
        if threat is not None:
            chosen.append(threat)
        signature = tuple((r["rule_id"], r["updated_at"], r["enabled"]) for r in chosen)
        cached = self.compiled.get(tenant)
        if cached is None or cached[0] != signature:
            cached = (signature, text.compile_rules(chosen))
            self.compiled[tenant] = cached
        return cached[1]

    def on_event(self, state, post, book, ts_ms=None):
        from impetus.detect import text

        return None, text.analyse_post(post, self.topic_of(post), self.rules(post["tenant"], book))

    def on_timer(self, state, ts_ms, book, end_of_input=False):
        return None, []

    @staticmethod
    def deadline(state):
        return None


class AlertGate:
    """Suppression only: per alerted entity, the alerts of a detector stage that did not suppress its own.

    Passes every alert on; the operator holding it suppresses repeats per (detector, entity) as
    it does for every logic (:mod:`impetus.detect.suppression`). Keyed by the entity, so every repeat of
    a pair meets the same suppression state.
    """

    KEY_FIELDS = ("tenant", "entity.type", "entity.id")  # as the JVM computes the key (impetus.flink.jvm_key)

    @staticmethod
    def key(alert: dict) -> str:
        return f"{alert['tenant']}|{alert['entity']['type']}|{alert['entity']['id']}"

    def on_event(self, state, alert, book, ts_ms=None):
        return None, [alert]

    def on_timer(self, state, ts_ms, book, end_of_input=False):
        return None, []

    @staticmethod
    def deadline(state):
        return None


def syslog_event(doc: dict) -> dict:
    """Intake parser for ``security.syslog``: the document with its parsed ``security_event``.

    A line that is not syslog raises :class:`impetus.detect.syslog.SyslogParseError` (a
    ValueError: the intake dead-letters it with the reason).
    """
    from impetus.detect.syslog import parse_document, security_event

    record = parse_document(doc)
    return dict(doc, event_time=record["event_time"], security_event=security_event(record))


def analyse_video_frame(doc: dict) -> dict:
    """Intake parser for ``video.frames``: people and faces found, the frame anonymised, the raw image dropped.

    A frame that cannot be decoded raises :class:`impetus.detect.video.FrameRejected` (a ValueError:
    the intake dead-letters it with the reason). The detectors load once per worker process.
    """
    from impetus.embedded import on_python_thread

    # OpenCV, ONNX Runtime and the registry's clients run on a thread Python started (impetus.embedded)
    return on_python_thread(_analyse_video_frame, doc)


def _analyse_video_frame(doc: dict) -> dict:
    from impetus.detect.video import analyse_frame

    public_key, registered, motion = _video_context()
    return analyse_frame(doc, public_key=public_key, object_detectors=registered.current(), motion=motion)


@lru_cache(maxsize=1)
def _video_context():
    """(operators' public key or None, the registered detectors of ``IMPETUS_VIDEO_DETECTORS``, the
    cameras' background models), set up once per worker process rather than for every frame; the
    detectors follow their ``@champion``."""
    from impetus.config import load_settings
    from impetus.detect.objects import RegisteredDetectors
    from impetus.detect.video import MotionDetector
    from impetus.evidence import public_key_of

    settings = load_settings()
    return (public_key_of(settings), RegisteredDetectors(settings, log=lambda line: print(line, flush=True)),
            MotionDetector())


class ZoneWatch:
    """Per zone (tenant, zone): crowd density from the analysed frames of every camera on the zone.

    A ``zone_capacity`` rule for the zone sets its capacity; without one the zone is counted but never
    judged. When an alert is raised, the anonymised frame behind it is written to the evidence
    folder (``evidence_dir/<tenant>/<alert id>.jpg``) and linked in the alert as ``evidence_uri``.
    """

    def __init__(self, evidence_dir: str | None = None):
        self.evidence_dir = evidence_dir

    @staticmethod
    def key(frame: dict) -> str:
        return f"{frame['tenant']}|{frame.get('zone') or frame['camera_id']}"

    def on_event(self, state, frame, book, ts_ms=None):
        from impetus.detect.video import crowd_step

        from impetus.detect.objects import object_alerts

        zone = frame.get("zone") or frame["camera_id"]
        alerts = object_alerts(frame, book.matching(frame["tenant"], "object_alert")) if frame.get("objects") else []
        rules = [r for r in book.matching(frame["tenant"], "zone_capacity") if r["params"].get("zone") == zone]
        if rules:
            moment = ts_ms if ts_ms is not None else urban.event_ms(frame["event_time"])
            state, crowd = crowd_step(state, dict(frame, zone=zone), rules[0], moment)
            alerts += crowd
        else:
            state = None
        for alert in alerts:
            self._keep_evidence(alert, frame)
        return state, alerts

    def _keep_evidence(self, alert: dict, frame: dict) -> None:
        import base64
        from pathlib import Path

        if not self.evidence_dir or not frame.get("anonymised_jpeg"):
            return
        folder = Path(self.evidence_dir) / alert["tenant"]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{alert['alert_id']}.jpg"
        path.write_bytes(base64.b64decode(frame["anonymised_jpeg"]))
        alert["evidence"]["evidence_uri"] = path.as_uri()
        if frame.get("sealed_frame"):
            # the unredacted frame, openable only by the operators (impetus evidence reveal)
            sealed = folder / f"{alert['alert_id']}.sealed"
            sealed.write_bytes(base64.b64decode(frame["sealed_frame"]))
            alert["evidence"]["sealed_evidence"] = "impetus evidence reveal " + alert["alert_id"]

    def on_timer(self, state, ts_ms, book, end_of_input=False):
        return state, []

    @staticmethod
    def deadline(state):
        return None


class FlowScoring(FlowModel):
    """Scores network flows in batches: one model call per batch instead of one per flow.

    The flow-anomaly model (an ONNX IsolationForest of about 2,000 graph nodes) costs about
    0.4 ms a call whatever the batch size up to a few hundred rows, so scoring flows one at a time
    was most of the cyber job's time. :func:`impetus.operators.batch_scorer` takes flows in batches gathered
    in the JVM (:func:`impetus.streaming.score_in_batches`) and hands them here; each comes back
    with ``flow_score``: ``{"score", "model": {"name", "version", "threshold"}}``, or None while no model is
    loaded (the schema of ``network.flows`` forbids the field in a message, so only this sets it).
    """

    def score(self, flows: list[dict]) -> list[dict]:
        if self.scorer is None:
            return [dict(flow, flow_score=None) for flow in flows]
        meta = self.scorer.metadata
        model = {"name": meta["name"], "version": meta["version"], "threshold": float(meta["threshold"])}
        return [dict(flow, flow_score={"score": score, "model": model})
                for flow, score in zip(flows, self.scorer.score(flows))]
