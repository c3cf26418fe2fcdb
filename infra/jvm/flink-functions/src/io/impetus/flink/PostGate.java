package io.impetus.flink;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The post watch's gate in the JVM: of the posts, it passes on to the Python post watch only those whose text holds
 * one of the literals their tenant's rules need, and those it cannot vouch for.
 *
 * <p>Input: raw posts keyed by a hash of their text ({@code Row(bucket, message)}, {@link KeyByHash}); on the
 * broadcast side, the literal spec impetus.detect.text_gate compiles in Python from the rules in force (the first
 * one is given when the job is built). A post is <em>quiet</em> when {@link SchemaCheck} finds it valid (as Python
 * would), its tenant is in the spec, it is not behind the watermark, its text holds none of the spec's fold
 * characters, and none of the literals of its tenant and kind of post (social posts have a {@code platform}, CTI
 * items not) occurs in it: a literal with {@code ci} compared with the text's ASCII letters lower-cased, with
 * {@code start} only where the character before is not an ASCII letter, digit or underscore; a pattern (a widened
 * investigation without a literal, {@code [pattern]}) finds a match in it. The Python watch would
 * raise nothing for it. Quiet posts stop here and are only counted ({@link CountingGate}); every other message goes
 * on unchanged, under its bucket, and Python decides what is valid, late and alerting.
 */
public final class PostGate extends CountingGate {
    private static final long serialVersionUID = 1L;

    private transient Map<String, Map<String, Literal[]>> tenants; // tenant -> kind of post -> literals (null: all)
    private transient String fold;
    private transient String specText;

    /** One literal of the spec, or a pattern (a widened investigation without a literal). */
    private static final class Literal {
        final String text;
        final boolean ci;
        final boolean start;
        final Pattern pattern;

        Literal(String text, boolean ci, boolean start, Pattern pattern) {
            this.text = text;
            this.ci = ci;
            this.start = start;
            this.pattern = pattern;
        }
    }

    /**
     * @param schema the topic's JSON schema (text), for {@link SchemaCheck}
     * @param maxChars longer messages go to Python (which refuses those over its byte limit)
     * @param spec the literal spec in force when the job is built (JSON)
     * @param build a token of this build of the job ({@link CountingGate})
     */
    public PostGate(String schema, int maxChars, String spec, String build) {
        super(schema, maxChars, spec, build);
        use(spec); // refused here, when the job is built, rather than in a running task
    }

    @Override
    protected void use(String text) {
        if (text.equals(specText)) {
            return;
        }
        JsonNode spec;
        try {
            spec = new ObjectMapper().readTree(text);
        } catch (Exception notJson) {
            throw new IllegalArgumentException("the literal spec is not JSON: " + notJson.getMessage(), notJson);
        }
        Map<String, Map<String, Literal[]>> parsed = new HashMap<>();
        Iterator<Map.Entry<String, JsonNode>> each = spec.path("tenants").fields();
        while (each.hasNext()) {
            Map.Entry<String, JsonNode> tenant = each.next();
            Map<String, Literal[]> kinds = new HashMap<>();
            tenant.getValue().fields().forEachRemaining(kind -> kinds.put(kind.getKey(), literals(kind.getValue())));
            parsed.put(tenant.getKey(), kinds);
        }
        JsonNode folds = spec.path("fold");
        if (!folds.isTextual()) {
            throw new IllegalArgumentException("the literal spec has no fold characters");
        }
        tenants = parsed;
        fold = folds.textValue();
        specText = text;
    }

    private static Literal[] literals(JsonNode node) {
        if (node.isNull()) {
            return null;
        }
        List<Literal> literals = new ArrayList<>();
        for (JsonNode literal : node) {
            String text = literal.get(0).textValue();
            literals.add(literal.size() == 1 ? new Literal(text, false, false, Pattern.compile(text))
                    : new Literal(text, literal.get(1).booleanValue(), literal.get(2).booleanValue(), null));
        }
        return literals.toArray(new Literal[0]);
    }

    @Override
    public void processElement(Row pair, ReadOnlyContext ctx, Collector<Row> out) throws Exception {
        resume(ctx);
        String key = (String) pair.getField(0);
        String message = (String) pair.getField(1);
        arm(ctx);
        if (quiet(message) && !late(ctx)) {
            stopped(key, ctx, out);
        } else {
            pass(key, "R" + message, out);
        }
    }

    /** Whether the message is a valid post of a known tenant that certainly raises nothing. */
    private boolean quiet(String message) {
        JsonNode post = accepted(message);
        Map<String, Literal[]> tenant = post == null ? null : tenants.get(post.get("tenant").textValue());
        if (tenant == null) {
            return false;
        }
        Literal[] literals = tenant.get(post.has("platform") ? "social.posts" : "cti.posts");
        if (literals == null) {
            return false;
        }
        String text = post.get("text").textValue();
        for (int i = 0; i < fold.length(); i++) {
            if (text.indexOf(fold.charAt(i)) >= 0) {
                return false;
            }
        }
        String lowered = null;
        for (Literal literal : literals) {
            if (literal.ci && lowered == null) {
                lowered = asciiLower(text);
            }
            if (found(text, literal.ci ? lowered : text, literal)) {
                return false;
            }
        }
        return true;
    }

    private static boolean found(String text, String haystack, Literal literal) {
        if (literal.pattern != null) {
            try {
                return literal.pattern.matcher(text).find();
            } catch (StackOverflowError | RuntimeException tooDeep) {
                return true; // java.util.regex recurses on repeated alternations: Python's to judge
            }
        }
        for (int at = haystack.indexOf(literal.text); at >= 0; at = haystack.indexOf(literal.text, at + 1)) {
            if (!literal.start || at == 0 || !isAsciiWord(text.charAt(at - 1))) {
                return true;
            }
        }
        return false;
    }

    private static boolean isAsciiWord(char c) {
        return c < 128 && (Character.isLetterOrDigit(c) || c == '_');
    }

    /** The text with its ASCII capitals in lower case (nothing else changed, so positions stay). */
    static String asciiLower(String text) {
        char[] chars = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c >= 'A' && c <= 'Z') {
                if (chars == null) {
                    chars = text.toCharArray();
                }
                chars[i] = (char) (c + 32);
            }
        }
        return chars == null ? text : new String(chars);
    }

    /** The gate's verdict on one message, for tests: true when it would stop it (late or not aside). */
    public boolean stops(String message) {
        return quiet(message);
    }

    @Override
    protected String bucketOf(String key) {
        return key;
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) {
        ended(timestamp, ctx, out);
    }
}
