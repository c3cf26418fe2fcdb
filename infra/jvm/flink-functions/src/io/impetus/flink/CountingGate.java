package io.impetus.flink;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.BroadcastState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ReadOnlyBroadcastState;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
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
 *
 * <p>Validity: {@link #accepted(String)}, the topic's schema checked as Python checks it ({@link SchemaCheck}).
 *
 * <p>The spec: the one compiled when the job was built, until the spec stream brings another, which is also kept
 * in broadcast state with the build's token. A task restarted within the same run (a failover, from the run's
 * checkpoint) takes the kept spec up again: it follows the rules that came since the build, which the rules
 * stream does not deliver again. A job built anew (resubmitted, even from a checkpoint) has another token and
 * starts from its own build's spec, compiled from the rules of then.
 */
public abstract class CountingGate extends KeyedBroadcastProcessFunction<Row, Row, String, Row> {
    private static final long serialVersionUID = 1L;
    /** The timer of the end of a bounded input (the watermark jumps to the end of time). */
    protected static final long END_OF_INPUT = Long.MAX_VALUE;
    private static final long COUNT_EVERY_MS = 1000;
    private static final MapStateDescriptor<String, String> SPEC =
            new MapStateDescriptor<>("quiet-spec", Types.STRING, Types.STRING);

    private final SchemaCheck check;
    private final int maxChars;
    private final String initialSpec;
    private final String build;
    private transient long quiet;
    private transient long countedAt;
    private transient boolean armed;
    private transient boolean resumed;

    /**
     * @param schema the topic's JSON schema (text), for {@link SchemaCheck}
     * @param maxChars longer messages go to Python (which refuses those over its byte limit)
     * @param spec the spec in force when the job is built (JSON; the subclass refuses a bad one when built)
     * @param build a token of this build of the job (a restarted task of the same build finds its spec kept)
     */
    protected CountingGate(String schema, int maxChars, String spec, String build) {
        this.check = new SchemaCheck(schema);
        this.maxChars = maxChars;
        this.initialSpec = spec;
        this.build = build;
    }

    @Override
    public void open(OpenContext context) throws Exception {
        use(initialSpec);
    }

    /** The message's document when it is valid (as Python would find it) and not too long; else null. */
    protected JsonNode accepted(String message) {
        boolean fits = message.length() <= maxChars || message.codePointCount(0, message.length()) <= maxChars;
        return fits ? check.accepted(message) : null;
    }

    /** Applies a spec (text). */
    protected abstract void use(String spec);

    @Override
    public final void processBroadcastElement(String spec, Context ctx, Collector<Row> out) throws Exception {
        keep(spec, ctx);
    }

    /** A spec from the spec stream: applied, and kept in broadcast state for a restart within this run. */
    protected void keep(String spec, Context ctx) throws Exception {
        use(spec);
        BroadcastState<String, String> kept = ctx.getBroadcastState(SPEC);
        kept.put("spec", spec);
        kept.put("build", build);
    }

    /** At a task's first message: the spec kept by this build before a restart, if any, applied again. */
    protected void resume(ReadOnlyContext ctx) throws Exception {
        if (resumed) {
            return;
        }
        resumed = true;
        ReadOnlyBroadcastState<String, String> kept = ctx.getBroadcastState(SPEC);
        String spec = kept.get("spec");
        if (spec != null && build.equals(kept.get("build"))) {
            use(spec);
        }
    }

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
