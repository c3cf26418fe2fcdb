import pytest

from impetus.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("stack", "topics", "replay", "demo", "config", "schemas"):
        assert command in out


def test_config_prints_the_effective_settings(capsys, monkeypatch):
    monkeypatch.setenv("IMPETUS_KAFKA_PORT", "19999")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "kafka_bootstrap                127.0.0.1:19999" in out


def test_configuration_errors_exit_2_with_the_reason(capsys, monkeypatch):
    monkeypatch.setenv("IMPETUS_PROFILE", "cluster")
    monkeypatch.delenv("IMPETUS_KAFKA_BOOTSTRAP", raising=False)
    assert main(["stack", "status"]) == 2
    assert "IMPETUS_KAFKA_BOOTSTRAP" in capsys.readouterr().err


def test_schemas_check_passes(capsys):
    assert main(["schemas", "check"]) == 0
    assert "ok   sensors.readings" in capsys.readouterr().out


def test_airflow_status_reports_a_stopped_airflow_as_json_and_exits_1(capsys, monkeypatch, tmp_path):
    import json

    monkeypatch.setenv("IMPETUS_AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("IMPETUS_AIRFLOW_PORT", "1")  # nothing serves there
    assert main(["airflow", "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["running"], report["healthy"], report["url"]) == (False, False, "http://127.0.0.1:1")
    assert main(["airflow", "down", "--force"]) == 2
    assert "impetus airflow down: unexpected --force" in capsys.readouterr().err
