import pytest

from impetus.detect.syslog import SyslogParseError, parse_document, parse_line, security_event

RECEIVED = "2026-05-01T10:00:01.250Z"


def test_rfc3164_line_with_pri_and_space_padded_day():
    line = "<38>May  1 10:00:00 gw sshd[412]: Failed password for invalid user admin from 203.0.113.7 port 52211 ssh2"
    assert parse_line(line, RECEIVED) == {
        "format": "rfc3164", "facility": 4, "severity": 6, "event_time": "2026-05-01T10:00:00.000Z",
        "host": "gw", "app": "sshd", "pid": "412", "msgid": None, "structured_data": None,
        "message": "Failed password for invalid user admin from 203.0.113.7 port 52211 ssh2",
    }


def test_rfc3164_line_without_pri_and_with_zero_padded_or_unpadded_day():
    for stamp in ("May 01 09:59:58", "May 1 09:59:58"):
        record = parse_line(f"{stamp} ops-mon01 CRON[36153]: (root) CMD (/usr/local/bin/healthcheck --quiet)\n",
                            RECEIVED)
        assert record["facility"] is None and record["severity"] is None
        assert record["event_time"] == "2026-05-01T09:59:58.000Z"
        assert (record["host"], record["app"], record["pid"]) == ("ops-mon01", "CRON", "36153")
        assert record["message"] == "(root) CMD (/usr/local/bin/healthcheck --quiet)"


def test_rfc3164_tag_without_pid_and_brackets_inside_the_message():
    record = parse_line("<4>May  1 10:00:00 gw-oslo-01 kernel: [596081.287388] [UFW BLOCK] IN=eth0 OUT=", RECEIVED)
    assert (record["facility"], record["severity"], record["app"], record["pid"]) == (0, 4, "kernel", None)
    assert record["message"] == "[596081.287388] [UFW BLOCK] IN=eth0 OUT="


def test_rfc3164_line_from_a_local_socket_has_no_host():
    record = parse_line("<38>May  1 10:00:00 sshd[412]: Server listening on :: port 22.", RECEIVED)
    assert (record["host"], record["app"], record["message"]) == (None, "sshd", "Server listening on :: port 22.")


def test_rfc3164_year_comes_from_received_time_across_new_year():
    # written just before midnight, received just after: it belongs to the old year
    late = parse_line("<38>Dec 31 23:59:59 gw sshd[1]: x", "2027-01-01T00:00:02Z")
    assert late["event_time"] == "2026-12-31T23:59:59.000Z"
    # a sender whose clock runs a little ahead of the collector's
    early = parse_line("<38>Jan  1 00:00:01 gw sshd[1]: x", "2026-12-31T23:59:59Z")
    assert early["event_time"] == "2027-01-01T00:00:01.000Z"


def test_rfc3164_time_is_utc_unless_a_zone_is_given():
    line = "<38>May  1 10:00:00 gw sshd[1]: x"
    assert parse_line(line, "2026-05-01T08:00:02Z", tz="Europe/Oslo")["event_time"] == "2026-05-01T08:00:00.000Z"
    assert parse_line(line, RECEIVED)["event_time"] == "2026-05-01T10:00:00.000Z"
    # January in Oslo is UTC+1
    assert parse_line("<38>Jan 15 10:00:00 gw sshd[1]: x", "2026-01-15T09:00:02Z",
                      tz="Europe/Oslo")["event_time"] == "2026-01-15T09:00:00.000Z"


def test_february_29th_takes_the_leap_year():
    record = parse_line("<38>Feb 29 12:00:00 gw sshd[1]: x", "2028-03-01T00:00:00Z")
    assert record["event_time"] == "2028-02-29T12:00:00.000Z"


def test_bsd_layout_with_rfc3339_timestamp_as_rsyslog_forwards_it():
    record = parse_line("<85>2026-05-01T12:34:09.864862+02:00 pd-bastion sshd[35278]: pam_unix(sshd:auth): "
                        "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.15", RECEIVED)
    assert record["format"] == "rfc3164"
    assert record["event_time"] == "2026-05-01T10:34:09.864Z"
    assert (record["facility"], record["severity"], record["host"], record["pid"]) == (10, 5, "pd-bastion", "35278")


