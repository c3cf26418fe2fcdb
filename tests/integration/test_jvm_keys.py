"""impetus's own Flink functions (infra/jvm/flink-functions, built by `make jars`): the keys they compute
in the JVM, asked through Flink's own gateway in a subprocess (this test process keeps no JVM)."""

import json
import os
import subprocess
import sys
import zlib

from impetus.detect.streams import SensorWatch

from .conftest import ROOT

READING = {"tenant": "oslo", "sensor_id": "akl-297-queen-street", "kind": "pm2_5", "value": 12.5,
           "event_time": "2019-03-01T07:00:00+13:00", "location": {"area": "Queen Street"}}
# escapes and non-ASCII text decode as Python's json decodes them
ESCAPED = dict(READING, sensor_id="Gr\u00fcnerl\u00f8kka \"gate\" 7", kind="no\u2082")
MESSAGES = [
    json.dumps(READING),
    json.dumps(READING, separators=(",", ":")),  # another producer's spacing: the same key
    json.dumps(ESCAPED),  # \u escapes in the text
    json.dumps(ESCAPED, ensure_ascii=False),  # the same characters as UTF-8
    json.dumps({"tenant": "oslo", "sensor_id": 297, "kind": "pm2_5"}),  # not a string: empty part
    json.dumps({"tenant": "oslo", "kind": "pm2_5"}),  # missing
    "not json at all",
    json.dumps([1, 2, 3]),
]

PROBE = """
import json, sys
from impetus.config import load_settings
from impetus.flink import jvm_key

settings = load_settings()
messages = json.loads(sys.stdin.read())
by_fields = jvm_key(settings, ("tenant", "sensor_id", "kind"))
by_area = jvm_key(settings, ("tenant", "location.area"))
by_hash = jvm_key(settings, None, buckets=128)
by_bucket = jvm_key(settings, ("tenant", "sensor_id", "kind"), buckets=16)
row = by_fields.map(messages[0])
print(json.dumps({"fields": [by_fields.keyOf(m) for m in messages], "area": [by_area.keyOf(m) for m in messages],
                  "hash": [by_hash.keyOf(m) for m in messages],
                  "bucket": [by_bucket.map(m).getField(0) for m in messages],
                  "row": [row.getField(0), row.getField(1)]}))
"""


def keys() -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            input=json.dumps(MESSAGES), env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_jvm_keys_are_the_fields_joined_as_the_detectors_join_them_and_empty_parts_for_what_is_not_there():
    found = keys()
    assert found["fields"] == [
        "oslo|akl-297-queen-street|pm2_5",
        "oslo|akl-297-queen-street|pm2_5",
        "oslo|Gr\u00fcnerl\u00f8kka \"gate\" 7|no\u2082",
        "oslo|Gr\u00fcnerl\u00f8kka \"gate\" 7|no\u2082",
        "oslo||pm2_5",
        "oslo||pm2_5",
        "||",
        "||",
    ]
    # the sensor watch's own key of every valid reading is the one computed in the JVM
    for message, key in zip(MESSAGES[:4], found["fields"][:4]):
        assert SensorWatch.key(json.loads(message)) == key
    assert found["area"] == ["oslo|Queen Street"] * 2 + ["oslo|Queen Street"] * 2 + ["oslo|", "oslo|", "|", "|"]
    # the pair handed to the keyed Python function: the key, then the message unchanged
    assert found["row"] == ["oslo|akl-297-queen-street|pm2_5", MESSAGES[0]]


def test_jvm_hash_keys_are_crc32_of_the_utf8_text_modulo_the_buckets():
    found = keys()
    assert found["hash"] == [str(zlib.crc32(m.encode()) % 128) for m in MESSAGES]
    # bucketed field keys: the fields' key hashed, so one sensor's readings share a bucket however they are spelt
    assert found["bucket"] == [f"16:{zlib.crc32(key.encode()) % 16}" for key in found["fields"]]
    assert found["bucket"][0] == found["bucket"][1] and found["bucket"][2] == found["bucket"][3]


