package io.impetus.flink;

import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.functions.co.KeyedBroadcastProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * What impetus's gates in front of a Python detector share ({@link QuietGate}, {@link PostGate}): a spec broadcast
 * as text, messages stopped only when the spec says they certainly raise nothing, and a count of those stopped sent
 * on so that the job's accounting still counts every message.
 *
 * <p>Output: {@code Row(bucket, tagged)}; {@code tagged} is {@code R} and a message passed on, or {@code C<n>}: n
 * messages stopped since the last count went out (sent before the next message passed on, at least once a second
 * while messages come, and when the input ends). The tag makes counts unforgeable: every message from the topic
 * goes on as {@code R...}.
 */
public abstract class CountingGate extends KeyedBroadcastProcessFunction<Row, Row, String, Row> {
    private static final long serialVersionUID = 1L;
    /** The timer of the end of a bounded input (the watermark jumps to the end of time). */
    protected static final long END_OF_INPUT = Long.MAX_VALUE;
    private static final long COUNT_EVERY_MS = 1000;
    private static final MapStateDescriptor<String, String> SPEC =
            new MapStateDescriptor<>("quiet-spec", Types.STRING, Types.STRING);

    private transient long quiet;
    private transient long countedAt;
    private transient boolean armed;

    /** The broadcast state descriptor the spec stream is broadcast with. */
    public static MapStateDescriptor<String, String> specDescriptor() {
        return SPEC;
    }

    /** The bucket a message of this key goes on under. */
    protected abstract String bucketOf(String key);

    /** Arms the end-of-input timer once per instance: the count left when a bounded input ends goes out from it. */
    protected void arm(ReadOnlyContext ctx) {
        if (!armed) {
            ctx.timerService().registerEventTimeTimer(END_OF_INPUT - 1);
            armed = true;
        }
    }

    /** One message stopped: counted, and the count sent on when the last went out a second ago or more. */
    protected void stopped(String key, ReadOnlyContext ctx, Collector<Row> out) {
        quiet++;
        long now = ctx.timerService().currentProcessingTime();
        if (now - countedAt >= COUNT_EVERY_MS) {
            countedAt = now;
            pass(key, null, out); // the count goes out even while every message is stopped
        }
    }

    /** A message on to the key's bucket (null: none), after the count of stopped messages not yet sent. */
    protected void pass(String key, String tagged, Collector<Row> out) {
        String bucket = bucketOf(key);
        if (quiet > 0) {
            out.collect(Row.of(bucket, "C" + quiet));
            quiet = 0;
        }
        if (tagged != null) {
            out.collect(Row.of(bucket, tagged));
        }
    }

    /** Whether {@code timestamp} is the end-of-input timer; its count is then sent. */
    protected boolean ended(long timestamp, OnTimerContext ctx, Collector<Row> out) {
        if (timestamp != END_OF_INPUT - 1) {
            return false;
        }
        pass((String) ctx.getCurrentKey().getField(0), null, out);
        return true;
    }

    /** Whether a message's timestamp is behind the watermark (Python counts it late, so it goes on). */
    protected static boolean late(ReadOnlyContext ctx) {
        Long stamp = ctx.timestamp();
        return stamp != null && stamp < ctx.timerService().currentWatermark();
    }
}
