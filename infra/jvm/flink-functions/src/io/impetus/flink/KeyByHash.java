package io.impetus.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32;

/**
 * Pairs a raw message with a key that only spreads messages evenly and stably over the key
 * groups: {@code Row(crc32(UTF-8 bytes) mod buckets, message)}, the number as text. For a keyed
 * Python function that keeps nothing per message but needs a keyed stream (timers); computed in
 * the JVM, so without a Python call per message.
 */
public final class KeyByHash implements MapFunction<String, Row> {
    private static final long serialVersionUID = 1L;

    private final int buckets;

    public KeyByHash(int buckets) {
        if (buckets < 1) {
            throw new IllegalArgumentException("buckets must be at least 1, not " + buckets);
        }
        this.buckets = buckets;
    }

    @Override
    public Row map(String message) {
        return Row.of(keyOf(message), message);
    }

    /** The key of one message, public for tests. */
    public String keyOf(String message) {
        return Long.toString(bucketOf(message, buckets));
    }

    /** {@code crc32(UTF-8 bytes of text) mod buckets}: the bucket impetus's JVM keys hash text into. */
    static long bucketOf(String text, int buckets) {
        CRC32 crc = new CRC32();
        crc.update(text.getBytes(StandardCharsets.UTF_8));
        return crc.getValue() % buckets;
    }
}
