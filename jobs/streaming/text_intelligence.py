"""Flink job: public posts and CTI items -> text-intelligence alerts on ``alerts.<tenant>``
(IMPETUS's Social Media Detection and CTI).

Reads ``social.posts`` and ``cti.posts`` and raises
- ``investigation_hit``: a post matching one of the tenant's investigations (keywords,
  phrases or patterns, added at run time as ``investigation`` rules);
- ``indicator_match``: an indicator in the text (CVE id, IP, domain, URL, hash, e-mail;
  defanged forms too) that matches one of the tenant's ``watched_asset`` rules;
- ``threat_language``: threat terms in a clearly negative post (VADER sentiment).
Messages that fail validation go to ``<topic>.dlq`` with the reason; counts of every run
go to ``jobs.accounting``. Rules on the ``rules`` topic apply without a restart.

    python jobs/streaming/text_intelligence.py                 # runs until stopped
    python jobs/streaming/text_intelligence.py --bounded       # stops at the offsets current at start
    python jobs/streaming/text_intelligence.py --resume latest # continue from the last checkpoint
"""

from __future__ import annotations

from impetus.streaming import Gate, Input, account, detect_raw, run_job, sink_alerts, suppressed

JOB_NAME = "text_intelligence"
INPUTS = [Input("social.posts", "social.posts"), Input("cti.posts", "cti.posts")]
OUT_OF_ORDERNESS_S = 5.0
# PyFlink execution mode (impetus.flink.stream_environment): Python inside the JVM
PYTHON_MODE = "thread"
# posts reach the post watch in bundles of up to this many (one Python call each), held at most this long
# (and never past a watermark or checkpoint): impetus.flink.bundle_in_jvm
POSTS_BUNDLE = 64
POSTS_BUNDLE_WAIT_MS = 10
# posts that hold none of the literals their tenant's rules need stop at a gate in the JVM (io.impetus.flink.PostGate,
# impetus.detect.text_gate): Python analyses only the posts that may alert
GATED = True


def build(env, settings, options, rules, descriptor, initial_rules):
    """Wire each topic's posts -> literal gate (JVM) -> post watch (checks and analyses each post) -> suppression
    per post -> alert sinks onto ``env``.

    Nothing is kept per post, so the watch takes the raw messages in bundles (one Python call per bundle, in
    arrival order at parallelism 1) and only its alerts are keyed, by post, for suppression.
    """
    from functools import partial

    from impetus.detect.streams import PostWatch
    from impetus.detect.text_gate import compile_spec
    from impetus.rules import defaults_from, rule_kinds

    defaults = defaults_from(rule_kinds(), ["threat_language"])
    gate = Gate(partial(compile_spec, tenants=tuple(options.tenants)), "PostGate") if GATED else None
    alerts, tallies, dead_letters, _ = detect_raw(env, settings, JOB_NAME, INPUTS, options, rules, descriptor,
                                                  "post watch", PostWatch(), initial_rules, defaults,
                                                  bundle=(POSTS_BUNDLE, POSTS_BUNDLE_WAIT_MS), gate=gate)
    sink_alerts(suppressed(alerts, settings, rules, descriptor, JOB_NAME, options, initial_rules, defaults),
                settings, JOB_NAME, options)
    account(settings, JOB_NAME, options, [tallies], dead_letters)


def main(argv=None):
    return run_job(JOB_NAME, __doc__, INPUTS, build, argv, OUT_OF_ORDERNESS_S, PYTHON_MODE)


if __name__ == "__main__":
    main()