def test_rfc5424_line_with_escaped_structured_data_and_bom():
    line = ('<165>1 2026-05-01T12:00:00.123+02:00 app01.oslo.example edge-api 2211 ACCESS '
            '[req@32473 id="a1" query="q=\\"stazione\\" \\]" path="C:\\\\tmp\\x"][timeQuality tzKnown="1"] '
            '\ufeffGET /healthz 200 3ms')
    assert parse_line(line) == {
        "format": "rfc5424", "facility": 20, "severity": 5, "event_time": "2026-05-01T10:00:00.123Z",
        "host": "app01.oslo.example", "app": "edge-api", "pid": "2211", "msgid": "ACCESS",
        # \" \] \\ are escapes; a backslash before anything else stays
        "structured_data": {"req@32473": {"id": "a1", "query": 'q="stazione" ]', "path": "C:\\tmp\\x"},
                            "timeQuality": {"tzKnown": "1"}},
        "message": "GET /healthz 200 3ms",
    }


def test_rfc5424_nil_values_and_nil_timestamp():
    record = parse_line("<13>1 - - - - - -", RECEIVED)
    assert record == {"format": "rfc5424", "facility": 1, "severity": 5, "event_time": "2026-05-01T10:00:01.250Z",
                      "host": None, "app": None, "pid": None, "msgid": None, "structured_data": None, "message": ""}


def test_parse_document_reads_line_with_its_received_time():
    document = {"tenant": "oslo", "collector": "syslog-1", "received_time": "2027-01-01T00:00:01Z",
                "line": "<38>Dec 31 23:59:58 gw sshd[412]: Connection closed by 203.0.113.7 port 52211 [preauth]"}
    assert parse_document(document)["event_time"] == "2026-12-31T23:59:58.000Z"


@pytest.mark.parametrize("line, reason", [
    ("", "empty line"),
    ("   \r\n", "empty line"),
    ("<13>", "line ends after PRI <13>: no header or message"),
    ("<999>May  1 10:00:00 gw sshd[1]: x", "PRI <999> is out of range (0..191)"),
    ("<abc>May  1 10:00:00 gw sshd[1]: x",
     "line starts with '<' but has no valid PRI ('<0>'..'<191>'): '<abc>May  1 10:00:00 gw sshd[1]: x'"),
    ("<38>May  1 10:0", "RFC 3164 timestamp is incomplete or malformed (expected 'Mmm dd hh:mm:ss'): 'May  1 10:0'"),
    ("<38>Mai  1 10:00:00 gw sshd[1]: x", "RFC 3164 timestamp has unknown month 'Mai' (expected Jan..Dec)"),
    ("<38>May 32 10:00:00 gw sshd[1]: x", "RFC 3164 date May 32 does not exist around 2026 (received_time's year)"),
    ("<38>May  1 25:00:00 gw sshd[1]: x", "RFC 3164 timestamp has an impossible time 25:00:00"),
    ("<38>May  1 10:00:00", "RFC 3164 line ends after the timestamp: no host, tag or message"),
    ("<38>May  1 10:00:00 gw", "RFC 3164 line ends after the host 'gw': no tag or message"),
    ("GET / HTTP/1.1", "no syslog timestamp ('Mmm dd hh:mm:ss' or RFC 3339) at the start of 'GET / HTTP/1.1'"),
    ("<34>2 2026-05-01T10:00:00Z h a - - -", "unsupported RFC 5424 version '2' (only 1 exists)"),
    ("<34>1", "RFC 5424 header is truncated: TIMESTAMP is missing after '1'"),
    ("<34>1 2026-05-01T10:00:00Z h a",
     "RFC 5424 header is truncated: PROCID is missing after '1 2026-05-01T10:00:00Z h a'"),
    ("<34>1 2026-05-01T10:00:00Z  a - - -", "RFC 5424 header field HOSTNAME is empty (nil is '-')"),
    ("<34>1 2026-05-01 10:00:00 h a - - - x",
     "RFC 5424 timestamp '2026-05-01' is not RFC 3339 (YYYY-MM-DDThh:mm:ss[.frac] and Z or ±hh:mm)"),
    ("<34>1 2026-13-01T10:00:00Z h a - - - x",
     "RFC 5424 timestamp '2026-13-01T10:00:00Z' is not a valid time: month must be in 1..12"),
    ('<34>1 2026-05-01T10:00:00Z h a - - [meta x="1"',
     "RFC 5424 structured data element [meta is not closed with ']'"),
    ('<34>1 2026-05-01T10:00:00Z h a - - [meta x="1',
     "RFC 5424 structured data parameter x of [meta has no closing quote"),
    ("<34>1 2026-05-01T10:00:00Z h a - - [meta x=1] m",
     "RFC 5424 structured data element [meta has a malformed parameter at character 6 of the structured data "
     "(expected name=\"value\")"),
    ("<34>1 2026-05-01T10:00:00Z h a - - [] m",
     "RFC 5424 structured data element at character 0 of the structured data has no SD-ID"),
    ("<34>1 2026-05-01T10:00:00Z h a - - meta m",
     "RFC 5424 structured data must be '-' or start with '[', found 'meta m'"),
    ('<34>1 2026-05-01T10:00:00Z h a - - [meta x="1"]m',
     "RFC 5424 structured data is followed by 'm' instead of a space"),
])
def test_lines_that_are_not_syslog_raise_a_precise_reason(line, reason):
    with pytest.raises(SyslogParseError) as error:
        parse_line(line, RECEIVED)
    assert str(error.value) == reason


