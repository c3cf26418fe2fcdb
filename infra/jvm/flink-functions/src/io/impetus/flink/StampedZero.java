package io.impetus.flink;

import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;

/**
 * Stamps each record with time 0, for a control stream (e.g. {@link QuietGate}'s specs) that must not move the
 * event time of the data it is connected to: the rules topic's records carry the wall-clock time they were
 * published, which would otherwise carry the watermark of an operator reading older data past that data (every
 * reading late, every silence due). With idleness, such a stream holds the watermark back only for the moment
 * a record of it is in flight.
 */
public final class StampedZero implements SerializableTimestampAssigner<Object> {
    private static final long serialVersionUID = 1L;

    @Override
    public long extractTimestamp(Object record, long previousTimestamp) {
        return 0L;
    }
}
