import pytest

from impetus.rules import RuleBook, RuleError, check_rule, deletion_marker, make_rule, parse_param

DEFAULTS = {"brute_force": {"threshold": 5, "window_seconds": 60}}


def rule(rule_id, tenant, kind="brute_force", enabled=True, **params):
    return {"rule_id": rule_id, "tenant": tenant, "kind": kind, "enabled": enabled, "params": params,
            "updated_at": "2026-05-01T10:00:00.000Z"}


def test_single_kind_prefers_the_tenants_rule_then_star_then_the_built_in_default():
    book = RuleBook({"all": rule("all", "*", threshold=8)}, DEFAULTS)
    assert book.single("oslo", "brute_force")["rule_id"] == "all"
    book.apply(rule("oslo-bf", "oslo", threshold=3))
    assert book.single("oslo", "brute_force")["params"] == {"threshold": 3}
    assert book.single("padova", "brute_force")["rule_id"] == "all"
    book.apply(deletion_marker("all", "*", "brute_force"))
    assert book.single("padova", "brute_force") == {
        "rule_id": "default-brute_force", "tenant": "*", "kind": "brute_force", "enabled": True,
        "params": {"threshold": 5, "window_seconds": 60}, "updated_at": "1970-01-01T00:00:00.000Z"}


def test_pausing_the_default_rule_switches_the_kind_off_where_no_other_rule_applies():
    book = RuleBook({"default-brute_force": rule("default-brute_force", "*", enabled=False)}, DEFAULTS)
    assert book.single("padova", "brute_force") is None
    book.apply(rule("oslo-bf", "oslo", threshold=3))
    assert book.single("oslo", "brute_force")["rule_id"] == "oslo-bf"


def test_multiple_kinds_return_every_enabled_rule_for_the_tenant_and_star():
    book = RuleBook({r["rule_id"]: r for r in [
        rule("b", "oslo", "investigation"), rule("a", "*", "investigation"),
        rule("c", "oslo", "investigation", enabled=False), rule("d", "padova", "investigation")]})
    assert [r["rule_id"] for r in book.matching("oslo", "investigation")] == ["b", "a"]


def test_rules_are_checked_against_the_schema_and_the_detectors_parameters():
    check_rule(make_rule("ok", "oslo", "brute_force", {"threshold": 3}))
    with pytest.raises(RuleError, match="unknown rule kind 'telepathy'"):
        check_rule(make_rule("x", "oslo", "telepathy", {}))
    with pytest.raises(RuleError, match=r"unknown parameter\(s\) colour for kind 'brute_force'"):
        check_rule(make_rule("x", "oslo", "brute_force", {"colour": "red"}))
    with pytest.raises(RuleError, match="rule 'x'"):
        check_rule(make_rule("x", "oslo", "investigation", {"match": "regex", "terms": "(unclosed"}))
    with pytest.raises(RuleError, match="needs kind"):
        check_rule(make_rule("x", "oslo", "sensor_threshold", {"threshold": 10}))
    with pytest.raises(RuleError, match="does not match schema rules"):
        check_rule({"rule_id": "x"})


def test_command_line_parameters_are_typed():
    assert parse_param("threshold=3") == ("threshold", 3)
    assert parse_param("k=6.5") == ("k", 6.5)
    assert parse_param("enabled=true") == ("enabled", True)
    assert parse_param("terms=derby tonight") == ("terms", "derby tonight")
    assert parse_param("value=[1,2]") == ("value", "[1,2]")
    with pytest.raises(RuleError, match="expected name=value"):
        parse_param("threshold")
