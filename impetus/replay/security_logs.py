"""SYNTHETIC security syslog for the cyber-detection job: seeded, realistic-looking and labelled.

Nothing here comes from real systems: hosts, accounts and traffic are invented, and
every address is from the documentation ranges (192.0.2.0/24 and 203.0.113.0/24 for
the internet, 198.51.100.0/24 for the tenants' public addresses) or private 10.x
for internal hosts. :func:`generate` returns ``security.syslog`` documents (in
received-time order) and, separately, the ground truth of the injected episodes, so
that precision and recall of :mod:`impetus.detect.cyber` can be measured. The same
seed gives the same output byte for byte. Used by the replayer, the unit tests and
evaluation notebooks.

Each tenant (``oslo``, ``padova``) has a firewall, a public SSH bastion and internal
servers, sending in a mix of formats: RFC 3164 with PRI, RFC 3164 without PRI (a
file-forwarding relay), RFC 3164 with an RFC 3339 timestamp (rsyslog's
``RSYSLOG_ForwardFormat``) and RFC 5424 with structured data and BOMs. RFC 3164
senders keep their clocks in UTC; RFC 5424 senders stamp local time with its offset.

Background, kept below the default thresholds so it raises no alert: cron jobs,
systemd units, rsyslog and chrony chatter, an API's request log; admins logging in
with keys from their workstations, now and then mistyping a password (one failure)
or a sudo password; an automation account deploying every 15 minutes; internet
noise: single SSH probes at the bastion and firewall blocks of 1-3 packets per
visit. Episodes injected on top (``episodes`` counts, by generator kind):

* ``brute_force``: an internet source guesses SSH passwords at a bastion (OpenSSH +
  PAM lines, connections of up to 6 attempts); truth kind ``brute_force``, entity ip.
* ``brute_force_success``: the same, then the attacker logs in with a password;
  two truth records: ``brute_force`` (ip) and ``brute_force_success`` (account
  ``user@host``, start = the successful login).
* ``sudo_brute_force``: a low-privilege account repeatedly fails sudo; truth kind
  ``brute_force``, entity account ``user@host``, variant ``sudo``.
* ``port_scan_vertical`` / ``port_scan_horizontal``: firewall-logged SYN scans of
  many ports on one public address / one port on many addresses; truth kind
  ``port_scan``, entity ip.
* ``malformed``: a line that is not syslog (empty after PRI, truncated, garbage,
  an HTTP or TLS client on the syslog port...); truth kind ``malformed``, entity
  type ``line``, entity the line itself. It must be dead-lettered.

Truth record: ``{episode_id, tenant, kind, variant, entity_type, entity, start, end,
lines}``; ``start``/``end`` are the event times (as the parser reads them) of the
episode's first and last line, ``lines`` how many lines it added.

Firewalls log every blocked packet here; note that UFW's default logging is rate
limited (3/min, burst 10), which hides most of a real scan.
"""

from __future__ import annotations

import ipaddress
import random
import string
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from impetus.alerts import parse_time, utc_iso

TENANTS = {
    "oslo": {
        "collector": "syslog-oslo-1",
        "zone": "Europe/Oslo",
        "public_net": "198.51.100.0/26",
        "firewall": {"name": "gw-oslo-01", "format": "rfc3164", "style": "ufw", "iface": "eth0",
                     "mac": "00:16:3e:5a:1b:2c:00:1c:7f:3a:4b:5d:08:00"},
        "bastion": {"name": "bastion-oslo", "format": "rfc3164"},
        "servers": [{"name": "ops-oslo-app01", "format": "rfc5424"},
                    {"name": "ops-oslo-db01", "format": "rfc5424"},
                    {"name": "ops-oslo-mon01", "format": "rfc3164-nopri"}],
        "admins": [("ingrid", "10.10.5.11", 1001), ("lars", "10.10.5.12", 1002), ("sofie", "10.10.5.17", 1003)],
        "automation": ("deploy", "10.10.2.5", 1100),
        # low-privilege shell accounts (kiosk displays, a temp worker) and where they log in from
        "users": [("kiosk", "ops-oslo-app01", "10.10.7.21", 1201), ("vikar", "ops-oslo-db01", "10.10.7.40", 1202)],
    },
    "padova": {
        "collector": "syslog-padova-1",
        "zone": "Europe/Rome",
        "public_net": "198.51.100.64/26",
        "firewall": {"name": "fw-padova", "format": "rfc5424", "style": "iptables", "iface": "enp1s0",
                     "mac": "52:54:00:8e:21:07:00:0d:b9:4f:22:10:08:00"},
        "bastion": {"name": "pd-bastion", "format": "rfc3164-rfc3339"},
        "servers": [{"name": "pd-web01", "format": "rfc5424"},
                    {"name": "pd-db01", "format": "rfc3164"}],
        "admins": [("giulia", "10.20.5.21", 1001), ("marco", "10.20.5.22", 1002), ("elena", "10.20.5.30", 1003)],
        "automation": ("deploy", "10.20.2.5", 1100),
        "users": [("tirocinante", "pd-web01", "10.20.7.14", 1201), ("stampa", "pd-db01", "10.20.7.52", 1202)],
    },
}
DEFAULT_EPISODES = {"brute_force": 6, "brute_force_success": 4, "sudo_brute_force": 2,
                    "port_scan_vertical": 6, "port_scan_horizontal": 4, "malformed": 10}
