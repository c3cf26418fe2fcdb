"""Processing policies declared once (schemas/policies.yaml): topics and tables take their
retention from the policy they name, may keep less, never more."""

import shutil

import pytest
import yaml

from impetus.config import ConfigError, load_settings
from impetus.governance import inventory
from impetus.policies import load_policies
from impetus.schemas import SchemaError, load_schema, table_names
from impetus.topics import load_topics

SCHEMAS = load_settings().schemas_dir


def test_every_topic_takes_its_retention_from_its_policy():
    retention = {t.name: (t.policy, t.retention) for t in load_topics(SCHEMAS)[1]}
    assert retention["sensors.readings"] == ("urban_sensing", "7d")
    assert retention["sensors.readings.dlq"] == ("urban_sensing", "14d")  # the policy's dead_letters
    assert retention["sensors.history"] == ("urban_sensing", "2d")  # shorter, declared on the topic
    assert retention["video.frames"] == retention["video.frames.dlq"] == ("video_analytics", "1h")
    assert retention["social.posts.dlq"] == ("public_posts", "3d")
    assert retention["alerts.oslo"] == ("alerting", "30d")
    assert retention["alerts.feedback"] == ("operator_feedback", "90d")
    assert retention["rules"] == ("platform_operations", "forever")


def test_every_table_takes_its_retention_and_lawful_basis_from_its_policy():
    policies = load_policies(SCHEMAS)
    for name in table_names(SCHEMAS):
        table = load_schema(name, SCHEMAS)
        policy = policies[table["x-policy"]]
        assert table["x-retention"] == policy.lake, name
        assert table["x-lawful-basis"] == policy.lawful_basis, name
    assert load_schema("silver.network_flows", SCHEMAS)["x-retention"] == "90d"
    assert load_schema("audit.gate_runs", SCHEMAS)["x-retention"] == "1825d"


@pytest.fixture
def schemas(tmp_path):
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy)
    return copy


def _edit_topics(schemas, topic: str, **options):
    spec = yaml.safe_load((schemas / "topics.yaml").read_text())
    spec["topics"][topic] = {**spec["topics"][topic], **options}
    (schemas / "topics.yaml").write_text(yaml.safe_dump(spec))


def test_a_topic_may_not_keep_data_longer_than_its_policy(schemas):
    _edit_topics(schemas, "social.posts", retention="30d")
    with pytest.raises(ConfigError, match="topic social.posts keeps data for 30d, longer than the 3d its policy "
                                          "allows \\(policy public_posts, kafka\\)"):
        load_topics(schemas)


def test_a_topic_must_name_a_declared_policy(schemas):
    _edit_topics(schemas, "network.flows", policy="marketing")
    with pytest.raises(ConfigError, match="topic network.flows .* names the policy 'marketing', which "
                                          "schemas/policies.yaml does not declare"):
        load_topics(schemas)


def _edit_table(schemas, name: str, **fields):
    import json

    path = schemas / "tables" / f"{name}.json"
    table = json.loads(path.read_text())
    table.update(fields)
    table = {k: v for k, v in table.items() if v is not None}
    path.write_text(json.dumps(table))


def test_a_table_may_keep_less_but_not_more_than_its_policy(schemas):
    _edit_table(schemas, "silver.posts", **{"x-retention": "7d"})
    assert load_schema("silver.posts", schemas)["x-retention"] == "7d"
    _edit_table(schemas, "silver.network_flows", **{"x-retention": "forever"})
    with pytest.raises(SchemaError, match="table silver.network_flows keeps data for forever, longer than the 90d"):
        load_schema("silver.network_flows", schemas)


def test_a_table_without_a_policy_is_refused(schemas):
    _edit_table(schemas, "gold.trends", **{"x-policy": None})
    with pytest.raises(SchemaError, match="table gold.trends names no processing policy; add one of urban_sensing"):
        load_schema("gold.trends", schemas)


def test_the_inventory_lists_each_processing_activity_with_its_topics_and_tables():
    record = inventory(load_settings())
    activities = {a["policy"]: a for a in record["policies"]}
    assert activities["network_monitoring"]["topics"] == ["network.flows", "network.flows.dlq"]
    assert activities["network_monitoring"]["tables"] == [
        "bronze.network_flows", "silver.network_flows", "gold.flow_features"]
    assert activities["video_analytics"]["tables"] == [] and activities["video_analytics"]["lake"] == "none"
    covered = {t for a in record["policies"] for t in a["topics"] + a["tables"]}
    assert covered == {t["topic"] for t in record["topics"]} | {t["table"] for t in record["tables"]}
