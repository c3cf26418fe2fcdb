package io.impetus.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;

/**
 * Pairs a raw JSON message with the key of the document in it: {@code Row(key, message)}, the key
 * being the named fields' text joined by {@code |} (e.g. {@code tenant|sensor_id|kind}); a field
 * may be a dotted path ({@code location.area}).
 *
 * <p>Runs in the JVM, so a keyed Python function can take the raw messages without a Python call
 * per message to compute their key. Nothing is rejected here: a message that is not JSON, or a
 * field that is missing or not a string, gives an empty part, and the Python function that checks
 * every message sends it to the dead letters with the reason. The key only has to be the same
 * for every message of one entity; it is the form impetus.detect.streams uses, so state is laid
 * out as it would be with the key computed in Python.
 *
 * <p>With {@code buckets}, the key is instead {@code buckets:crc32(UTF-8 bytes of that key) mod buckets}
 * (e.g. {@code 16:5}): each entity's messages still share one key, but many entities share a key, for a
 * keyed function that keeps its entities' state together under their bucket and takes their messages
 * in bundles ({@link Bundle}). The bucket count is part of the key, so state kept under another count
 * (a job restored at another parallelism) is told apart rather than mistaken for a bucket's own.
 */
public final class KeyByFields implements MapFunction<String, Row> {
    private static final long serialVersionUID = 1L;

    private final String[][] paths;
    private final int buckets;
    private transient ObjectMapper mapper;

    /** @param fields comma-separated field names or dotted paths, in key order */
    public KeyByFields(String fields) {
        this(fields, 0);
    }

    /**
     * @param fields comma-separated field names or dotted paths, in key order
     * @param buckets 0: the key is the fields' text; above 0: that text hashed into this many buckets
     */
    public KeyByFields(String fields, int buckets) {
        if (buckets < 0) {
            throw new IllegalArgumentException("buckets must be 0 (none) or more, not " + buckets);
        }
        this.buckets = buckets;
        String[] names = fields.split(",");
        paths = new String[names.length][];
        for (int i = 0; i < names.length; i++) {
            paths[i] = names[i].trim().split("\\.");
        }
    }

    @Override
    public Row map(String message) {
        String key = keyOf(message);
        if (buckets > 0) {
            key = buckets + ":" + KeyByHash.bucketOf(key, buckets);
        }
        return Row.of(key, message);
    }

    /** The fields' key of one message ({@code ""} parts for what is missing; before any bucketing), public for tests. */
    public String keyOf(String message) {
        if (mapper == null) {
            mapper = new ObjectMapper();
        }
        JsonNode document;
        try {
            document = mapper.readTree(message);
        } catch (Exception notJson) {
            document = null;
        }
        StringBuilder key = new StringBuilder();
        for (int i = 0; i < paths.length; i++) {
            if (i > 0) {
                key.append('|');
            }
            JsonNode node = document;
            for (String name : paths[i]) {
                node = node == null ? null : node.get(name);
            }
            if (node != null && node.isTextual()) {
                key.append(node.textValue());
            }
        }
        return key.toString();
    }
}