BUNDLES = """
import json, sys
from pyflink.common import Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import StreamExecutionEnvironment
from impetus.config import load_settings
from impetus.flink import bundle_in_jvm, jvm_functions, jvm_key

settings = load_settings()
messages = json.loads(sys.stdin.read())
parallelism, count, span = (int(arg) for arg in sys.argv[1:4])
env = StreamExecutionEnvironment.get_execution_environment()
env.set_parallelism(parallelism)
env.set_python_executable(sys.executable)
env.add_jars(settings.jars_dir.joinpath("flink", "impetus-flink-functions.jar").as_uri())
jvm_functions(settings)


class Stamp(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp):
        return json.loads(value)["stamp"] if value.startswith("{") else 5000


# with a span, no watermarks: only the count, the span and the end of the input close a bundle here
strategy = WatermarkStrategy.no_watermarks() if span else WatermarkStrategy.for_monotonous_timestamps()
stream = env.from_collection(messages, Types.STRING()).assign_timestamps_and_watermarks(
    strategy.with_timestamp_assigner(Stamp()))
bundles = bundle_in_jvm(stream, settings, jvm_key(settings, ("tenant", "sensor_id")), "key", count, 60000,
                        uid="bundle", max_span_ms=span)
out = bundles.map(lambda b: json.dumps([list(b[0]), list(b[1])]), Types.STRING())
print(json.dumps([json.loads(text) for text in out.execute_and_collect()]))
"""