def test_parse_errors_are_value_errors_and_rfc3164_needs_a_received_time():
    assert issubclass(SyslogParseError, ValueError)
    with pytest.raises(SyslogParseError, match="no received_time was given"):
        parse_line("<38>May  1 10:00:00 gw sshd[1]: x")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        parse_line("<38>May  1 10:00:00 gw sshd[1]: x", RECEIVED, tz="Mars/Olympus")


# --------------------------------------------------------------------------- security events

def event_of(line):
    return security_event(parse_line(line, RECEIVED))


def test_failed_password_is_an_exact_auth_failure_event():
    assert event_of("<38>May  1 10:00:00 bastion sshd[412]: Failed password for invalid user admin from "
                    "203.0.113.7 port 52211 ssh2") == {
        "kind": "auth_failure", "event_time": "2026-05-01T10:00:00.000Z", "host": "bastion",
        "src_ip": "203.0.113.7", "src_port": 52211, "user": "admin", "dst_ip": None, "dst_port": None,
        "protocol": None, "method": "password", "command": None,
    }


@pytest.mark.parametrize("message, kind, user, src_ip, src_port, method", [
    ("Failed password for root from 203.0.113.7 port 52211 ssh2", "auth_failure", "root", "203.0.113.7", 52211,
     "password"),
    ("Failed publickey for git from 2001:db8::7 port 40022 ssh2: ED25519 SHA256:abc", "auth_failure", "git",
     "2001:db8::7", 40022, "publickey"),
    ("Invalid user oracle from 192.0.2.44 port 33012", "auth_failure", "oracle", "192.0.2.44", 33012, None),
    ("Invalid user  from 192.0.2.44", "auth_failure", None, "192.0.2.44", None, None),
    ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.7  user=root",
     "auth_failure", "root", "203.0.113.7", None, "pam"),
    ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.7",
     "auth_failure", None, "203.0.113.7", None, "pam"),
    ("Connection closed by authenticating user abc 203.0.113.7 port 52211 [preauth]", "auth_failure", "abc",
     "203.0.113.7", 52211, None),
    ("Connection closed by invalid user test 203.0.113.7 port 52212 [preauth]", "auth_failure", "test",
     "203.0.113.7", 52212, None),
    ("error: maximum authentication attempts exceeded for root from 203.0.113.7 port 52213 ssh2 [preauth]",
     "auth_failure", "root", "203.0.113.7", 52213, None),
    ("maximum authentication attempts exceeded for invalid user pi from 203.0.113.7 port 52214 ssh2 [preauth]",
     "auth_failure", "pi", "203.0.113.7", 52214, None),
    ("Accepted publickey for ingrid from 10.10.5.11 port 50122 ssh2: ED25519 SHA256:Qx3", "auth_success", "ingrid",
     "10.10.5.11", 50122, "publickey"),
    ("Accepted password for backup from 203.0.113.7 port 52215 ssh2", "auth_success", "backup", "203.0.113.7",
     52215, "password"),
    ("Accepted keyboard-interactive/pam for lars from 10.10.5.12 port 50200 ssh2", "auth_success", "lars",
     "10.10.5.12", 50200, "keyboard-interactive/pam"),
])
def test_openssh_failures_and_successes(message, kind, user, src_ip, src_port, method):
    event = event_of(f"<38>May  1 10:00:00 bastion sshd[412]: {message}")
    assert (event["kind"], event["user"], event["src_ip"], event["src_port"], event["method"]) == (
        kind, user, src_ip, src_port, method)


def test_openssh_9_8_logs_from_sshd_session():
    event = event_of("<38>May  1 10:00:00 bastion sshd-session[9120]: Failed password for root from 203.0.113.7 "
                     "port 52211 ssh2")
    assert (event["kind"], event["user"]) == ("auth_failure", "root")


