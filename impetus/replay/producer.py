"""Producing an iterable of documents into a topic, paced by event time, with progress.

Shared by every replayer. Pacing: with ``speedup`` S > 0, an event whose event
time lies T seconds after the first one is sent T / S seconds after the start
(S = 3600 plays one hour of history per second); with S = 0 events go as fast
as the broker takes them.

Every record is stamped with its event time (the Kafka record timestamp): the
streaming jobs take event time from there, and the broker applies retention to it.
Events older than a topic's retention would be deleted within minutes, so
replayers of history shift it to the present first (see ``impetus.replay.sensors``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable

from impetus.alerts import parse_time
from impetus.config import Settings


@dataclass
class ReplayResult:
    topic: str
    sent: int
    seconds: float
    first_event_time: str | None
    last_event_time: str | None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def make_producer(settings: Settings, **overrides):
    from kafka import KafkaProducer

    options = dict(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20,
                   batch_size=256 * 1024, compression_type=None, max_request_size=16 << 20)
    options.update(overrides)
    return KafkaProducer(**options)


def replay(settings: Settings, topic: str, documents: Iterable[dict], key: Callable[[dict], str] | None = None,
           limit: int | None = None, speedup: float = 0.0, time_field: str = "event_time",
           progress: bool = True, total: int | None = None, producer=None, stamp: str = "event") -> ReplayResult:
    """Send ``documents`` to ``topic``. ``stamp="event"`` makes each record's timestamp its event time
    (what the streaming jobs need); ``stamp="now"`` leaves it to the time of sending (a backfill of
    history for the lake, which retention would otherwise delete at once)."""
    from tqdm import tqdm

    own_producer = producer is None
    producer = producer or make_producer(settings)
    documents = islice(documents, limit) if limit else documents
    bar = tqdm(total=min(filter(None, (limit, total)), default=None), unit="ev", desc=f"-> {topic}",
               disable=not progress, file=sys.stderr, mininterval=0.5)
    started = time.monotonic()
    first = last = None
    origin = None
    sent = 0
    record_time = None
    try:
        for document in documents:
            event_time = document.get(time_field)
            if event_time:
                moment = parse_time(event_time).timestamp()
                record_time = int(moment * 1000)
            if speedup > 0 and event_time:
                origin = origin if origin is not None else moment
                wait = (moment - origin) / speedup - (time.monotonic() - started)
                if wait > 0:
                    time.sleep(wait)
            producer.send(topic, value=json.dumps(document).encode("utf-8"),
                          key=key(document).encode("utf-8") if key else None,
                          timestamp_ms=record_time if event_time and stamp == "event" else None)
            first = first or event_time
            last = event_time
            sent += 1
            bar.update(1)
        producer.flush()
    finally:
        bar.close()
        if own_producer:
            producer.close()
    return ReplayResult(topic, sent, time.monotonic() - started, first, last)
