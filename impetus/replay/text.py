"""SYNTHETIC text streams for the text-intelligence detectors: social posts and CTI items.

Nothing here is real: every ``social.posts`` and ``cti.posts`` document is generated
from templates for two tenants, ``oslo`` and ``padova`` (real place names for
flavour, English text because the VADER lexicon is English). Addresses come from
the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) and
private 10.x space, domains from the reserved ``.example``/``.test`` names and
``example.com/net/org``, hashes are random hex. CVE ids are real, with the
products they belong to; the cities' product inventories are invented.

The generator is seeded: the same arguments give the same documents, byte for
byte. Most posts are background (traffic, weather, events, complaints, advisories
about products the cities do not run, indicator lists of unwatched addresses) and
must not raise anything under :func:`example_rules`; a few are planted hits
(investigation terms, CTI mentions of watched assets, some defanged, threat
language). The labels travel separately from the documents, as ``truth``:
``{"post_id", "topic", "tenant", "template", "expected": [(category, rule_id), ...]}``
for every post, ``expected`` holding one pair per alert the post must raise (sorted;
empty for background). :func:`evaluate` scores alerts against it.

Used by the text-intelligence replay (``impetus replay``), the detector tests and
the benchmark of ``impetus.detect.text``.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from impetus.alerts import parse_time, utc_iso

TENANTS = ("oslo", "padova")
SOCIAL_PLATFORMS = ("mastodon", "bluesky", "reddit", "forum")
RULES_UPDATED_AT = "2026-04-28T09:00:00Z"

CITIES = {
    "oslo": {
        "prefix": "osl", "name": "Oslo", "tz": "Europe/Oslo",
        "places": ["Karl Johans gate", "Aker Brygge", "Grønland", "Majorstuen", "Bjørvika", "Tøyen", "Frogner",
                   "Sinsen", "Storo", "Jernbanetorget", "Youngstorget", "Grünerløkka"],
        "stations": ["Oslo S", "Nationaltheatret", "Majorstuen station", "Skøyen station", "Helsfyr"],
        "lines": ["T-bane line 5", "tram 17", "bus 31", "the airport train", "tram 12", "bus 20"],
        "roads": ["Ring 3", "E18", "E6", "Ring 2", "the Festning tunnel"],
        "venues": ["Sentrum Scene", "Rockefeller", "Ullevaal Stadion", "the Opera House", "Vulkan Arena",
                   "Parkteatret"],
        "watched_venue": "Oslo Spektrum",
        "tourism": "www.visitoslo.example",
        "domain": "oslo.example",
        "hosts": ["vpn", "portal", "mail", "citrix", "sso", "intranet", "webmail"],
        "public_net": (198, 51, 100, 0),  # 198.51.100.0/26
        "internal_net": (10, 20),  # 10.20.0.0/16
        "products": [("CVE-2023-4966", "Citrix", "NetScaler ADC and Gateway",
                      "a buffer over-read that discloses session tokens"),
                     ("CVE-2023-46805", "Ivanti", "Connect Secure",
                      "an authentication bypass in the web component")],
        "plate": lambda rng: (rng.choice(["EL", "EK", "DN", "BT", "SV", "EB"]) + " "
                              + str(rng.randrange(10000, 99999))),
        "protest": ["demonstration", "protest", "rally", "blockade"],
        "race": "Holmenkollen relay",
        "first_names": ["kari", "ole", "ingrid", "lars", "nora", "erik", "sigrid", "henrik"],
        "surnames": ["hansen", "johansen", "olsen", "larsen", "berg", "haugen"],
        "passwords": ["Sommer", "Vinter", "Oslo", "Password", "Velkommen"],
    },
    "padova": {
        "prefix": "pd", "name": "Padova", "tz": "Europe/Rome",
        "places": ["Piazza dei Signori", "Piazza delle Erbe", "Piazza della Frutta", "Via Roma", "Portello",
                   "Arcella", "Ponte di Brenta", "Corso del Popolo", "Riviera dei Ponti Romani", "Santa Croce"],
        "stations": ["Padova station", "Piazzale Stazione", "the Busitalia terminal", "Padova Ovest"],
        "lines": ["tram SIR1", "bus 10", "the regional train to Venice", "bus 24", "bus 5"],
        "roads": ["the tangenziale", "the A4", "the A13", "Corso Australia"],
        "venues": ["Gran Teatro Geox", "Stadio Euganeo", "Teatro Verdi", "the Kioene Arena", "Sala dei Giganti"],
        "watched_venue": "Prato della Valle",
        "tourism": "www.visitpadova.example",
        "domain": "padova.example",
        "hosts": ["vpn", "portal", "mail", "sportello", "sso", "protocollo", "webmail"],
        "public_net": (198, 51, 100, 64),  # 198.51.100.64/26
        "internal_net": None,
        "products": [("CVE-2024-21762", "Fortinet", "FortiOS SSL VPN",
                      "an out-of-bounds write that allows unauthenticated code execution"),
                     ("CVE-2023-34362", "Progress", "MOVEit Transfer",
                      "a SQL injection in the web application")],
        "plate": lambda rng: (rng.choice(["FG", "GA", "EX", "FV", "GL", "DZ"]) + " " + str(rng.randrange(100, 999))
                              + " " + rng.choice(["KL", "AB", "TR", "PD", "MX", "ZC"])),
        "protest": ["sciopero", "strike", "protest", "demonstration", "corteo"],
        "race": "Padova Marathon",
        "first_names": ["giulia", "marco", "luca", "chiara", "paolo", "sara", "matteo", "elena"],
        "surnames": ["rossi", "bianchi", "ferrari", "zanon", "barbieri", "favaro"],
        "passwords": ["Estate", "Inverno", "Padova", "Password", "Benvenuto"],
    },
}

# Advisories about products neither city runs (real CVE ids and products).
OTHER_PRODUCTS = [
    ("CVE-2024-3400", "Palo Alto Networks", "PAN-OS GlobalProtect", "a command injection"),
    ("CVE-2023-20198", "Cisco", "IOS XE web UI", "a privilege escalation"),
    ("CVE-2024-1709", "ConnectWise", "ScreenConnect", "an authentication bypass"),
    ("CVE-2021-44228", "Apache", "Log4j", "remote code execution through JNDI lookups"),
    ("CVE-2024-6387", "OpenSSH", "sshd", "a signal handler race condition"),
    ("CVE-2023-22515", "Atlassian", "Confluence Data Center", "broken access control"),
    ("CVE-2024-47575", "Fortinet", "FortiManager", "a missing authentication for a critical function"),
    ("CVE-2023-40044", "Progress", "WS_FTP Server", "a .NET deserialization flaw"),
    ("CVE-2023-35078", "Ivanti", "Endpoint Manager Mobile", "an authentication bypass"),
    ("CVE-2023-34048", "VMware", "vCenter Server", "an out-of-bounds write"),
]
ARTISTS = ["Sigrid", "Aurora", "Kygo", "Cezinando", "Elisa", "Måneskin", "Vasco Rossi", "Marco Mengoni",
           "the Royal Philharmonic", "Arctic Monkeys"]
FAMILIES = ["QakBot", "IcedID", "Lumma Stealer", "AsyncRAT", "SocGholish", "Pikabot", "DarkGate"]
SECTORS = ["logistics firms", "hospitals", "universities", "retailers", "law firms", "manufacturers"]
WORDS = ["cdn", "update", "secure", "login", "docs", "files", "sync", "cloud", "verify", "portal", "mx", "static"]
HANDLE_WORDS = ["nordlys", "bike", "coffee", "tram", "runner", "foto", "city", "local", "daily", "sole", "vento",
                "nebbia", "fjord", "skater", "gatto", "hiker"]
CTI_SOURCES = {"vendor-advisories": "https://advisories.example.org/{year}/{n}",
               "cert-feed": "https://cert.example.org/alerts/{year}-{n}",
               "paste-monitor": "https://paste.example.net/raw/{token}",
               "forum-monitor": "https://forum.example.com/t/{n}"}


def example_rules(updated_at: str = RULES_UPDATED_AT) -> list[dict]:
    """Text rules of both tenants (documents of ``schemas/rules.json``) the synthetic data is labelled for."""
    def rule(rule_id, tenant, kind, params, enabled=True):
        return {"rule_id": rule_id, "tenant": tenant, "kind": kind, "enabled": enabled, "params": params,
                "updated_at": updated_at}

    rules = [
        rule("all-threat-language", "*", "threat_language", {"min_negative": -0.5, "min_terms": 1}),
        rule("all-inv-bomb-threat", "*", "investigation", {
            "match": "regex", "severity": "high", "title": "Bomb threat phrasing",
            "terms": r"(?i)\b(?:bomb|explosives?|ied)\b[^.!?\n]{0,60}?\b(?:station|airport|school|hospital|square"
                     r"|mall|stadium|arena|church|city hall|town hall)\b"}),
    ]
    for tenant, city in CITIES.items():
        prefix = city["prefix"]
        a, b, c, d = city["public_net"]
        rules += [
            rule(f"{prefix}-inv-venue", tenant, "investigation", {
                "match": "phrase", "terms": city["watched_venue"], "title": f"Events at {city['watched_venue']}"}),
            rule(f"{prefix}-inv-protest", tenant, "investigation", {
                "match": "keyword", "terms": ", ".join(city["protest"]) + ", protesters, demonstrators",
                "title": "Protests and strikes"}),
            rule(f"{prefix}-wa-domain", tenant, "watched_asset", {"indicator_type": "domain", "value": city["domain"]}),
            rule(f"{prefix}-wa-public-range", tenant, "watched_asset",
                 {"indicator_type": "ipv4", "value": f"{a}.{b}.{c}.{d}/26"}),
        ]
        for cve, vendor, product, _ in city["products"]:
            rules.append(rule(f"{prefix}-wa-{vendor.lower()}", tenant, "watched_asset",
                              {"indicator_type": "cve", "value": cve}))
        if city["internal_net"]:
            first, second = city["internal_net"]
            rules.append(rule(f"{prefix}-wa-internal-range", tenant, "watched_asset",
                              {"indicator_type": "ipv4", "value": f"{first}.{second}.0.0/16"}))
    rules += [
        rule("osl-inv-plates", "oslo", "investigation", {
            "match": "regex", "terms": r"\b[A-Z]{2} ?\d{5}\b", "severity": "low", "title": "Vehicle of interest"}),
        rule("pd-inv-plates", "padova", "investigation", {
            "match": "regex", "terms": r"\b[A-Z]{2} ?\d{3} ?[A-Z]{2}\b", "severity": "low",
            "title": "Vehicle of interest"}),
        # paused: the race is background in the data, so a hit here means paused rules leak through
        rule("pd-inv-marathon", "padova", "investigation", {"match": "keyword", "terms": "marathon"}, enabled=False),
    ]
    return sorted(rules, key=lambda r: r["rule_id"])


# --------------------------------------------------------------------------- building blocks

def _public_ip(rng: random.Random) -> str:
    """An address in documentation space outside both cities' watched ranges (198.51.100.0/25)."""
    net = rng.choice(["192.0.2", "203.0.113", "198.51.100"])
    low = 128 if net == "198.51.100" else 1
    return f"{net}.{rng.randrange(low, 255)}"