TRUTH_KINDS = ("brute_force", "brute_force_success", "port_scan", "malformed")

# facility * 8 + severity
PRI = {"auth.info": 38, "authpriv.notice": 85, "authpriv.info": 86, "authpriv.alert": 81, "cron.info": 78,
       "daemon.info": 30, "daemon.notice": 29, "kern.warning": 4, "syslog.info": 46, "local0.info": 134}
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
BOM = "\ufeff"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

GUESSED_USERS = ("root", "admin", "test", "user", "ubuntu", "oracle", "postgres", "git", "pi", "ftpuser", "guest",
                 "support", "backup", "deploy", "jenkins", "ansible", "mysql", "hadoop", "nagios", "ubnt")
# accounts that exist on the bastions (PAM knows them); the rest are "invalid user"s
BASTION_ACCOUNTS = ("root", "backup", "support", "deploy")
WEAK_ACCOUNTS = ("backup", "support")
NOISE_TCP_PORTS = (23, 22, 445, 3389, 80, 8080, 443, 5060, 1433, 3306, 5900, 6379, 9200, 2323, 8443, 81, 37215,
                   52869, 8088, 7547, 5555, 25, 110, 139, 1723, 11211, 27017, 9000)
NOISE_UDP_PORTS = (123, 161, 1900, 5353, 53, 137, 500, 5060, 11211)
SWEEP_PORTS = (22, 23, 445, 3389, 5900, 6379, 2375, 9200)
SCAN_PORTS = tuple(sorted({*NOISE_TCP_PORTS, 21, 53, 111, 135, 143, 389, 465, 587, 636, 993, 995, 1025, 1521, 2049,
                           2181, 3000, 4443, 5000, 5432, 5601, 5985, 6443, 7001, 8000, 8081, 8161, 8888, 9090, 9100,
                           9443, 10000, 10250, 15672, 25565, 50000}))
ADMIN_COMMANDS = ("/usr/bin/systemctl restart nginx", "/usr/bin/journalctl -u edge-api --since -1h",
                  "/usr/bin/apt update", "/usr/bin/apt list --upgradable", "/usr/bin/tail -n 200 /var/log/syslog",
                  "/usr/bin/systemctl status postgresql", "/usr/sbin/ufw status numbered", "/usr/bin/df -h",
                  "/usr/bin/docker ps", "/usr/bin/vi /etc/nginx/sites-available/edge",
                  "/usr/sbin/logrotate -f /etc/logrotate.d/edge-api", "/usr/bin/du -sh /var/lib/postgresql")
SYSTEMD_UNITS = (("apt-daily.service", "Daily apt download activities"),
                 ("systemd-tmpfiles-clean.service", "Cleanup of Temporary Directories"),
                 ("fwupd-refresh.service", "Refresh fwupd metadata and update motd"),
                 ("man-db.service", "Daily man-db regeneration"),
                 ("sysstat-collect.service", "system activity accounting tool"),
                 ("logrotate.service", "Rotate log files"))
API_PATHS = ("/api/v1/alerts", "/api/v1/sensors", "/api/v1/areas/centrum", "/healthz", "/api/v1/cameras/status")


class _Lines:
    """The log events of one run, in generation order (:func:`_documents` renders and orders them)."""

    def __init__(self, start: datetime, seed: int):
        self.start = start
        self.start_ms = (start - _EPOCH) // timedelta(milliseconds=1)
        self.seed = seed
        self.events: list[dict] = []
        self.pids: dict[tuple[str, str], int] = {}

    def pid(self, host: str, app: str, rng: random.Random, fresh: bool = True) -> str:
        """Per-host process ids: a fresh one per connection or job, the same for a daemon."""
        key = (host, app)
        if key not in self.pids:
            self.pids[key] = rng.randint(400, 3000) if not fresh else rng.randint(20000, 40000)
        elif fresh:
            self.pids[key] += rng.randint(1, 40)
        return str(self.pids[key])

    def add(self, seconds: float, tenant: str, host: dict, pri: str, app: str, pid: str | None, message: str,
            episode: str | None = None, msgid: str | None = None, sd: str | None = None) -> None:
        self.events.append({"ms": self.start_ms + round(seconds * 1000), "tenant": tenant, "host": host,
                            "pri": PRI[pri], "app": app, "pid": pid, "message": message, "episode": episode,
                            "msgid": msgid, "sd": sd, "raw": None})

    def add_raw(self, seconds: float, tenant: str, line: str, episode: str) -> None:
        self.events.append({"ms": self.start_ms + round(seconds * 1000), "tenant": tenant, "episode": episode,
                            "raw": line})


