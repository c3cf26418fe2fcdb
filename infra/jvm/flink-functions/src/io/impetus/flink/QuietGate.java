package io.impetus.flink;

import java.time.Instant;
import java.time.ZoneId;
import java.time.ZonedDateTime;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The sensor watch's gate in the JVM: of each sensor's readings, it passes on to the Python sensor watch only
 * those that can raise an alert or that it cannot vouch for, and keeps each sensor's silence clock itself.
 *
 * <p>Input: readings keyed by sensor ({@code Row(tenant|sensor_id|kind, message)}, {@link KeyByFields}); on
 * the broadcast side, the quiet spec impetus.detect.quiet compiles in Python from the rules and the baseline
 * in force (the first one is given when the job is built). A reading is <em>quiet</em> when
 * {@link SchemaCheck} finds it valid (as Python would), its tenant is in the spec, it is not behind the watermark, and its value
 * lies strictly inside the spec's band for its tenant, kind, sensor and hour of the week (below the kind's hard
 * threshold, inside the baseline's usual range): the Python watch would raise nothing for it. Quiet readings
 * stop here and are only counted; every other message goes on unchanged. Python decides what is valid, what is
 * late and what alerts; the bands only ever say where it certainly would not.
 *
 * <p>Silence: each valid reading at least as new as its sensor's newest moves the sensor's clock (its event
 * time, the reading, the silence deadlines of the tenant's spec then), as the Python watch's state did; when
 * the watermark passes a deadline with no newer reading, a silence marker goes on carrying the deadline and the
 * sensor's newest reading, and Python raises the alert. Deadlines passed only because a bounded input ended
 * (beyond the newest timestamp seen less the tolerated disorder) are dropped, as in Python.
 *
 * <p>Output: {@code Row(bucket, tagged)} ({@link CountingGate}), the bucket being
 * {@code buckets:crc32(sensor key) mod buckets} (as {@link KeyByFields} with buckets) for {@link Bundle} and the
 * Python watch; besides the messages passed on ({@code R}) and the counts of quiet ones ({@code C}), {@code tagged}
 * is {@code S<deadline ms> } and the newest reading for a silence, unforgeable like the others.
 */
public final class QuietGate extends CountingGate {
    private static final long serialVersionUID = 1L;
    private static final long NONE = Long.MIN_VALUE;
    private static final double EXACT = 9007199254740992.0; // 2^53: beyond, a double and Python's int part

    private final int buckets;
    private final long outOfOrdernessMs;

    private transient Map<String, Tenant> tenants;
    private transient String specText;
    private transient ValueState<long[]> clock; // newest event time, timer, deadlines fired, deadline offsets...
    private transient ValueState<String> newest; // the sensor's newest valid reading
    private transient long newestStamp;

    /** One tenant's part of the spec. */
    private static final class Tenant {
        final Map<String, Double> thresholds = new HashMap<>();
        long[] silence = new long[0];
        ZoneId zone;
        boolean unjudged;
        String anomalyKind;
        final Map<String, Map<String, double[]>> bands = new HashMap<>(); // sensor -> kind -> 168 (lo, hi)
    }

    /**
     * @param schema the topic's JSON schema (text), for {@link SchemaCheck}
     * @param maxChars longer messages go to Python (which refuses those over its byte limit)
     * @param spec the quiet spec in force when the job is built (JSON)
     * @param buckets how many buckets the output is keyed by
     * @param outOfOrdernessMs the disorder the job's watermarks tolerate
     * @param build a token of this build of the job ({@link CountingGate})
     */
    public QuietGate(String schema, int maxChars, String spec, int buckets, long outOfOrdernessMs, String build) {
        super(schema, maxChars, spec, build);
        this.buckets = buckets;
        this.outOfOrdernessMs = outOfOrdernessMs;
        parse(spec); // refused here, when the job is built, rather than in a running task
    }

    @Override
    public void open(OpenContext context) throws Exception {
        super.open(context);
        clock = getRuntimeContext().getState(new ValueStateDescriptor<>("quiet-clock", long[].class));
        newest = getRuntimeContext().getState(new ValueStateDescriptor<>("quiet-newest", Types.STRING));
        newestStamp = NONE;
    }

    @Override
    protected void use(String text) {
        if (!text.equals(specText)) {
            tenants = parse(text);
            specText = text;
        }
    }

    private static Map<String, Tenant> parse(String text) {
        JsonNode spec;
        try {
            spec = new ObjectMapper().readTree(text);
        } catch (Exception notJson) {
            throw new IllegalArgumentException("the quiet spec is not JSON: " + notJson.getMessage(), notJson);
        }
        Map<String, Tenant> parsed = new HashMap<>();
        Iterator<Map.Entry<String, JsonNode>> each = spec.path("tenants").fields();
        while (each.hasNext()) {
            Map.Entry<String, JsonNode> entry = each.next();
            JsonNode node = entry.getValue();
            Tenant tenant = new Tenant();
            node.path("thresholds").fields().forEachRemaining(
                    t -> tenant.thresholds.put(t.getKey(), t.getValue().doubleValue()));
            JsonNode silence = node.path("silence");
            tenant.silence = new long[silence.size()];
            for (int i = 0; i < silence.size(); i++) {
                tenant.silence[i] = silence.get(i).longValue();
            }
            JsonNode anomaly = node.path("anomaly");
            if (anomaly.isObject()) {
                try {
                    tenant.zone = ZoneId.of(anomaly.path("tz").textValue());
                } catch (java.time.DateTimeException unknown) {
                    tenant.unjudged = true; // a zone this JVM does not know: Python judges every reading
                }
                tenant.anomalyKind = anomaly.path("kind").textValue();
                anomaly.path("bands").fields().forEachRemaining(sensor -> {
                    Map<String, double[]> kinds = new HashMap<>();
                    sensor.getValue().fields().forEachRemaining(b -> {
                        double[] flat = new double[2 * 168];
                        for (int how = 0; how < 168; how++) {
                            JsonNode band = b.getValue().get(how);
                            // no cell: the baseline cannot judge that hour, so nothing but the threshold can alert
                            boolean none = band == null || band.isNull();
                            flat[2 * how] = none ? Double.NEGATIVE_INFINITY : band.get(0).doubleValue();
                            flat[2 * how + 1] = none ? Double.POSITIVE_INFINITY : band.get(1).doubleValue();
                        }
                        kinds.put(b.getKey(), flat);
                    });
                    tenant.bands.put(sensor.getKey(), kinds);
                });
            }
            parsed.put(entry.getKey(), tenant);
        }
        return parsed;
    }

    @Override
    public void processElement(Row pair, ReadOnlyContext ctx, Collector<Row> out) throws Exception {
        resume(ctx);
        String key = (String) pair.getField(0);
        String message = (String) pair.getField(1);
        Long stamp = ctx.timestamp();
        if (stamp != null && stamp > newestStamp) {
            newestStamp = stamp;
        }
        arm(ctx);
        JsonNode reading = accepted(message);
        Tenant tenant = reading == null ? null : tenants.get(reading.get("tenant").textValue());
        if (tenant == null) {
            pass(key, "R" + message, out);
            return;
        }
        long moment = SchemaCheck.epochMs(reading.get("event_time").textValue());
        move(moment, message, tenant, ctx);
        if (!late(ctx) && quiet(tenant, reading, moment)) {
            stopped(key, ctx, out);
        } else {
            pass(key, "R" + message, out);
        }
    }

    /** The sensor's silence clock after a valid reading (as the Python watch moved its state). */
    private void move(long moment, String message, Tenant tenant, ReadOnlyContext ctx) throws Exception {
        long[] state = clock.value();
        if (state != null && moment < state[0]) {
            return;
        }
        long timer = state == null ? NONE : state[1];
        long[] moved = new long[3 + tenant.silence.length];
        moved[0] = moment;
        System.arraycopy(tenant.silence, 0, moved, 3, tenant.silence.length);
        if (tenant.silence.length > 0) {
            long first = moment + tenant.silence[0];
            if (timer == NONE || first < timer) {
                ctx.timerService().registerEventTimeTimer(first);
                timer = first;
            }
        }
        moved[1] = timer;
        clock.update(moved);
        newest.update(message);
    }

    private boolean quiet(Tenant tenant, JsonNode reading, long moment) {
        String kind = reading.get("kind").textValue();
        double value = reading.get("value").doubleValue();
        if (!(Math.abs(value) < EXACT)) {
            return false;
        }
        Double threshold = tenant.thresholds.get(kind);
        if (threshold != null && !(value < threshold)) {
            return false;
        }
        if (tenant.unjudged) {
            return false;
        }
        if (tenant.zone == null || !("*".equals(tenant.anomalyKind) || kind.equals(tenant.anomalyKind))) {
            return true;
        }
        Map<String, double[]> kinds = tenant.bands.get(reading.get("sensor_id").textValue());
        double[] bands = kinds == null ? null : kinds.get(kind);
        if (bands == null) {
            return true;
        }
        ZonedDateTime local = Instant.ofEpochMilli(moment).atZone(tenant.zone);
        int how = (local.getDayOfWeek().getValue() - 1) * 24 + local.getHour();
        return bands[2 * how] < value && value < bands[2 * how + 1];
    }

    @Override
    protected String bucketOf(String key) {
        return buckets + ":" + KeyByHash.bucketOf(key, buckets);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        if (ended(timestamp, ctx, out)) {
            return;
        }
        String key = (String) ctx.getCurrentKey().getField(0);
        long[] state = clock.value();
        if (state == null || state[1] != timestamp) {
            return; // a timer the clock has moved past (a newer reading set an earlier one since)
        }
        boolean endOfInput = ctx.timerService().currentWatermark() >= END_OF_INPUT
                && (newestStamp == NONE || timestamp > newestStamp - outOfOrdernessMs);
        int fired = (int) state[2];
        while (3 + fired < state.length && state[0] + state[3 + fired] <= timestamp) {
            if (!endOfInput) {
                pass(key, "S" + (state[0] + state[3 + fired]) + " " + newest.value(), out);
            }
            fired++;
        }
        state[2] = fired;
        state[1] = NONE;
        if (3 + fired < state.length) {
            state[1] = state[0] + state[3 + fired];
            ctx.timerService().registerEventTimeTimer(state[1]);
        }
        clock.update(state);
    }
}