def _city_ip(rng: random.Random, city: dict) -> str:
    a, b, c, d = city["public_net"]
    return f"{a}.{b}.{c}.{d + rng.randrange(1, 63)}"


def _defang_ip(ip: str) -> str:
    return ip[:ip.rindex(".")] + "[.]" + ip[ip.rindex(".") + 1:]


def _defang_domain(name: str, rng: random.Random) -> str:
    return name.replace(".", rng.choice(["[.]", "(.)", "[dot]"]))


def _bad_domain(rng: random.Random) -> str:
    parent = rng.choice(["example.net", "example.com", "test"])
    return f"{rng.choice(WORDS)}-{rng.choice(WORDS)}{rng.randrange(1, 99)}.{parent}"


def _sha256(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _md5(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _fill(rng: random.Random, city: dict) -> dict:
    return {"place": rng.choice(city["places"]), "station": rng.choice(city["stations"]),
            "line": rng.choice(city["lines"]), "road": rng.choice(city["roads"]),
            "venue": rng.choice(city["venues"]), "artist": rng.choice(ARTISTS), "city": city["name"],
            "minutes": rng.randrange(5, 45), "temp": rng.randrange(6, 24), "tourism": city["tourism"],
            "race": city["race"], "watched_venue": city["watched_venue"], "plate": city["plate"](rng),
            "protest": rng.choice(city["protest"]), "local_ip": f"10.8.{rng.randrange(0, 255)}.1"}


# --------------------------------------------------------------------------- social posts

# Background: everyday city chatter. None of it may raise an alert under example_rules().
SOCIAL_BACKGROUND = [
    ("traffic", "Queue on {road} towards {place}, about {minutes} minutes extra this morning. Drive safe."),
    ("traffic", "{line} is delayed by {minutes} min again, signal fault near {station}."),
    ("traffic", "Accident cleared on {road}, traffic moving slowly past {place} now."),
    ("traffic", "Roadworks at {place} all week, take {line} instead if you can."),
    ("weather", "Sunny and {temp}°C at {place}, perfect day for a coffee outside."),
    ("weather", "Heavy rain over {city} right now, bring an umbrella if you head to {place}."),
    ("weather", "Wind warning for {city} tonight, some ferries and trams may be cancelled."),
    ("events", "Great concert at {venue} tonight! {artist} was amazing, what a voice."),
    ("events", "Tickets for {artist} at {venue} sold out in ten minutes. Gutted."),
    ("events", "Food market at {place} this weekend, the pastries are worth the queue."),
    ("events", "Training for the {race} on Sunday, wish me luck!"),
    ("events", "Full programme for the festival week is on https://{tourism}/events, lots of free stuff."),
    ("complaint", "{line} late AGAIN. Absolutely terrible service, I hate this commute so much."),
    ("complaint", "Worst driver ever on {line}, rude and careless. Disgusting behaviour."),
    ("complaint", "Why is {place} always so dirty? Awful, the council should be ashamed."),
    ("complaint", "Stuck at {station} for {minutes} minutes with no information. Useless and infuriating."),
    ("complaint", "Library wifi is broken again, the login page at {local_ip} just times out. Pathetic."),
    ("slang", "{artist}'s new album is the bomb, on repeat all day."),
    ("slang", "Photo shoot at {place} this afternoon, lovely light."),
    ("slang", "{artist} was killing it at {venue}, best gig of the year!"),
]

# Planted: (template name, text, expected alerts as (category, rule suffix or full id)).
SOCIAL_PLANTED = [
    ("venue", "Queue outside {watched_venue} already, doors open at 19:00 for {artist}.",
     [("investigation_hit", "{p}-inv-venue")]),
    ("venue", "Anyone selling two tickets for {artist} at {watched_venue_spaced} tonight?",
     [("investigation_hit", "{p}-inv-venue")]),
    ("protest", "Big {protest} planned at {place} on Saturday against the new toll, bring banners.",
     [("investigation_hit", "{p}-inv-protest")]),
    ("protest", "Protesters walking down {road} towards {place}, police on site, expect delays.",
     [("investigation_hit", "{p}-inv-protest")]),
    ("venue+protest", "Demonstrators gathering outside {watched_venue} before the show.",
     [("investigation_hit", "{p}-inv-protest"), ("investigation_hit", "{p}-inv-venue")]),
    ("plate", "White van with plates {plate} parked on the pavement at {place} for three days now.",
     [("investigation_hit", "{p}-inv-plates")]),
    ("threat", "I'm going to bomb the central station tomorrow. You will all die, you pathetic scum.",
     [("investigation_hit", "all-inv-bomb-threat"), ("threat_language", "all-threat-language")]),
    ("threat", "Someone should stab that worthless ticket inspector at {station}. I hate them all.",
     [("threat_language", "all-threat-language")]),
    ("threat", "I will shoot everyone at {venue} tonight and kill them all. I hate this place.",
     [("threat_language", "all-threat-language")]),
    ("threat", "Going to burn down the town hall, those corrupt idiots deserve to die.",
     [("threat_language", "all-threat-language")]),
    ("threat", "There is an explosive device in the mall at {place}. You have been warned, you will die screaming.",
     [("investigation_hit", "all-inv-bomb-threat"), ("threat_language", "all-threat-language")]),
    ("threat+protest", "Bring a weapon to the {protest} at {place} and attack the police, they are scum and deserve "
                       "pain.",
     [("investigation_hit", "{p}-inv-protest"), ("threat_language", "all-threat-language")]),
    ("asset", "Is {host}.{domain} down for anyone else? Can't log in from home.",
     [("indicator_match", "{p}-wa-domain")]),
    ("asset", "lol someone posted a dump of {domain} staff logins on a forum, great security guys",
     [("indicator_match", "{p}-wa-domain")]),
]


def _social_text(rng: random.Random, city: dict, planted: bool) -> tuple[str, str, list]:
    values = _fill(rng, city)
    values.update(domain=city["domain"], host=rng.choice(city["hosts"]), p=city["prefix"],
                  watched_venue_spaced=rng.choice([city["watched_venue"].upper(),
                                                   city["watched_venue"].lower().replace(" ", "  ")]))
    if not planted:
        name, template = rng.choice(SOCIAL_BACKGROUND)
        return name, template.format(**values), []
    name, template, expected = rng.choice(SOCIAL_PLANTED)
    return name, template.format(**values), [(category, rule.format(**values)) for category, rule in expected]


# --------------------------------------------------------------------------- CTI items

def _cti_background(rng: random.Random, city: dict) -> tuple[str, str]:
    cve, vendor, product, flaw = rng.choice(OTHER_PRODUCTS)
    kind = rng.randrange(6)
    if kind == 0:
        major, minor = rng.randrange(7, 12), rng.randrange(0, 5)
        return "advisory", (f"{vendor} released fixes for {cve} in {product}, {flaw}. Exploitation in the wild "
                            f"has been reported; upgrade to {major}.{minor}.{rng.randrange(1, 9)} or later.")
    if kind == 1:
        ips = [_public_ip(rng) for _ in range(rng.randrange(2, 5))]
        lines = [rng.choice([ip, _defang_ip(ip)]) for ip in ips]
        domain = _bad_domain(rng)
        return "ioc-list", (f"New {rng.choice(FAMILIES)} campaign targeting {rng.choice(SECTORS)} in Europe. "
                            f"IOCs:\n" + "\n".join(lines) + f"\nhxxp://{_defang_domain(domain, rng)}/gate.php\n"
                            f"{_sha256(rng)}")
    if kind == 2:
        return "scan", (f"Mass scanning for {cve} ({product}) from {_public_ip(rng)} and {_public_ip(rng)}, "
                        f"mostly against port 443. PoC code is public since last week.")
    if kind == 3:
        shop = rng.choice(["shopmail.example.com", "gamerzone.example.net", "webmail.example.org"])
        users = ", ".join(f"{rng.choice(HANDLE_WORDS)}{rng.randrange(1, 999)}@{shop}" for _ in range(3))
        return "paste", f"Combo list dump, {rng.randrange(2, 90)}k lines from {shop}. Sample: {users}"
    if kind == 4:
        return "malware", (f"{rng.choice(FAMILIES)} loader arrives as invoice_{rng.randrange(1000, 9999)}.pdf.lnk, "
                           f"drops update.dll (md5 {_md5(rng)}) and beacons to "
                           f"{_defang_domain(_bad_domain(rng), rng)} every 60 s.")
    return "patch-notes", (f"Patch Tuesday notes: Windows build 10.0.17763.{rng.randrange(5000, 6999)} and agent "
                           f"7.2.0.{rng.randrange(1, 9)} fix {cve} among others; see report.pdf for details.")


def _cti_planted(rng: random.Random, city: dict) -> tuple[str, str, list]:
    p, domain = city["prefix"], city["domain"]
    cve, vendor, product, flaw = rng.choice(city["products"])
    cve_rule = f"{p}-wa-{vendor.lower()}"
    kind = rng.randrange(6 if city["internal_net"] else 5)
    if kind == 0:
        return "cve", (f"{vendor} advisory: {cve} in {product} is {flaw}. Upgrade now; no workaround exists."), \
            [("indicator_match", cve_rule)]
    if kind == 1:
        return "cve+exploit", (f"Public PoC for {cve.lower()} ({product}) released today, exploitation attempts "
                               f"observed within hours."), [("indicator_match", cve_rule)]
    if kind == 2:
        host = f"{rng.choice(city['hosts'])}.{domain}"
        return "domain-defanged", (f"Phishing kit imitating {city['name']} webmail posts credentials to "
                                   f"hxxps://{_defang_domain(host, rng)}/owa/auth.php - the host looks compromised."), \
            [("indicator_match", f"{p}-wa-domain")]
    if kind == 3:
        first, second = _city_ip(rng, city), _city_ip(rng, city)
        while second == first:
            second = _city_ip(rng, city)
        return "ip-range", (f"Exposed RDP on {_defang_ip(first)} and {second}, both present a certificate of the "
                            f"{city['name']} municipality. Scanner: {_public_ip(rng)}."), \
            [("indicator_match", f"{p}-wa-public-range")] * 2
    if kind == 4:
        users = ", ".join(f"{rng.choice(city['first_names'])}.{rng.choice(city['surnames'])}@{domain}:"
                          f"{rng.choice(city['passwords'])}{rng.randrange(2020, 2027)}!" for _ in range(3))
        return "credential-leak", f"Leaked credentials dump: {users}", [("indicator_match", f"{p}-wa-domain")]
    first, second = city["internal_net"]
    internal = f"{first}.{second}.{rng.randrange(0, 255)}.{rng.randrange(1, 254)}"
    return "internal-leak", (f"Forum seller offers VPN access; the screenshot shows gateway "
                             f"{rng.choice(city['hosts'])}.{domain} and internal DNS {internal}."), \
        [("indicator_match", f"{p}-wa-domain"), ("indicator_match", f"{p}-wa-internal-range")]


# --------------------------------------------------------------------------- the streams

def _times(rng: random.Random, start: datetime, hours: float, count: int) -> list[datetime]:
    seconds = hours * 3600
    return sorted(start + timedelta(seconds=int(rng.random() * seconds)) for _ in range(count))


def generate(seed: int = 5, start: str = "2026-05-01T06:00:00Z", hours: float = 2.0,
             social_per_hour: int = 1200, cti_per_hour: int = 300, social_planted: float = 0.04,
             cti_planted: float = 0.15) -> tuple[list[dict], list[dict], list[dict]]:
    """``(social_docs, cti_docs, truth)`` for ``hours`` from ``start``, each stream in event-time order.

    Social posts carry local time (+01:00/+02:00), CTI items UTC. About 55 % of the
    posts are Oslo's. ``social_planted`` and ``cti_planted`` are the shares of planted hits.
    """
    rng = random.Random(seed)
    origin = parse_time(start)
    social, cti, truth = [], [], []
    for number, moment in enumerate(_times(rng, origin, hours, round(social_per_hour * hours))):
        tenant = "oslo" if rng.random() < 0.55 else "padova"
        city = CITIES[tenant]
        platform = rng.choice(SOCIAL_PLATFORMS)
        template, text, expected = _social_text(rng, city, rng.random() < social_planted)
        post_id = f"{platform[:2]}-{city['prefix']}-{number:06d}"
        social.append({"tenant": tenant, "post_id": post_id, "platform": platform,
                       "author": f"@{rng.choice(HANDLE_WORDS)}_{rng.choice(HANDLE_WORDS)}{rng.randrange(1, 99)}",
                       "text": text, "lang": "en",
                       "event_time": moment.astimezone(ZoneInfo(city["tz"])).isoformat()})
        truth.append({"post_id": post_id, "topic": "social.posts", "tenant": tenant, "template": template,
                      "expected": sorted(expected)})
    for number, moment in enumerate(_times(rng, origin, hours, round(cti_per_hour * hours))):
        tenant = "oslo" if rng.random() < 0.55 else "padova"
        city = CITIES[tenant]
        if rng.random() < cti_planted:
            template, text, expected = _cti_planted(rng, city)
        else:
            (template, text), expected = _cti_background(rng, city), []
        source = rng.choice(sorted(CTI_SOURCES))
        post_id = f"cti-{city['prefix']}-{number:06d}"
        url = CTI_SOURCES[source].format(year=moment.year, n=rng.randrange(1000, 99999),
                                         token=f"{rng.getrandbits(40):010x}")
        cti.append({"tenant": tenant, "post_id": post_id, "source": source, "url": url, "text": text,
                    "event_time": utc_iso(moment.astimezone(timezone.utc)).replace(".000Z", "Z")})
        truth.append({"post_id": post_id, "topic": "cti.posts", "tenant": tenant, "template": template,
                      "expected": sorted(expected)})
    return social, cti, truth


def evaluate(truth: list[dict], alerts: list[dict]) -> dict:
    """Precision and recall of ``alerts`` against ``truth``, counting (post, category, rule) pairs.

    An alert counts once per expected pair; extra alerts of the same pair are false positives.
    """
    expected = Counter((f"{t['topic']}:{t['post_id']}", category, rule)
                       for t in truth for category, rule in t["expected"])
    raised = Counter((a["entity"]["id"], a["category"], a["detector"]["name"]) for a in alerts)
    hits = sum((expected & raised).values())
    false_positives = sum((raised - expected).values())
    misses = sum((expected - raised).values())
    return {"true_positives": hits, "false_positives": false_positives, "false_negatives": misses,
            "precision": hits / (hits + false_positives) if hits + false_positives else 1.0,
            "recall": hits / (hits + misses) if hits + misses else 1.0}