def _moment(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _bsd_stamp(moment: datetime) -> str:
    return f"{MONTH_NAMES[moment.month - 1]} {moment.day:>2} {moment:%H:%M:%S}"


def _render(event: dict, rng: random.Random) -> tuple[str, int]:
    """(line, event time in ms as a parser reads it back)."""
    if event["raw"] is not None:
        return event["raw"], event["ms"]
    host, ms = event["host"], event["ms"]
    tag = f"{event['app']}[{event['pid']}]" if event["pid"] else event["app"]
    fmt = host["format"]
    if fmt == "rfc5424":
        local = _moment(ms).astimezone(ZoneInfo(host["zone"]))
        stamp = local.isoformat(timespec="milliseconds")
        bom = BOM if event["app"] in ("edge-api", "sudo") else ""
        line = (f"<{event['pri']}>1 {stamp} {host['name']} {event['app']} {event['pid'] or '-'} "
                f"{event['msgid'] or '-'} {event['sd'] or '-'} {bom}{event['message']}")
        return line, ms
    if fmt == "rfc3164-rfc3339":
        local = _moment(ms).astimezone(ZoneInfo(host["zone"]))
        stamp = local.replace(microsecond=local.microsecond + rng.randint(0, 999)).isoformat(timespec="microseconds")
        return f"<{event['pri']}>{stamp} {host['name']} {tag}: {event['message']}", ms
    second = ms - ms % 1000
    stamp = _bsd_stamp(_moment(second))
    pri = "" if fmt == "rfc3164-nopri" else f"<{event['pri']}>"
    return f"{pri}{stamp} {host['name']} {tag}: {event['message']}", second


def _fingerprint(rng: random.Random) -> str:
    return "SHA256:" + "".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(43))


def _hosts(tenant: str) -> dict:
    """Host descriptions of a tenant, each with its zone (for RFC 5424 offsets)."""
    spec = TENANTS[tenant]
    hosts = {"firewall": dict(spec["firewall"]), "bastion": dict(spec["bastion"])}
    for server in spec["servers"]:
        hosts[server["name"]] = dict(server)
    for host in hosts.values():
        host["zone"] = spec["zone"]
    return hosts


def _public_addresses(tenant: str) -> list[str]:
    return [str(address) for address in ipaddress.ip_network(TENANTS[tenant]["public_net"]).hosts()]


# --------------------------------------------------------------------------- background