def bundles(parallelism: int, messages: list[str] | None = None, count: int = 3,
            span: int = 0) -> tuple[list[str], list]:
    if messages is None:
        messages = [json.dumps({"tenant": "oslo", "sensor_id": f"s{i % 3}", "n": i, "stamp": 1000 + i})
                    for i in range(11)]
        messages.append("not json")  # its own key (empty parts)
    result = subprocess.run([sys.executable, "-c", BUNDLES, str(parallelism), str(count), str(span)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, input=json.dumps(messages),
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    return messages, json.loads(result.stdout.strip().splitlines()[-1])


def test_bundles_hold_each_keys_messages_in_order_with_their_timestamps_none_lost_or_repeated():
    for parallelism in (1, 2):
        messages, found = bundles(parallelism)
        by_key = {}
        for texts, stamps in found:
            assert 1 <= len(texts) <= 3 and len(stamps) == len(texts)
            keys = {json.loads(t)["sensor_id"] if t != "not json" else None for t in texts}
            assert len(keys) == 1  # one key's messages in a bundle
            by_key.setdefault(keys.pop(), []).extend([t, stamp] for t, stamp in zip(texts, stamps))
        # s0 has messages 0, 3, 6, 9: two bundles (3, then the one left when the input ended). In arrival order
        # at parallelism 1; at 2 this test's one-instance source spreads them round robin over the two keying
        # instances, so they reach the bundler by two ways (a Kafka source keys each partition in its own order)
        order = (lambda ns: ns) if parallelism == 1 else sorted
        assert order([json.loads(t)["n"] for t, _ in by_key["s0"]]) == [0, 3, 6, 9]
        assert order([json.loads(t)["n"] for t, _ in by_key["s1"]]) == [1, 4, 7, 10]
        assert order([json.loads(t)["n"] for t, _ in by_key["s2"]]) == [2, 5, 8]
        assert by_key[None] == [["not json", 5000]]
        # each message keeps the timestamp it had
        assert all(stamp == json.loads(t)["stamp"] for key, pairs in by_key.items() if key for t, stamp in pairs)
        assert sorted(t for pairs in by_key.values() for t, _ in pairs) == sorted(messages)


def test_a_bundle_spans_no_more_event_time_than_its_bound():
    stamps = [1000, 1050, 1100, 1101, 1150, 1000, 1010]
    messages = [json.dumps({"tenant": "oslo", "sensor_id": "s0", "n": n, "stamp": stamp})
                for n, stamp in enumerate(stamps)]
    _, found = bundles(1, messages, count=10, span=100)
    # 1101 is more than 100 ms after 1000, the earliest waiting; 1000 is more than 100 ms before 1150, the latest
    assert [[json.loads(t)["n"] for t in texts] for texts, _ in found] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [stamps_ for _, stamps_ in found] == [[1000, 1050, 1100], [1101, 1150], [1000, 1010]]


GATE_PROBE = """
import json, sys
from impetus.config import load_settings
from impetus.flink import jvm_functions
from impetus.schemas import load_schema

functions = jvm_functions(load_settings())
check = functions.SchemaCheck(json.dumps(load_schema("sensors.readings")))
messages = json.loads(sys.stdin.read())
accepted = [check.accepted(m) is not None for m in messages]
times = [functions.SchemaCheck.epochMs(json.loads(m)["event_time"]) if ok else None
         for m, ok in zip(messages, accepted)]
print(json.dumps({"accepted": accepted, "times": times}))
"""


def test_the_gates_schema_check_decides_as_python_does_and_reads_times_alike():
    from impetus.detect.urban import event_ms
    from impetus.schemas import PayloadRejected, check_payload

    plain = dict(READING, event_time="2019-03-01T07:00:00+13:00")
    cases = [  # (message, valid)
        (json.dumps(plain), True),
        (json.dumps(dict(plain, event_time="1969-12-31T23:59:59.9995Z")), True),  # before 1970: floored
        (json.dumps(dict(plain, event_time="2019-03-01T07:00:00.123456789012-03:30")), True),
        (json.dumps(dict(plain, event_time="2019-03-01t07:00:00z")), True),
        (json.dumps(dict(plain, value=3)), True),
        (json.dumps(dict(plain, value=2 ** 60)), True),
        (json.dumps(ESCAPED, ensure_ascii=False), True),
        (json.dumps({k: v for k, v in plain.items() if k != "location"}), True),
        (" " + json.dumps(plain) + "\n", True),
        (json.dumps(plain)[:-1] + ', "tenant": "padova"}', True),  # a repeated key: the last one counts
        (json.dumps(plain) + " {}", False),  # something after the document
        (json.dumps(plain).replace("12.5", "NaN"), False),
        ("\ufeff" + json.dumps(plain), False),
        (json.dumps(dict(plain, value=True)), False),
        (json.dumps(dict(plain, value="12.5")), False),
        (json.dumps(dict(plain, extra=1)), False),
        (json.dumps(dict(plain, tenant="Oslo")), False),
        (json.dumps(dict(plain, tenant="oslo\n")), False),
        (json.dumps(dict(plain, tenant="")), False),
        (json.dumps(dict(plain, sensor_id="s" * 129)), False),
        (json.dumps(dict(plain, sensor_id="\U0001F600" * 128), ensure_ascii=False), True),  # 128 code points
        (json.dumps(dict(plain, location={"area": "Torget", "lat": 91.0})), False),
        (json.dumps(dict(plain, location={"area": "Torget", "floor": 2})), False),
        (json.dumps({k: v for k, v in plain.items() if k != "kind"}), False),
        (json.dumps(dict(plain, event_time="2019-03-01T07:00:00+1300")), False),
        (json.dumps(dict(plain, event_time="2019-03-01T07:00:60Z")), False),
        (json.dumps(dict(plain, event_time="2019-03-01T07:00:00+19:00")), False),
        (json.dumps(dict(plain, event_time="2019-02-30T07:00:00Z")), False),
        (json.dumps(dict(plain, event_time="0000-01-01T00:00:00Z")), False),
        (json.dumps(dict(plain, event_time="yesterday")), False),
        ("not json at all", False),
        (json.dumps([plain]), False),
    ]
    result = subprocess.run([sys.executable, "-c", GATE_PROBE], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, input=json.dumps([m for m, _ in cases]), env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    python = []
    for message, _ in cases:
        try:
            python.append(event_ms(check_payload("sensors.readings", message)["event_time"]))
        except PayloadRejected:
            python.append(None)
    assert [time is not None for time in python] == [valid for _, valid in cases]
    assert found["accepted"] == [valid for _, valid in cases]
    assert found["times"] == python
    assert python[:3] == [1551376800000, -1, 1551436200123]


POST_GATE_PROBE = """
import json, sys
from impetus.config import load_settings
from impetus.flink import jvm_functions
from impetus.schemas import load_schema, max_payload_bytes

functions = jvm_functions(load_settings())
given = json.loads(sys.stdin.read())
verdicts = {}
for topic, messages in given["messages"].items():
    gate = functions.PostGate(json.dumps(load_schema(topic)), max_payload_bytes(topic), given["spec"], "test")
    verdicts[topic] = [gate.stops(m) for m in messages]
print(json.dumps(verdicts))
"""


def test_the_post_gate_stops_exactly_the_posts_pythons_spec_calls_quiet():
    from impetus.detect.streams import PostWatch
    from impetus.detect.text import analyse_post
    from impetus.detect.text_gate import compile_spec, may_alert
    from impetus.replay.text import example_rules, generate
    from impetus.rules import RuleBook, defaults_from, rule_kinds
    from impetus.schemas import PayloadRejected, check_payload

    rules = example_rules()  # with number-plate patterns, which the gate runs widened (no plain text in them)
    book = RuleBook({r["rule_id"]: r for r in rules}, defaults_from(rule_kinds(), ["threat_language"]))
    watch = PostWatch()
    spec = compile_spec(watch, book, ("oslo", "padova"))
    social, cti, _ = generate(seed=3, hours=0.25)
    base = social[0]
    tricky = [dict(base, text=text) for text in (
        "A well established market", "A well-stabbed tyre", "over_kill", "\u65e5\u672ckill", "\u017ftab",
        "The \u212aelvin scale", "KILL", "Bomb", "massacre\U0001F600", "\U0001F600kill", "\ud800kill",
        "car AB 12345 seen", "car ab 12345 seen", "car AB \u0661\u0662\u0663\u0664\u0665 seen")]
    messages = {"social.posts": [json.dumps(p) for p in social + tricky] + [
        json.dumps(dict(base, tenant="bergen")),        # a tenant the spec does not know
        json.dumps(dict(base, extra=1)),                # invalid
        json.dumps(dict(base, text="x" * 20001)),       # too long
        "not json",
        json.dumps(dict(base, text="Nice day"), ensure_ascii=False)[:-1] + ', "text": "kill"}',  # the last key counts
    ], "cti.posts": [json.dumps(p) for p in cti]}
    result = subprocess.run([sys.executable, "-c", POST_GATE_PROBE], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, input=json.dumps({"spec": spec, "messages": messages}),
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    loaded = json.loads(spec)
    for topic, texts in messages.items():
        python = []
        for message in texts:
            try:
                post = check_payload(topic, message)
            except PayloadRejected:
                python.append(False)  # Python dead-letters it: the gate passes it on
                continue
            quiet = not may_alert(loaded, post, topic)
            if quiet:  # what the gate stops, the watch would have let pass without an alert
                assert analyse_post(post, topic, watch.rules(post["tenant"], book)) == []
            python.append(quiet)
        assert found[topic] == python, topic
        assert 0 < sum(python) < len(python)
    # a widened pattern java.util.regex recurses on (a repeated alternation) over a long post: passed on, not a crash
    deep = RuleBook({"deep": dict(rules[0], rule_id="deep", tenant="*", kind="investigation",
                                  params={"match": "regex", "terms": r"(?:\d{2}|[A-Z]{2})+[!?]"})}, {})
    long_post = json.dumps(dict(base, text="12" * 9000))
    result = subprocess.run([sys.executable, "-c", POST_GATE_PROBE], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, input=json.dumps({"spec": compile_spec(watch, deep, ("oslo", "padova")),
                                                           "messages": {"social.posts": [long_post]}}),
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"social.posts": [False]}
    # only "established" (stab inside a word), "over_kill" and a plate in lower case stop; the rest may alert or
    # are Python's to judge
    assert found["social.posts"][-19:] == [True, False, True] + [False] * 9 + [True] + [False] * 6
