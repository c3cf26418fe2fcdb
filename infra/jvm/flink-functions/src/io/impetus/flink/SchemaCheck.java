package io.impetus.flink;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.DeserializationFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * Whether a message is valid against a JSON schema of the simple kind impetus's topics use, deciding exactly as
 * impetus.schemas.check_payload does in Python: objects with {@code required}, {@code properties} and
 * {@code additionalProperties}, strings with {@code minLength}, {@code maxLength} (in code points), {@code pattern}
 * (a trailing {@code $} ends the text, as fastjsonschema reads it) and the {@code date-time} format of
 * impetus.schemas.is_date_time, numbers with {@code minimum} and {@code maximum}. JSON is read as Python's json
 * module reads it: a repeated key keeps its last value, nothing may follow the document, no NaN. A schema using any
 * other keyword is refused when this is built, so a message is never judged by a rule half understood.
 * {@link #epochMs(String)} reads a date-time as Python's {@code impetus.detect.urban.event_ms} does.
 */
public final class SchemaCheck implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final Set<String> ANNOTATIONS = Set.of(
            "$schema", "$id", "title", "description", "examples", "default", "$comment");
    private static final Pattern DATE_TIME = Pattern.compile(
            "(\\d{4}-\\d\\d-\\d\\d)[Tt](\\d\\d:\\d\\d:\\d\\d)(\\.\\d+)?([Zz]|[+-]\\d\\d:\\d\\d)");

    private final Node root;
    private transient ObjectMapper mapper;

    /** One schema node, of the keywords supported. */
    private static final class Node implements Serializable {
        private static final long serialVersionUID = 1L;
        String type;
        final List<String> required = new ArrayList<>();
        final Map<String, Node> properties = new HashMap<>();
        boolean closed;
        int minLength = -1;
        int maxLength = -1;
        Pattern pattern;
        boolean dateTime;
        Double minimum;
        Double maximum;
    }

    /** @param schema the JSON schema's text */
    public SchemaCheck(String schema) {
        try {
            root = node(new ObjectMapper().readTree(schema), "");
        } catch (IllegalArgumentException refused) {
            throw refused;
        } catch (Exception notJson) {
            throw new IllegalArgumentException("the schema is not JSON: " + notJson.getMessage(), notJson);
        }
    }

    private static Node node(JsonNode schema, String where) {
        Node node = new Node();
        Iterator<Map.Entry<String, JsonNode>> fields = schema.fields();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> field = fields.next();
            String keyword = field.getKey();
            JsonNode value = field.getValue();
            switch (keyword) {
                case "type":
                    node.type = value.textValue();
                    if (!Set.of("object", "string", "number", "integer", "boolean").contains(node.type)) {
                        throw unsupported(where, "type " + value);
                    }
                    break;
                case "required":
                    value.forEach(name -> node.required.add(name.textValue()));
                    break;
                case "properties":
                    value.fields().forEachRemaining(
                            p -> node.properties.put(p.getKey(), node(p.getValue(), where + "/" + p.getKey())));
                    break;
                case "additionalProperties":
                    if (!value.isBoolean()) {
                        throw unsupported(where, "additionalProperties other than true or false");
                    }
                    node.closed = !value.booleanValue();
                    break;
                case "minLength":
                    node.minLength = value.intValue();
                    break;
                case "maxLength":
                    node.maxLength = value.intValue();
                    break;
                case "pattern":
                    String pattern = value.textValue();
                    if (pattern.endsWith("$") && !pattern.endsWith("\\$")) {
                        pattern = pattern.substring(0, pattern.length() - 1) + "\\z"; // fastjsonschema's reading
                    }
                    node.pattern = Pattern.compile(pattern);
                    break;
                case "format":
                    if (!"date-time".equals(value.textValue())) {
                        throw unsupported(where, "format " + value);
                    }
                    node.dateTime = true;
                    break;
                case "minimum":
                    node.minimum = value.doubleValue();
                    break;
                case "maximum":
                    node.maximum = value.doubleValue();
                    break;
                default:
                    if (!ANNOTATIONS.contains(keyword) && !keyword.startsWith("x-")) {
                        throw unsupported(where, "keyword " + keyword);
                    }
            }
        }
        if (node.type == null) {
            throw unsupported(where, "a node without a type");
        }
        return node;
    }

    private static IllegalArgumentException unsupported(String where, String what) {
        return new IllegalArgumentException("schema " + (where.isEmpty() ? "root" : where) + ": " + what
                + " is beyond what the JVM check supports");
    }

    /** The document of a message this schema accepts, else null. */
    public JsonNode accepted(String message) {
        if (mapper == null) {
            mapper = new ObjectMapper();
            mapper.enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
        }
        JsonNode document;
        try {
            document = mapper.readTree(message);
        } catch (Exception notJson) {
            return null;
        }
        return document != null && accepts(root, document) ? document : null;
    }

    private static boolean accepts(Node node, JsonNode value) {
        switch (node.type) {
            case "object":
                if (!value.isObject()) {
                    return false;
                }
                for (String name : node.required) {
                    if (!value.has(name)) {
                        return false;
                    }
                }
                Iterator<Map.Entry<String, JsonNode>> fields = value.fields();
                while (fields.hasNext()) {
                    Map.Entry<String, JsonNode> field = fields.next();
                    Node property = node.properties.get(field.getKey());
                    if (property == null ? node.closed : !accepts(property, field.getValue())) {
                        return false;
                    }
                }
                return true;
            case "string":
                if (!value.isTextual()) {
                    return false;
                }
                String text = value.textValue();
                int length = text.codePointCount(0, text.length());
                return (node.minLength < 0 || length >= node.minLength)
                        && (node.maxLength < 0 || length <= node.maxLength)
                        && (node.pattern == null || node.pattern.matcher(text).find())
                        && (!node.dateTime || epochMs(text) != null);
            case "number":
            case "integer":
                if (!value.isNumber() || (node.type.equals("integer") && !value.isIntegralNumber())) {
                    return false;
                }
                double number = value.doubleValue();
                return (node.minimum == null || number >= node.minimum)
                        && (node.maximum == null || number <= node.maximum);
            case "boolean":
                return value.isBoolean();
            default:
                return false;
        }
    }

    /**
     * Epoch milliseconds (floored) of a date-time impetus.schemas.is_date_time accepts (RFC 3339: {@code T} and
     * {@code Z} either case, any fraction, {@code Z} or {@code +HH:MM}; a real moment, year 1 or later, the offset
     * within 18 hours), else null.
     */
    public static Long epochMs(String text) {
        java.util.regex.Matcher parts = text.length() > 64 ? null : DATE_TIME.matcher(text);
        if (parts == null || !parts.matches()) {
            return null;
        }
        String fraction = parts.group(3) == null ? "" : parts.group(3);
        if (fraction.length() > 10) {
            fraction = fraction.substring(0, 10); // Python keeps microseconds; nanoseconds floor to the same ms
        }
        String zone = parts.group(4).equalsIgnoreCase("z") ? "Z" : parts.group(4);
        try {
            java.time.OffsetDateTime moment = java.time.OffsetDateTime.parse(
                    parts.group(1) + "T" + parts.group(2) + fraction + zone);
            if (moment.getYear() < 1) {
                return null; // Python's datetime starts at year 1
            }
            java.time.Instant instant = moment.toInstant();
            return Math.floorDiv(instant.getEpochSecond() * 1_000_000L + instant.getNano() / 1000, 1000L);
        } catch (java.time.DateTimeException notReal) {
            return null;
        }
    }
}
