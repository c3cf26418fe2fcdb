"""Stack up/status/down on a second, private broker: clear errors, and down stops only its own."""

import socket

import pytest

from impetus import stack
from impetus.config import ConfigError, load_settings
from impetus.topics import admin_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_settings(tmp_path, broker):
    env = {"IMPETUS_VAR_DIR": str(tmp_path / "var"), "IMPETUS_JARS_DIR": str(broker.jars_dir),
           "IMPETUS_KAFKA_PORT": str(free_port()), "IMPETUS_KAFKA_CONTROLLER_PORT": str(free_port()),
           "IMPETUS_KAFKA_HEAP": "256m"}
    return load_settings(env=env)


def test_up_status_down_of_a_private_broker(private_settings, broker):
    messages = []
    state = stack.up(private_settings, log=messages.append)
    try:
        assert state["bootstrap"] == private_settings.kafka_bootstrap
        report = stack.status(private_settings)
        assert report["kafka"]["running"] and report["kafka"]["reachable"]
        assert all(t["exists"] for t in report["topics"] if t["declared"])
        # a second `up` finds it running and changes nothing
        again = stack.up(private_settings, log=messages.append)
        assert again["pid"] == state["pid"] and again["changes"] == []
    finally:
        assert stack.down(private_settings, log=messages.append) is True
    assert stack.status(private_settings)["kafka"]["running"] is False
    # the shared test broker was not touched
    admin = admin_client(broker)
    assert "sensors.readings" in admin.list_topics()
    admin.close()


def test_taken_port_is_reported_with_what_to_do(private_settings):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", private_settings.kafka_port))
        squatter.listen()
        with pytest.raises(stack.StackError) as err:
            stack.up(private_settings, log=lambda _: None)
    message = str(err.value)
    assert f"port {private_settings.kafka_port} on 127.0.0.1 is already in use" in message
    assert "IMPETUS_KAFKA_PORT" in message


def test_down_without_a_broker_of_ours_stops_nothing(private_settings):
    messages = []
    assert stack.down(private_settings, log=messages.append) is False
    assert messages == ["no Kafka broker started by impetus is running"]


def test_missing_jars_are_reported(tmp_path):
    settings = load_settings(env={"IMPETUS_VAR_DIR": str(tmp_path), "IMPETUS_KAFKA_PORT": str(free_port())})
    with pytest.raises(ConfigError, match=r"no kafka jars in .* Run `make setup`"):
        stack.up(settings, log=lambda _: None)


def test_broker_that_dies_at_start_up_points_to_its_log(private_settings):
    # an impossible heap makes the JVM exit at once
    settings = load_settings(env={"IMPETUS_VAR_DIR": str(private_settings.var_dir),
                                  "IMPETUS_JARS_DIR": str(private_settings.jars_dir),
                                  "IMPETUS_KAFKA_PORT": str(private_settings.kafka_port),
                                  "IMPETUS_KAFKA_CONTROLLER_PORT": str(private_settings.kafka_controller_port),
                                  "IMPETUS_KAFKA_HEAP": "1k"})
    with pytest.raises(stack.StackError) as err:
        stack.up(settings, log=lambda _: None)
    assert "exited during start-up" in str(err.value)
    assert str(settings.var_dir / "kafka" / "logs" / "broker.out") in str(err.value)
