"""The delivery and latency settings of impetus.flink.stream_environment as Flink itself reports them
(a JVM of its own, started in a subprocess so that this test process keeps no Flink gateway)."""

import json
import os
import subprocess
import sys

from .conftest import ROOT

PROBE = """
import json
from impetus.config import load_settings
from impetus.flink import stream_environment

settings = load_settings()
found = {}
for delivery in ("at-least-once", "exactly-once"):
    env = stream_environment(settings, "settings_probe", restart=False, delivery=delivery)
    checkpoints = env.get_checkpoint_config()
    found[delivery] = [env.get_buffer_timeout(), str(checkpoints.get_checkpointing_mode()),
                       checkpoints.get_checkpoint_interval()]
print(json.dumps(found))
"""


def probe(**env) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_at_least_once_runs_checkpoint_without_aligning_barriers_and_buffers_flush_after_the_configured_time():
    assert probe() == {"at-least-once": [5, "CheckpointingMode.AT_LEAST_ONCE", 1000],
                       "exactly-once": [5, "CheckpointingMode.EXACTLY_ONCE", 1000]}
    assert probe(IMPETUS_FLINK_BUFFER_TIMEOUT_MS="40", IMPETUS_FLINK_CHECKPOINT_INTERVAL_MS="250") == {
        "at-least-once": [40, "CheckpointingMode.AT_LEAST_ONCE", 250],
        "exactly-once": [40, "CheckpointingMode.EXACTLY_ONCE", 250]}
