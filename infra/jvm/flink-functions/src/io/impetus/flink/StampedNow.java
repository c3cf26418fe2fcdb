package io.impetus.flink;

import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;

/**
 * Stamps each record with the wall-clock time it passes: alerts, dead letters and accounting
 * records are new facts, so their Kafka timestamp (which drives the topics' retention) is when
 * they were raised. In the JVM, so that no Python runs per record on the way to a sink.
 */
public final class StampedNow implements SerializableTimestampAssigner<Object> {
    private static final long serialVersionUID = 1L;

    @Override
    public long extractTimestamp(Object record, long previousTimestamp) {
        return System.currentTimeMillis();
    }
}