def test_sudo_command_and_failures():
    command = event_of("<85>May  1 10:00:00 db sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
                       "COMMAND=/bin/sh -c 'echo a ; echo b'")
    assert command == {"kind": "sudo_command", "event_time": "2026-05-01T10:00:00.000Z", "host": "db",
                       "src_ip": None, "src_port": None, "user": "alice", "dst_ip": None, "dst_port": None,
                       "protocol": None, "method": None, "command": "/bin/sh -c 'echo a ; echo b'"}
    pam = event_of("<85>May  1 10:00:00 db sudo: pam_unix(sudo:auth): authentication failure; logname=alice "
                   "uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice")
    assert (pam["kind"], pam["user"], pam["method"], pam["command"]) == ("sudo_failure", "alice", "pam", None)
    attempts = event_of("<81>May  1 10:00:00 db sudo: alice : 3 incorrect password attempts ; TTY=pts/0 ; "
                        "PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt update")
    assert (attempts["kind"], attempts["user"], attempts["method"], attempts["command"]) == (
        "sudo_failure", "alice", "3 incorrect password attempts", "/usr/bin/apt update")
    refused = event_of("<81>May  1 10:00:00 db sudo: kiosk : user NOT in sudoers ; TTY=pts/2 ; PWD=/home/kiosk ; "
                       "USER=root ; COMMAND=/bin/bash")
    assert (refused["kind"], refused["user"], refused["method"]) == ("sudo_failure", "kiosk", "user NOT in sudoers")
    # sudo 1.9 without a terminal (automation)
    deploy = event_of("<85>May  1 10:00:00 db sudo: deploy : PWD=/home/deploy ; USER=root ; "
                      "COMMAND=/usr/bin/systemctl reload edge-api")
    assert (deploy["kind"], deploy["command"]) == ("sudo_command", "/usr/bin/systemctl reload edge-api")


def test_ufw_block_and_plain_iptables_log_lines():
    ufw = event_of("<4>May  1 10:00:00 gw kernel: [596081.287388] [UFW BLOCK] IN=eth0 OUT= "
                   "MAC=00:16:3e:5a:1b:2c:00:1c:7f:3a:4b:5d:08:00 SRC=203.0.113.45 DST=198.51.100.10 LEN=44 TOS=0x00 "
                   "PREC=0x00 TTL=241 ID=54321 PROTO=TCP SPT=51234 DPT=3389 WINDOW=1024 RES=0x00 SYN URGP=0")
    assert ufw == {"kind": "firewall_block", "event_time": "2026-05-01T10:00:00.000Z", "host": "gw",
                   "src_ip": "203.0.113.45", "src_port": 51234, "user": None, "dst_ip": "198.51.100.10",
                   "dst_port": 3389, "protocol": "tcp", "method": None, "command": None}
    udp = event_of("<4>1 2026-05-01T12:00:00.000+02:00 fw kernel - - - IPTables-Dropped: IN=enp1s0 OUT= MAC=52:54 "
                   "SRC=192.0.2.9 DST=198.51.100.70 LEN=95 TOS=0x00 PREC=0x00 TTL=123 ID=1 PROTO=UDP SPT=6675 "
                   "DPT=5060 LEN=75")
    assert (udp["kind"], udp["src_ip"], udp["dst_ip"], udp["dst_port"], udp["protocol"]) == (
        "firewall_block", "192.0.2.9", "198.51.100.70", 5060, "udp")
    icmp = event_of("<4>May  1 10:00:00 gw kernel: DROP IN=eth0 OUT= SRC=192.0.2.9 DST=198.51.100.7 LEN=84 "
                    "PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1")
    assert (icmp["kind"], icmp["dst_port"], icmp["protocol"]) == ("firewall_block", None, "icmp")


@pytest.mark.parametrize("line", [
    "<86>May  1 10:00:00 db CRON[1]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "<38>May  1 10:00:00 bastion sshd[2]: Connection closed by 203.0.113.7 port 52211 [preauth]",
    "<38>May  1 10:00:00 bastion sshd[2]: Disconnected from invalid user test 203.0.113.7 port 52211 [preauth]",
    "<85>May  1 10:00:00 bastion sshd[2]: pam_unix(sshd:auth): check pass; user unknown",
    "<86>May  1 10:00:00 db sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
    "<85>May  1 10:00:00 db login[3]: pam_unix(login:auth): authentication failure; logname=x uid=0 euid=0 tty=tty1",
    "<4>May  1 10:00:00 gw kernel: [1.5] [UFW ALLOW] IN=eth0 OUT= SRC=10.10.5.11 DST=10.10.0.1 PROTO=TCP DPT=22",
    "<4>May  1 10:00:00 gw kernel: [1.5] [UFW AUDIT] IN=eth0 OUT= SRC=10.10.5.11 DST=10.10.0.1 PROTO=TCP DPT=22",
    "<30>May  1 10:00:00 db systemd[1]: Starting apt-daily.service - Daily apt download activities...",
])
def test_other_lines_are_not_security_events(line):
    assert event_of(line) is None
