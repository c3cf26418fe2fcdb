package io.impetus.flink;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Gathers the keyed raw messages ({@code Row(key, message)}, e.g. from {@link KeyByFields}) of each key
 * into bundles, {@code Row(key, Row(messages, timestamps))}, so that a keyed Python function takes a
 * key's messages in one call: a call into Python, with its keyed-state read and write and its timer,
 * costs a thread-mode job several times the Python work on a message.
 *
 * <p>A key's bundle leaves when it holds {@code maxCount} messages; every bundle leaves when
 * {@code maxWaitMs} have passed since the oldest message waiting arrived, when a watermark arrives
 * (before it is passed on, so no message is held back past a watermark and the next operator sees
 * the watermark each message saw), before a checkpoint barrier (so this operator keeps no state and
 * a restored job repeats nothing and loses nothing) and when the input ends. Messages leave in the
 * order they arrived; each keeps its own timestamp in the bundle, and the bundle carries the latest.
 *
 * <p>With {@code maxSpanMs}, a key's bundle also leaves before a message whose timestamp lies more than
 * that from the earliest or the latest one waiting: a bundle then spans a bounded stretch of event
 * time, so no bundle carries one key's messages far past other keys' (a key whose messages are sparse
 * can still hold a short bundle until the wait ends or a watermark comes).
 */
public final class Bundle extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
    private static final long serialVersionUID = 1L;
    /** Timestamp of a message that had none (Python sees None). */
    private static final long NONE = Long.MIN_VALUE;

    private final int maxCount;
    private final long maxWaitMs;
    private final long maxSpanMs;
    private transient Map<String, Waiting> waiting;
    private transient boolean timerSet;

    private static final class Waiting {
        final ArrayList<String> messages = new ArrayList<>();
        long[] stamps = new long[8];
        long latest = NONE;
        long earliest = NONE;

        /** Whether a message stamped {@code stamp} would make this bundle span more than {@code span} ms. */
        boolean outspans(long stamp, long span) {
            return stamp != NONE && latest != NONE && (stamp - earliest > span || latest - stamp > span);
        }

        void add(String message, long stamp) {
            if (messages.size() == stamps.length) {
                stamps = java.util.Arrays.copyOf(stamps, stamps.length * 2);
            }
            stamps[messages.size()] = stamp;
            messages.add(message);
            if (stamp != NONE && stamp > latest) {
                latest = stamp;
            }
            if (stamp != NONE && (earliest == NONE || stamp < earliest)) {
                earliest = stamp;
            }
        }
    }

    public Bundle(int maxCount, long maxWaitMs) {
        this(maxCount, maxWaitMs, 0);
    }

    /** @param maxSpanMs 0: no bound on the event time a bundle spans */
    public Bundle(int maxCount, long maxWaitMs, long maxSpanMs) {
        if (maxCount < 1 || maxWaitMs < 1 || maxSpanMs < 0) {
            throw new IllegalArgumentException("Bundle needs maxCount >= 1, maxWaitMs >= 1 and maxSpanMs >= 0");
        }
        this.maxCount = maxCount;
        this.maxWaitMs = maxWaitMs;
        this.maxSpanMs = maxSpanMs;
    }

    @Override
    public void open() throws Exception {
        super.open();
        waiting = new LinkedHashMap<>();
        timerSet = false;
    }

    @Override
    public void processElement(StreamRecord<Row> record) throws Exception {
        Row pair = record.getValue();
        String key = (String) pair.getField(0);
        long stamp = record.hasTimestamp() ? record.getTimestamp() : NONE;
        Waiting bundle = waiting.get(key);
        if (bundle != null && maxSpanMs > 0 && bundle.outspans(stamp, maxSpanMs)) {
            waiting.remove(key);
            emit(key, bundle);
            bundle = null;
        }
        if (bundle == null) {
            bundle = new Waiting();
            waiting.put(key, bundle);
        }
        bundle.add((String) pair.getField(1), stamp);
        if (bundle.messages.size() >= maxCount) {
            waiting.remove(key);
            emit(key, bundle);
        } else if (!timerSet) {
            getProcessingTimeService().registerTimer(
                    getProcessingTimeService().getCurrentProcessingTime() + maxWaitMs, this);
            timerSet = true;
        }
    }

    @Override
    public void onProcessingTime(long time) throws Exception {
        timerSet = false;
        flush();
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        flush();
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }

    private void flush() {
        if (waiting.isEmpty()) {
            return;
        }
        for (Map.Entry<String, Waiting> entry : waiting.entrySet()) {
            emit(entry.getKey(), entry.getValue());
        }
        waiting.clear();
    }

    private void emit(String key, Waiting bundle) {
        int n = bundle.messages.size();
        Row value = Row.of(bundle.messages.toArray(new String[n]), java.util.Arrays.copyOf(bundle.stamps, n));
        Row out = Row.of(key, value);
        output.collect(bundle.latest == NONE ? new StreamRecord<>(out) : new StreamRecord<>(out, bundle.latest));
    }
}
