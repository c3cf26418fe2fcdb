"""What a quarantined row may keep (impetus.promotion.quarantine_row): a batch is held back
because personal data may have leaked, so the copy kept for diagnosis is treated again."""

import base64
import json

from impetus.privacy import PSEUDONYM, pseudonym
from impetus.promotion import ROW_LIMIT, GatesFailed, quarantine_row
from impetus.gates import Failure, GateResult

KEY = bytes(range(32))


def test_a_raw_value_in_a_pseudonymised_column_is_pseudonymised_and_a_pseudonym_kept():
    row = {"tenant": "oslo", "src_ip": "203.0.113.9", "dst_ip": pseudonym("10.0.0.1", KEY), "bytes_out": -5}
    kept = json.loads(quarantine_row(json.dumps(row), "silver.network_flows", KEY))
    assert kept == {"tenant": "oslo", "src_ip": pseudonym("203.0.113.9", KEY), "dst_ip": pseudonym("10.0.0.1", KEY),
                    "bytes_out": -5}


def test_redacted_text_maps_and_stray_identifiers_are_treated_and_image_bytes_removed():
    image = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(600)).decode()
    row = {"alert_id": "a-1", "message": "login by kari.nordmann@example.no from 198.51.100.23",
           "evidence": {"src_ip": "198.51.100.23", "frame": image}, "title": "mail ola@example.com"}
    text = quarantine_row(json.dumps(row), "silver.alerts", KEY)
    kept = json.loads(text)
    for raw in ("kari.nordmann@example.no", "198.51.100.23", "ola@example.com", image[:40]):
        assert raw not in text
    assert kept["evidence"]["src_ip"] == pseudonym("198.51.100.23", KEY)
    assert kept["evidence"]["frame"] == f"<{len(image)} base64 characters removed>"
    # title is not a personal column, but a raw address in it is still not kept
    assert PSEUDONYM.search(kept["title"])


def test_a_long_row_is_cut():
    row = {"alert_id": "a-1", "message": "word " * 10_000}
    assert len(quarantine_row(json.dumps(row), "silver.alerts", KEY)) == ROW_LIMIT


def test_the_failure_of_a_build_names_each_held_back_batch_and_what_to_do():
    result = GateResult(success=False, table="silver.network_flows", batch_name="silver.network_flows@x-b1",
                        evaluated=40, failed=1, docs_url="file:///docs/page.html",
                        failures=[Failure("raw_ipv4", "src_ip", "expect_column_values_to_not_match_regex", 1, [],
                                          "1 value of pseudonymised column src_ip holding a raw IPv4 address")])
    message = str(GatesFailed([{"result": result, "quarantined": 1, "alert": "high data_quality alert a sent"}]))
    assert "1 of 40 expectations failed; the batch is not promoted" in message
    assert "[raw_ipv4] 1 value of pseudonymised column src_ip holding a raw IPv4 address" in message
    assert "Data Docs: file:///docs/page.html" in message
    assert "quarantined: 1 row(s) in quarantine.gates (batch = 'silver.network_flows@x-b1')" in message
    assert "impetus lake silver --reprocess TABLE" in message
