"""The same job on a Flink cluster, by configuration alone: a standalone session cluster (a JobManager and a
TaskManager process, from the Flink distribution PyFlink ships) and the ``cluster`` profile."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import pyflink

from .conftest import run_script
from .test_urban_anomalies_job import reading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory):
    """host:port of the REST endpoint of a running standalone cluster; stopped afterwards."""
    dist = Path(pyflink.__file__).parent
    home = tmp_path_factory.mktemp("flink-home")
    shutil.copytree(dist / "bin", home / "bin")      # copies: the scripts find their home from where they are
    (home / "lib").mkdir()
    # a cluster that runs Python jobs has flink-python on its class path (the distribution keeps it in opt/)
    for jar in [*(dist / "lib").glob("*.jar"), *(dist / "opt").glob("flink-python-*.jar")]:
        (home / "lib" / jar.name).symlink_to(jar)
    (home / "conf").mkdir()
    (home / "log").mkdir()
    for name in ("log4j.properties", "log4j-console.properties"):
        shutil.copy(dist / "conf" / name, home / "conf" / name)
    rest = free_port()
    (home / "conf" / "config.yaml").write_text(f"""\
jobmanager: {{rpc: {{address: localhost, port: {free_port()}}}, bind-host: localhost,
             memory: {{process: {{size: 1024m}}}}}}
taskmanager: {{host: localhost, bind-host: localhost, numberOfTaskSlots: 2, memory: {{process: {{size: 1600m}}}}}}
rest: {{address: localhost, bind-address: localhost, port: {rest}}}
""")
    env = {**os.environ, "FLINK_HOME": str(home), "FLINK_CONF_DIR": str(home / "conf"),
           "FLINK_LOG_DIR": str(home / "log")}
    for script in ("jobmanager.sh", "taskmanager.sh"):
        subprocess.run(["bash", str(home / "bin" / script), "start"], env=env, check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://localhost:{rest}/overview", timeout=2) as answer:
                    if json.load(answer)["taskmanagers"] >= 1:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the cluster did not come up; logs in {home / 'log'}"
            time.sleep(1)
        yield f"localhost:{rest}"
    finally:
        for script in ("taskmanager.sh", "jobmanager.sh"):
            subprocess.run(["bash", str(home / "bin" / script), "stop"], env=env, capture_output=True)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_urban_job_runs_on_a_cluster_by_configuration_alone(flink_cluster, scratch, tmp_path, settings, mode):
    t = scratch.tenant
    sent = [reading(t, "s1", 100.0, 0), reading(t, "s1", 3500.0, 1), (b"not json", reading(t, "s1", 1.0, 1)[1])]
    scratch.produce([m for m, _ in sent], timestamps=[ts for _, ts in sent])
    cluster = {"IMPETUS_PROFILE": "cluster", "IMPETUS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
               "IMPETUS_FLINK_JOBMANAGER": flink_cluster, "IMPETUS_FLINK_PYTHON_MODE": mode,
               "IMPETUS_SPARK_MASTER": "local[2]", "IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri(),
               "IMPETUS_CHECKPOINT_URI": (tmp_path / "checkpoints").as_uri(),
               "IMPETUS_MODELS_DIR": str(tmp_path / "models")}
    run_script("jobs/streaming/urban_anomalies.py", "--bounded", "--topic", f"sensors.readings={scratch.source}",
               "--tenants", t, "--group-id", f"test-{t}", "--rules-topic", scratch.rules, env=cluster)

    assert [(a["category"], a["entity"]["id"]) for a in scratch.read(scratch.alerts)] == [("threshold", "s1")]
    assert [d["reason"] for d in scratch.read(scratch.dlq)] == ["not JSON: Expecting value at line 1 column 1"]
    with urllib.request.urlopen(f"http://{flink_cluster}/jobs/overview", timeout=5) as answer:
        finished = [j for j in json.load(answer)["jobs"] if j["name"] == "urban_anomalies"]
    assert finished and all(j["state"] == "FINISHED" for j in finished)   # it ran there, not in a mini-cluster
