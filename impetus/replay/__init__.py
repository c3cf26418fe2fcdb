"""Replayers: produce real or generated event streams into Kafka (``impetus replay ...``)."""