class _Background:
    def __init__(self, lines: _Lines, tenant: str, seconds: float, rng: random.Random, noise_sources: list[str]):
        self.lines, self.tenant, self.seconds, self.rng = lines, tenant, seconds, rng
        self.hosts = _hosts(tenant)
        self.noise_sources = noise_sources
        self.sessions: dict[str, int] = {}
        self.boot = {name: rng.uniform(200_000, 3_000_000) for name in self.hosts}

    def add(self, seconds, host, pri, app, message, pid=None, **kwargs):
        if 0 <= seconds < self.seconds:
            self.lines.add(seconds, self.tenant, host, pri, app, pid, message, **kwargs)

    def session_id(self, host: str) -> int:
        self.sessions[host] = self.sessions.get(host, self.rng.randint(300, 4000)) + self.rng.randint(1, 3)
        return self.sessions[host]

    def run(self) -> None:
        self.cron()
        self.daemons()
        self.api_log()
        for admin in TENANTS[self.tenant]["admins"]:
            self.admin_sessions(admin)
        self.automation()
        self.ssh_noise()
        self.firewall_noise()

    def cron(self) -> None:
        rng = self.rng
        for name, host in self.hosts.items():
            if name == "firewall":
                continue
            for minute in range(int(self.seconds // 60) + 1):
                at = minute * 60 + rng.uniform(0.0, 0.9)
                jobs = ["/usr/local/bin/healthcheck --quiet"]
                if minute % 10 == 0:
                    jobs.append("command -v debian-sa1 > /dev/null && debian-sa1 1 1")
                if minute % 60 == 17:
                    jobs.append("cd / && run-parts --report /etc/cron.hourly")
                for job in jobs:
                    pid = self.lines.pid(host["name"], "CRON", rng)
                    self.add(at, host, "authpriv.info", "CRON", "pam_unix(cron:session): session opened for user "
                             "root(uid=0) by (uid=0)", pid)
                    self.add(at + 0.01, host, "cron.info", "CRON", f"(root) CMD ({job})", pid)
                    self.add(at + rng.uniform(0.2, 2.5), host, "authpriv.info", "CRON",
                             "pam_unix(cron:session): session closed for user root", pid)

    def daemons(self) -> None:
        rng = self.rng
        for name, host in self.hosts.items():
            at = rng.uniform(0, 600)
            while at < self.seconds:
                unit, description = rng.choice(SYSTEMD_UNITS)
                self.add(at, host, "daemon.info", "systemd", f"Starting {unit} - {description}...", "1")
                done = at + rng.uniform(0.1, 8.0)
                self.add(done, host, "daemon.info", "systemd", f"{unit}: Deactivated successfully.", "1")
                self.add(done + 0.001, host, "daemon.info", "systemd", f"Finished {unit} - {description}.", "1")
                at += rng.uniform(300, 1500)
            at = rng.uniform(0, 1800)
            while at < self.seconds:
                chrony = self.lines.pid(host["name"], "chronyd", rng, fresh=False)
                offset = rng.uniform(-0.002, 0.002)
                self.add(at, host, "daemon.info", "chronyd", f"System clock wrong by {offset:.6f} seconds", chrony)
                at += rng.uniform(1200, 3600)
            if rng.random() < 0.5:
                rsyslog = self.lines.pid(host["name"], "rsyslogd", rng, fresh=False)
                # rsyslog's own message carries brackets in MSG: a parser must not take them for structured data
                self.add(rng.uniform(0, self.seconds), host, "syslog.info", "rsyslogd",
                         f'[origin software="rsyslogd" swVersion="8.2302.0" x-pid="{rsyslog}" '
                         'x-info="https://www.rsyslog.com"] rsyslogd was HUPed', None)

    def api_log(self) -> None:
        rng = self.rng
        for name, host in self.hosts.items():
            if not any(role in name for role in ("-app", "-web")):
                continue
            pid = self.lines.pid(host["name"], "edge-api", rng, fresh=False)
            at = rng.uniform(0, 20)
            while at < self.seconds:
                path = rng.choice(API_PATHS)
                status = rng.choices((200, 304, 404, 500), weights=(90, 6, 3, 1))[0]
                request = "".join(rng.choice("0123456789abcdef") for _ in range(12))
                client = f"10.{10 if self.tenant == 'oslo' else 20}.3.{rng.randint(10, 60)}"
                # a query with quotes and a bracket exercises the structured-data escapes
                query = r'q=\"stazione\" \]' if rng.random() < 0.05 else "page=1"
                sd = f'[req@32473 id="{request}" client="{client}" query="{query}"]'
                if rng.random() < 0.3:
                    sd += f'[timeQuality tzKnown="1" isSynced="1" syncAccuracy="{rng.randint(100000, 900000)}"]'
                self.add(at, host, "local0.info", "edge-api", f"GET {path} {status} {rng.randint(2, 180)}ms", pid,
                         msgid="ACCESS", sd=sd)
                at += rng.expovariate(1 / 20)

    def admin_sessions(self, admin: tuple[str, str, int]) -> None:
        rng = self.rng
        user, address, uid = admin
        at = rng.uniform(0, 1200)
        while at < self.seconds - 60:
            host = rng.choice([h for k, h in self.hosts.items() if k != "firewall"])
            at = self.admin_session(host, user, address, uid, at)
            at += rng.uniform(480, 2100)

    def admin_session(self, host: dict, user: str, address: str, uid: int, at: float) -> float:
        """One interactive session; returns when it ends. At most one password typo per session."""
        rng = self.rng
        name = host["name"]
        pid = self.lines.pid(name, "sshd", rng)
        port = rng.randint(40000, 60999)
        if rng.random() < 0.12:
            self.add(at, host, "authpriv.notice", "sshd", "pam_unix(sshd:auth): authentication failure; logname= "
                     f"uid=0 euid=0 tty=ssh ruser= rhost={address}  user={user}", pid)
            self.add(at + rng.uniform(1.5, 2.5), host, "auth.info", "sshd",
                     f"Failed password for {user} from {address} port {port} ssh2", pid)
            at += rng.uniform(5, 12)
            self.add(at, host, "auth.info", "sshd", f"Accepted password for {user} from {address} port {port} ssh2",
                     pid)
        else:
            self.add(at, host, "auth.info", "sshd", f"Accepted publickey for {user} from {address} port {port} "
                     f"ssh2: ED25519 {_fingerprint(random.Random(f'{self.lines.seed}:{user}:{address}'))}", pid)
        session = self.session_id(name)
        self.add(at + 0.01, host, "authpriv.info", "sshd",
                 f"pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)", pid)
        logind = self.lines.pid(name, "systemd-logind", rng, fresh=False)
        self.add(at + 0.02, host, "daemon.info", "systemd-logind", f"New session {session} of user {user}.", logind)
        at += rng.uniform(10, 90)
        for _ in range(rng.randint(0, 4)):
            self.sudo(host, user, uid, at, tty=f"pts/{rng.randint(0, 3)}", typo=rng.random() < 0.08)
            at += rng.uniform(15, 200)
        at += rng.uniform(30, 900)
        self.add(at, host, "auth.info", "sshd", f"Received disconnect from {address} port {port}:11: "
                 "disconnected by user", pid)
        self.add(at + 0.001, host, "auth.info", "sshd", f"Disconnected from user {user} {address} port {port}", pid)
        self.add(at + 0.01, host, "authpriv.info", "sshd", f"pam_unix(sshd:session): session closed for user {user}",
                 pid)
        self.add(at + 0.02, host, "daemon.info", "systemd-logind",
                 f"Session {session} logged out. Waiting for processes to exit.", logind)
        self.add(at + 0.05, host, "daemon.info", "systemd-logind", f"Removed session {session}.", logind)
        return at

    def sudo(self, host: dict, user: str, uid: int, at: float, tty: str, typo: bool = False,
             command: str | None = None) -> None:
        rng = self.rng
        pid = self.lines.pid(host["name"], "sudo", rng)
        command = command or rng.choice(ADMIN_COMMANDS)
        if typo:
            self.add(at, host, "authpriv.notice", "sudo", f"pam_unix(sudo:auth): authentication failure; "
                     f"logname={user} uid={uid} euid=0 tty=/dev/{tty} ruser={user} rhost=  user={user}", pid)
            at += rng.uniform(3, 8)
        self.add(at, host, "authpriv.notice", "sudo",
                 f"{user} : TTY={tty} ; PWD=/home/{user} ; USER=root ; COMMAND={command}", pid)
        self.add(at + 0.002, host, "authpriv.info", "sudo",
                 f"pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})", pid)
        self.add(at + rng.uniform(0.05, 3), host, "authpriv.info", "sudo",
                 "pam_unix(sudo:session): session closed for user root", pid)

    def automation(self) -> None:
        rng = self.rng
        user, address, uid = TENANTS[self.tenant]["automation"]
        at = rng.uniform(60, 900)
        while at < self.seconds:
            for name, host in self.hosts.items():
                if name in ("firewall", "bastion"):
                    continue
                start = at + rng.uniform(0, 20)
                pid = self.lines.pid(host["name"], "sshd", rng)
                port = rng.randint(40000, 60999)
                key = _fingerprint(random.Random(f"{self.lines.seed}:{user}:{address}"))
                self.add(start, host, "auth.info", "sshd",
                         f"Accepted publickey for {user} from {address} port {port} ssh2: ED25519 {key}", pid)
                self.add(start + 0.01, host, "authpriv.info", "sshd",
                         f"pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)", pid)
                sudo = self.lines.pid(host["name"], "sudo", rng)
                self.add(start + 1.2, host, "authpriv.notice", "sudo", f"{user} : PWD=/home/{user} ; USER=root ; "
                         "COMMAND=/usr/bin/systemctl reload edge-api", sudo)
                self.add(start + 1.3, host, "authpriv.info", "sudo",
                         f"pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})", sudo)
                self.add(start + 1.9, host, "authpriv.info", "sudo",
                         "pam_unix(sudo:session): session closed for user root", sudo)
                self.add(start + 2.4, host, "auth.info", "sshd",
                         f"Received disconnect from {address} port {port}:11: disconnected by user", pid)
                self.add(start + 2.41, host, "auth.info", "sshd",
                         f"Disconnected from user {user} {address} port {port}", pid)
                self.add(start + 2.42, host, "authpriv.info", "sshd",
                         f"pam_unix(sshd:session): session closed for user {user}", pid)
            at += 900 + rng.uniform(-30, 30)

    def ssh_noise(self) -> None:
        """Single probes of internet scanners at the bastion: at most one failure line per visit."""
        rng = self.rng
        host = self.hosts["bastion"]
        at = rng.uniform(0, 60)
        while at < self.seconds:
            source = rng.choice(self.noise_sources)
            pid = self.lines.pid(host["name"], "sshd", rng)
            port = rng.randint(32768, 60999)
            kind = rng.random()
            if kind < 0.45:
                user = rng.choice(GUESSED_USERS[1:])
                self.add(at, host, "auth.info", "sshd", f"Invalid user {user} from {source} port {port}", pid)
                self.add(at + rng.uniform(0.1, 0.6), host, "auth.info", "sshd",
                         f"Received disconnect from {source} port {port}:11: Bye Bye [preauth]", pid)
                self.add(at + rng.uniform(0.6, 0.7), host, "auth.info", "sshd",
                         f"Disconnected from invalid user {user} {source} port {port} [preauth]", pid)
            elif kind < 0.75:
                self.add(at, host, "auth.info", "sshd", f"Connection closed by {source} port {port} [preauth]", pid)
            elif kind < 0.9:
                self.add(at, host, "auth.info", "sshd",
                         "error: kex_exchange_identification: Connection closed by remote host", pid)
                self.add(at + 0.001, host, "auth.info", "sshd", f"Connection closed by {source} port {port}", pid)
            else:
                self.add(at, host, "auth.info", "sshd", f"banner exchange: Connection from {source} port {port}: "
                         "invalid format", pid)
            at += rng.expovariate(1 / 90)

    def firewall_noise(self) -> None:
        """Internet background radiation: 1-3 blocked packets per visiting source."""
        rng = self.rng
        targets = _public_addresses(self.tenant)
        at = rng.uniform(0, 10)
        while at < self.seconds:
            source = rng.choice(self.noise_sources)
            for probe in range(rng.choice((1, 1, 1, 2, 2, 3))):
                if rng.random() < 0.85:
                    protocol, port = "TCP", rng.choice(NOISE_TCP_PORTS)
                else:
                    protocol, port = "UDP", rng.choice(NOISE_UDP_PORTS)
                self.firewall_block(at + probe * rng.uniform(0.2, 3.0), source, rng.choice(targets), port, protocol)
            at += rng.expovariate(1 / 12)

    def firewall_block(self, at: float, source: str, target: str, port: int, protocol: str = "TCP",
                       episode: str | None = None, source_port: int | None = None) -> None:
        rng = self.rng
        firewall = self.hosts["firewall"]
        udp_length = rng.randint(20, 100)
        fields = (f"IN={firewall['iface']} OUT= MAC={firewall['mac']} SRC={source} DST={target} "
                  f"LEN={44 if protocol == 'TCP' else udp_length + 20} TOS=0x00 PREC=0x00 "
                  f"TTL={rng.randint(38, 250)} ID={rng.randint(1, 65535)} ")
        source_port = source_port or rng.randint(1024, 65535)
        if protocol == "TCP":
            fields += (f"PROTO=TCP SPT={source_port} DPT={port} WINDOW={rng.choice((1024, 65535, 29200))} "
                       "RES=0x00 SYN URGP=0")
        else:
            fields += f"PROTO=UDP SPT={source_port} DPT={port} LEN={udp_length}"
        if firewall["style"] == "ufw":
            uptime = self.boot["firewall"] + at
            message = f"[{int(uptime):5d}.{int(uptime % 1 * 1e6):06d}] [UFW BLOCK] {fields}"
        else:
            message = f"IPTables-Dropped: {fields}"
        self.add(at, firewall, "kern.warning", "kernel", message, None, episode=episode)


# --------------------------------------------------------------------------- episodes

# (variant, line maker(rng, moment, host)): what broken senders and stray clients put on a syslog port
MALFORMED = (
    ("empty_after_pri", lambda rng, moment, host: f"<{rng.choice((13, 38, 86))}>"),
    ("truncated_timestamp", lambda rng, moment, host: f"<38>{_bsd_stamp(moment)[:rng.randint(5, 12)]}"),
    ("http_request", lambda rng, moment, host: "GET / HTTP/1.1"),
    ("tls_client_hello", lambda rng, moment, host: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ("pri_out_of_range", lambda rng, moment, host: f"<{rng.choice((192, 255, 999))}>{_bsd_stamp(moment)} {host} "
                                                   f"sshd[{rng.randint(2000, 9000)}]: Connection closed"),
    ("unterminated_structured_data", lambda rng, moment, host: f"<134>1 {utc_iso(moment)} {host} edge-api 2211 "
                                                               f'ACCESS [req@32473 id="5f1c'),
    ("rfc5424_timestamp_with_space", lambda rng, moment, host: f"<86>1 {moment:%Y-%m-%d %H:%M:%S} {host} sshd - - - "
                                                               "Accepted publickey"),
    ("host_only", lambda rng, moment, host: f"<38>{_bsd_stamp(moment)} {host}"),
    ("localised_month", lambda rng, moment, host: f"<38>Mai {_bsd_stamp(moment)[4:]} {host} sshd[812]: "
                                                  "Server listening on 0.0.0.0 port 22."),
    ("stack_trace_continuation", lambda rng, moment, host: "\tat java.base/java.lang.Thread.run(Thread.java:1583)"),
    ("truncated_rfc5424_header", lambda rng, moment, host: f"<134>1 {utc_iso(moment)} {host} edge-api"),
)


class _Episodes:
    def __init__(self, lines: _Lines, seconds: float, rng: random.Random, attackers: list[str],
                 backgrounds: dict[str, _Background]):
        self.lines, self.seconds, self.rng, self.attackers = lines, seconds, rng, attackers
        self.backgrounds = backgrounds
        self.truth: list[dict] = []
        self.sudo_accounts = {tenant: list(TENANTS[tenant]["users"]) for tenant in backgrounds}

    def start_time(self, length: float) -> float:
        return self.rng.uniform(min(300.0, self.seconds / 10), max(self.seconds - length - 60, self.seconds / 5))

    def record(self, episode: str, tenant: str, kind: str, variant: str, entity_type: str, entity: str) -> None:
        self.truth.append({"episode_id": episode, "tenant": tenant, "kind": kind, "variant": variant,
                           "entity_type": entity_type, "entity": entity})

    def brute_force(self, episode: str, tenant: str, success: bool) -> None:
        rng = self.rng
        background = self.backgrounds[tenant]
        host = background.hosts["bastion"]
        name = host["name"]
        attacker = self.attackers.pop(0)
        attempts = rng.randint(6, 30)
        at = self.start_time(attempts * 4 + 120)
        winner = rng.choice(WEAK_ACCOUNTS) if success else None
        users = [rng.choice(GUESSED_USERS) for _ in range(rng.randint(1, 4))] + ([winner] if winner else [])
        self.record(episode, tenant, "brute_force", "ssh", "ip", attacker)
        done = 0
        for index, user in enumerate(users):
            last_user = index == len(users) - 1
            share = attempts - done if last_user else rng.randint(1, max(1, (attempts - done) // 2))
            done += share
            at = self.connection(episode, tenant, host, attacker, user, share, at)
            at += rng.uniform(0.3, 3.0)
        if winner:
            at += rng.uniform(5, 240)
            pid = self.lines.pid(name, "sshd", rng)
            port = rng.randint(32768, 60999)
            login = f"{episode}-login"
            self.lines.add(at, tenant, host, "auth.info", "sshd",
                           pid, f"Accepted password for {winner} from {attacker} port {port} ssh2", login)
            self.lines.add(at + 0.01, tenant, host, "authpriv.info", "sshd", pid,
                           f"pam_unix(sshd:session): session opened for user {winner}(uid=1050) by (uid=0)", login)
            self.record(login, tenant, "brute_force_success", "ssh", "account", f"{winner}@{name}")
            # what an intruder does first; a sudo_command, which no rule here alerts on
            background.sudo(host, winner, 1050, at + rng.uniform(20, 90), tty="pts/1",
                            command=rng.choice(("/bin/cat /etc/shadow", "/usr/bin/id", "/bin/bash -i")))

    def connection(self, episode: str, tenant: str, host: dict, attacker: str, user: str, attempts: int,
                   at: float) -> float:
        """SSH connections of a password-guessing tool trying one user; sshd drops each after 6 attempts."""
        rng = self.rng
        while attempts > 0:
            tries = min(attempts, rng.choice((3, 6, 6)))
            attempts -= tries
            pid = self.lines.pid(host["name"], "sshd", rng)
            port = rng.randint(32768, 60999)
            valid = user in BASTION_ACCOUNTS
            qualifier = "" if valid else "invalid user "
            if not valid:
                self.lines.add(at, tenant, host, "auth.info", "sshd", pid,
                               f"Invalid user {user} from {attacker} port {port}", episode)
            for attempt in range(tries):
                at += rng.uniform(0.4, 3.5)
                if valid:
                    self.lines.add(at, tenant, host, "authpriv.notice", "sshd", pid, "pam_unix(sshd:auth): "
                                   f"authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={attacker}  "
                                   f"user={user}", episode)
                else:
                    self.lines.add(at, tenant, host, "authpriv.notice", "sshd", pid,
                                   "pam_unix(sshd:auth): check pass; user unknown", episode)
                    self.lines.add(at + 0.001, tenant, host, "authpriv.notice", "sshd", pid, "pam_unix(sshd:auth): "
                                   f"authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={attacker}",
                                   episode)
                at += rng.uniform(1.6, 2.4)
                self.lines.add(at, tenant, host, "auth.info", "sshd", pid,
                               f"Failed password for {qualifier}{user} from {attacker} port {port} ssh2", episode)
            at += rng.uniform(0.05, 0.5)
            if tries == 6:
                self.lines.add(at, tenant, host, "auth.info", "sshd", pid, "error: maximum authentication attempts "
                               f"exceeded for {qualifier}{user} from {attacker} port {port} ssh2 [preauth]", episode)
                who = "authenticating user" if valid else "invalid user"
                self.lines.add(at + 0.001, tenant, host, "auth.info", "sshd", pid, f"Disconnecting {who} {user} "
                               f"{attacker} port {port}: Too many authentication failures [preauth]", episode)
            else:
                who = "authenticating user" if valid else "invalid user"
                self.lines.add(at, tenant, host, "auth.info", "sshd", pid,
                               f"Connection closed by {who} {user} {attacker} port {port} [preauth]", episode)
        return at

    def sudo_brute_force(self, episode: str, tenant: str) -> None:
        rng = self.rng
        background = self.backgrounds[tenant]
        if not self.sudo_accounts[tenant]:
            raise ValueError(f"tenant {tenant!r} has only {len(TENANTS[tenant]['users'])} accounts for "
                             "sudo_brute_force episodes; ask for fewer")
        user, host_name, address, uid = self.sudo_accounts[tenant].pop(0)
        host = background.hosts[host_name]
        at = self.start_time(300)
        pid = self.lines.pid(host_name, "sshd", rng)
        port = rng.randint(40000, 60999)
        self.lines.add(at, tenant, host, "auth.info", "sshd", pid,
                       f"Accepted password for {user} from {address} port {port} ssh2", episode)
        self.record(episode, tenant, "brute_force", "sudo", "account", f"{user}@{host_name}")
        at += rng.uniform(20, 90)
        for _ in range(rng.randint(2, 4)):
            sudo = self.lines.pid(host_name, "sudo", rng)
            command = rng.choice(("/bin/bash", "/usr/bin/su -", "/bin/cat /etc/shadow", "/usr/bin/passwd root"))
            for _ in range(3):
                at += rng.uniform(2.5, 9)
                self.lines.add(at, tenant, host, "authpriv.notice", "sudo", sudo, "pam_unix(sudo:auth): "
                               f"authentication failure; logname={user} uid={uid} euid=0 tty=/dev/pts/2 "
                               f"ruser={user} rhost=  user={user}", episode)
            at += rng.uniform(2, 3)
            self.lines.add(at, tenant, host, "authpriv.alert", "sudo", sudo, f"{user} : 3 incorrect password "
                           f"attempts ; TTY=pts/2 ; PWD=/home/{user} ; USER=root ; COMMAND={command}", episode)
            at += rng.uniform(5, 40)

    def port_scan(self, episode: str, tenant: str, vertical: bool) -> None:
        rng = self.rng
        background = self.backgrounds[tenant]
        scanner = self.attackers.pop(0)
        targets = _public_addresses(tenant)
        if vertical:
            target = rng.choice(targets)
            ports = rng.sample(SCAN_PORTS, rng.randint(25, min(60, len(SCAN_PORTS))))
            probes = [(target, port) for port in ports]
            gap = (0.05, 1.0)
        else:
            port = rng.choice(SWEEP_PORTS)
            probes = [(target, port) for target in rng.sample(targets, rng.randint(12, 40))]
            gap = (0.1, 2.0)
        self.record(episode, tenant, "port_scan", "vertical" if vertical else "horizontal", "ip", scanner)
        at = self.start_time(len(probes) * gap[1])
        # SYN scanners (nmap, masscan) send every probe of a run from one source port
        source_port = rng.randint(32768, 65535)
        for target, port in probes:
            background.firewall_block(at, scanner, target, port, episode=episode, source_port=source_port)
            at += rng.uniform(*gap)

    def malformed(self, episode: str, tenant: str, number: int) -> None:
        rng = self.rng
        at = rng.uniform(0, self.seconds - 1)
        moment = self.lines.start + timedelta(seconds=at)
        host = rng.choice(list(self.backgrounds[tenant].hosts.values()))["name"]
        variant, make_line = MALFORMED[number % len(MALFORMED)]
        line = make_line(rng, moment, host)
        self.lines.add_raw(at, tenant, line, episode)
        self.record(episode, tenant, "malformed", variant, "line", line)


# --------------------------------------------------------------------------- entry points

def generate(seed: int = 7, start: str = "2026-05-01T08:00:00Z", hours: float = 2.0,
             tenants: tuple[str, ...] = ("oslo", "padova"), episodes: dict[str, int] | None = None
             ) -> tuple[list[dict], list[dict]]:
    """SYNTHETIC labelled ``security.syslog`` stream: (documents in received-time order, truth records).

    ``episodes`` maps generator kinds (keys of :data:`DEFAULT_EPISODES`) to counts;
    missing kinds get none, None means the defaults. Episodes alternate between the
    tenants. The same arguments always give the same output.
    """
    unknown = sorted(set(tenants) - set(TENANTS))
    if unknown:
        raise ValueError(f"unknown tenant(s) {', '.join(unknown)} (known: {', '.join(TENANTS)})")
    counts = dict(DEFAULT_EPISODES if episodes is None else episodes)
    bad = sorted(set(counts) - set(DEFAULT_EPISODES))
    if bad:
        raise ValueError(f"unknown episode kind(s) {', '.join(bad)} (known: {', '.join(DEFAULT_EPISODES)})")
    if hours < 0.25:
        raise ValueError(f"hours must be at least 0.25 to fit the episodes, got {hours}")
    seconds = hours * 3600
    lines = _Lines(parse_time(start).astimezone(timezone.utc), seed)
    internet = [f"{net}.{host}" for net in ("203.0.113", "192.0.2") for host in range(1, 255)]
    random.Random(f"{seed}:addresses").shuffle(internet)
    wanted = sum(counts.get(kind, 0) for kind in DEFAULT_EPISODES if kind.startswith(("brute", "port")))
    attackers, noise = internet[:wanted], internet[wanted:]
    if len(noise) < 100:
        raise ValueError(f"{wanted} attacking episodes leave too few addresses for background noise")
    backgrounds = {tenant: _Background(lines, tenant, seconds, random.Random(f"{seed}:{tenant}:background"), noise)
                   for tenant in tenants}
    for background in backgrounds.values():
        background.run()
    injector = _Episodes(lines, seconds, random.Random(f"{seed}:episodes"), attackers, backgrounds)
    index = 0
    for kind in DEFAULT_EPISODES:
        for number in range(counts.get(kind, 0)):
            tenant = tenants[index % len(tenants)]
            episode = f"ep-{index:03d}"
            index += 1
            if kind in ("brute_force", "brute_force_success"):
                injector.brute_force(episode, tenant, success=kind == "brute_force_success")
            elif kind == "sudo_brute_force":
                injector.sudo_brute_force(episode, tenant)
            elif kind.startswith("port_scan"):
                injector.port_scan(episode, tenant, vertical=kind == "port_scan_vertical")
            else:
                injector.malformed(episode, tenant, number)
    return _documents(lines, injector.truth, random.Random(f"{seed}:transport"))


def _documents(lines: _Lines, truth: list[dict], rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Renders the lines, adds transport delay (a few lines late by up to ~2 s) and completes the truth."""
    rendered = []
    for sequence, event in enumerate(sorted(lines.events, key=lambda e: (e["ms"], e["tenant"]))):
        line, logged_ms = _render(event, rng)
        delay = 3 + int(rng.expovariate(1 / 40))
        if rng.random() < 0.004:
            delay += rng.randint(300, 2000)
        rendered.append((event["ms"] + delay, sequence, event, line, logged_ms))
    rendered.sort(key=lambda item: (item[0], item[1]))
    documents = []
    spans: dict[str, list[int]] = {}
    for received_ms, _, event, line, logged_ms in rendered:
        documents.append({"tenant": event["tenant"], "collector": TENANTS[event["tenant"]]["collector"],
                          "received_time": utc_iso(_moment(received_ms)), "line": line})
        if event["episode"]:
            span = spans.setdefault(event["episode"], [logged_ms, logged_ms, 0])
            span[0], span[1], span[2] = min(span[0], logged_ms), max(span[1], logged_ms), span[2] + 1
            if event["raw"] is not None:
                span[0] = span[1] = received_ms
    for record in truth:
        first, last, count = spans[record["episode_id"]]
        record.update(start=utc_iso(_moment(first)), end=utc_iso(_moment(last)), lines=count)
    truth.sort(key=lambda record: record["episode_id"])
    return documents, truth


def summary(truth: list[dict]) -> dict:
    """Counts of a truth list: episodes and lines per kind, and episodes per tenant and kind."""
    by_tenant: dict[str, Counter] = {}
    for record in truth:
        by_tenant.setdefault(record["tenant"], Counter())[record["kind"]] += 1
    lines = Counter()
    for record in truth:
        lines[record["kind"]] += record["lines"]
    return {
        "episodes": len(truth),
        "by_kind": dict(sorted(Counter(record["kind"] for record in truth).items())),
        "lines_by_kind": dict(sorted(lines.items())),
        "by_tenant": {tenant: dict(sorted(counts.items())) for tenant, counts in sorted(by_tenant.items())},
    }
