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
 */
public final class Bundle extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
    private static final long serialVersionUID = 1L;
    /** Timestamp of a message that had none (Python sees None). */
    private static final long NONE = Long.MIN_VALUE;

    private final int maxCount;
    private final long maxWaitMs;
    private transient Map<String, Waiting> waiting;
    private transient boolean timerSet;

    private static final class Waiting {
        final ArrayList<String> messages = new ArrayList<>();
        long[] stamps = new long[8];
        long latest = NONE;

        void add(String message, long stamp) {
            if (messages.size() == stamps.length) {
                stamps = java.util.Arrays.copyOf(stamps, stamps.length * 2);
            }
            stamps[messages.size()] = stamp;
            messages.add(message);
            if (stamp != NONE && stamp > latest) {
                latest = stamp;
            }
        }
    }

    public Bundle(int maxCount, long maxWaitMs) {
        if (maxCount < 1 || maxWaitMs < 1) {
            throw new IllegalArgumentException("Bundle needs maxCount >= 1 and maxWaitMs >= 1");
        }
        this.maxCount = maxCount;
        this.maxWaitMs = maxWaitMs;
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
        Waiting bundle = waiting.computeIfAbsent(key, k -> new Waiting());
        bundle.add((String) pair.getField(1), record.hasTimestamp() ? record.getTimestamp() : NONE);
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
