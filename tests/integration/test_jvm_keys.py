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
row = by_fields.map(messages[0])
print(json.dumps({"fields": [by_fields.keyOf(m) for m in messages], "area": [by_area.keyOf(m) for m in messages],
                  "hash": [by_hash.keyOf(m) for m in messages],
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
    assert keys()["hash"] == [str(zlib.crc32(m.encode()) % 128) for m in MESSAGES]
