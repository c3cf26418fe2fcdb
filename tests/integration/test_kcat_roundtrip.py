"""Messages cross between kafka-python (what impetus uses) and kcat (librdkafka) both ways."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat missing: run `make setup`")


def test_kafka_python_to_kcat(scratch):
    scratch.produce([b'{"n": 1}', b'{"n": 2}', "{\"city\": \"Tromsø\"}".encode()])
    out = subprocess.run(["kcat", "-b", scratch.settings.kafka_bootstrap, "-C", "-t", scratch.source, "-e", "-q",
                          "-f", "%s\\n"], capture_output=True, timeout=30, check=True).stdout
    assert out.decode().splitlines() == ['{"n": 1}', '{"n": 2}', '{"city": "Tromsø"}']


def test_kcat_to_kafka_python(scratch):
    lines = b'{"from": "kcat", "n": 1}\n{"from": "kcat", "n": 2}\n'
    subprocess.run(["kcat", "-b", scratch.settings.kafka_bootstrap, "-P", "-t", scratch.source],
                   input=lines, timeout=30, check=True)
    assert scratch.read(scratch.source) == [{"from": "kcat", "n": 1}, {"from": "kcat", "n": 2}]
