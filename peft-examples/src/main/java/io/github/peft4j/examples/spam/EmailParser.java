package io.github.peft4j.examples.spam;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.Charset;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;
import org.apache.james.mime4j.codec.DecodeMonitor;
import org.apache.james.mime4j.codec.DecoderUtil;
import org.apache.james.mime4j.dom.Body;
import org.apache.james.mime4j.dom.Entity;
import org.apache.james.mime4j.dom.Message;
import org.apache.james.mime4j.dom.Multipart;
import org.apache.james.mime4j.dom.SingleBody;
import org.apache.james.mime4j.message.DefaultMessageBuilder;
import org.apache.james.mime4j.stream.Field;
import org.apache.james.mime4j.stream.MimeConfig;
import org.apache.james.mime4j.util.ByteSequence;
import org.jsoup.Jsoup;

/**
 * Turns one raw RFC 822 / MIME email into the text a classifier sees: the decoded Subject and the body text,
 * nothing else.
 *
 * <p>Every other header (Received, Date, From, To, Message-ID, list headers ...) is dropped: in the SpamAssassin
 * corpus they reveal which collection an email came from, so a classifier could learn the collection instead of
 * the content. The body is found by walking the MIME tree: {@code text/plain} parts are preferred; when a message
 * has none, its {@code text/html} parts are reduced to their text with jsoup (a {@code text/plain} part that is
 * really HTML is stripped the same way). Transfer encodings (quoted-printable, base64) are decoded by mime4j;
 * the declared charset is honoured when Java knows it, otherwise the bytes are read as strict UTF-8 and, failing
 * that, as windows-1252, which decodes every byte. Parts marked as attachments and non-text parts are skipped;
 * attached {@code message/rfc822} emails contribute their body (not their headers).
 *
 * <p>Whitespace is collapsed to single spaces (control characters count as whitespace) and the body is cut to
 * {@link #DEFAULT_MAX_BODY_CHARS} characters by default: the model sees at most a few hundred tokens anyway.
 * The result is {@code subject + "\n" + body} (either may be empty).
 */
public final class EmailParser {
    /** Default cut-off for the body text, in chars. */
    public static final int DEFAULT_MAX_BODY_CHARS = 4000;
    /** Longest subject kept, in chars. */
    public static final int MAX_SUBJECT_CHARS = 500;

    private static final Pattern WHITESPACE = Pattern.compile("[\\s\\p{Cc}\\p{Z}\\u200B\\uFEFF]+");
    private static final Pattern LOOKS_LIKE_HTML = Pattern.compile("(?i)<\\s*(html|body|br|p|div|table|font|a)(\\s[^>]*)?/?>");
    private static final Charset WINDOWS_1252 = Charset.forName("windows-1252");

    private final int maxBodyChars;

    /** A parser that keeps up to {@link #DEFAULT_MAX_BODY_CHARS} chars of body. */
    public EmailParser() {
        this(DEFAULT_MAX_BODY_CHARS);
    }

    /**
     * A parser with a body length cut-off.
     *
     * @param maxBodyChars the longest body kept, in chars (at least 1)
     */
    public EmailParser(int maxBodyChars) {
        if (maxBodyChars < 1) {
            throw new IllegalArgumentException("maxBodyChars must be >= 1, got " + maxBodyChars);
        }
        this.maxBodyChars = maxBodyChars;
    }

    /**
     * The subject and body of a parsed email.
     *
     * @param subject the decoded Subject header, whitespace-normalised ("" when absent)
     * @param body the body text, whitespace-normalised and cut to length ("" when there is none)
     */
    public record Parsed(String subject, String body) {
        /**
         * The text a model sees: subject and body on two lines, or just the one that is present.
         *
         * @return the model text ("" when both are empty)
         */
        public String text() {
            if (subject.isEmpty()) {
                return body;
            }
            return body.isEmpty() ? subject : subject + "\n" + body;
        }
    }

    /**
     * Parses one raw email.
     *
     * @param raw the email's bytes as stored (may start with an mbox {@code From } line)
     * @return the subject and body
     * @throws IOException if mime4j cannot read the message structure (a {@code MimeIOException})
     */
    public Parsed parse(byte[] raw) throws IOException {
        DefaultMessageBuilder builder = new DefaultMessageBuilder();
        builder.setMimeEntityConfig(MimeConfig.PERMISSIVE);
        builder.setDecodeMonitor(DecodeMonitor.SILENT);
        Message message;
        try (InputStream in = new ByteArrayInputStream(raw, mboxLineEnd(raw), raw.length - mboxLineEnd(raw))) {
            message = builder.parseMessage(in);
        }
        try {
            String subject = normalise(subject(message), MAX_SUBJECT_CHARS);
            List<String> plain = new ArrayList<>();
            List<String> html = new ArrayList<>();
            collect(message, plain, html);
            String body;
            if (!plain.isEmpty()) {
                body = String.join(" ", plain);
            } else {
                List<String> texts = new ArrayList<>();
                for (String h : html) {
                    texts.add(Jsoup.parse(h).text());
                }
                body = String.join(" ", texts);
            }
            return new Parsed(subject, normalise(body, maxBodyChars));
        } finally {
            message.dispose();
        }
    }

    /**
     * The Subject, RFC 2047 encoded words decoded. Raw 8-bit subjects (common in spam) are decoded from the
     * header's bytes like a body part: the message's declared charset, else strict UTF-8, else windows-1252.
     */
    private static String subject(Message message) {
        Field field = message.getHeader() == null ? null : message.getHeader().getField("Subject");
        if (field == null) {
            return "";
        }
        ByteSequence raw = field.getRaw();
        if (raw == null) {
            return message.getSubject() == null ? "" : message.getSubject();
        }
        byte[] bytes = raw.toByteArray();
        int colon = 0;
        while (colon < bytes.length && bytes[colon] != ':') {
            colon++;
        }
        byte[] value = java.util.Arrays.copyOfRange(bytes, Math.min(colon + 1, bytes.length), bytes.length);
        String text = decode(value, declaredCharset(message));
        return DecoderUtil.decodeEncodedWords(text.replaceAll("\\r?\\n(?=[ \\t])", ""), DecodeMonitor.SILENT);
    }

    /** Skips a leading mbox separator line ({@code From addr date}), which is no header. */
    private static int mboxLineEnd(byte[] raw) {
        if (raw.length >= 5 && raw[0] == 'F' && raw[1] == 'r' && raw[2] == 'o' && raw[3] == 'm' && raw[4] == ' ') {
            for (int i = 5; i < raw.length; i++) {
                if (raw[i] == '\n') {
                    return i + 1;
                }
            }
            return raw.length;
        }
        return 0;
    }

    private static void collect(Entity entity, List<String> plain, List<String> html) throws IOException {
        Body body = entity.getBody();
        if (body instanceof Multipart multipart) {
            boolean alternative = "alternative".equalsIgnoreCase(multipart.getSubType());
            if (alternative) {
                // one rendering of the same content: the plain one if there is one, else the first usable part
                List<String> p = new ArrayList<>();
                List<String> h = new ArrayList<>();
                for (Entity part : multipart.getBodyParts()) {
                    collect(part, p, h);
                }
                if (!p.isEmpty()) {
                    plain.addAll(p);
                } else {
                    html.addAll(h);
                }
            } else {
                for (Entity part : multipart.getBodyParts()) {
                    collect(part, plain, html);
                }
            }
            return;
        }
        if (body instanceof Message nested) {
            collect(nested, plain, html);
            return;
        }
        if (!(body instanceof SingleBody single) || "attachment".equalsIgnoreCase(entity.getDispositionType())) {
            return;
        }
        String mime = entity.getMimeType() == null ? "text/plain" : entity.getMimeType().toLowerCase(Locale.ROOT);
        if (!mime.startsWith("text/")) {
            return;
        }
        byte[] bytes;
        try (InputStream in = single.getInputStream()) {
            bytes = in.readAllBytes();
        }
        String text = decode(bytes, declaredCharset(entity));
        if (mime.equals("text/html") || (mime.equals("text/plain") && LOOKS_LIKE_HTML.matcher(text).find())) {
            if (mime.equals("text/html")) {
                html.add(text);
            } else {
                plain.add(Jsoup.parse(text).text());
            }
        } else if (mime.equals("text/plain") || mime.equals("text/enriched") || mime.equals("text/richtext")) {
            plain.add(text);
        }
    }

    /** The charset named in Content-Type, or null when there is none (mime4j reports us-ascii then). */
    private static String declaredCharset(Entity entity) {
        var field = entity.getHeader() == null ? null : entity.getHeader().getField("Content-Type");
        if (field == null || !field.getBody().toLowerCase(Locale.ROOT).contains("charset")) {
            return null;
        }
        return entity.getCharset();
    }

    /**
     * Decodes body bytes: the declared charset when Java supports it (malformed bytes replaced), else strict
     * UTF-8, else windows-1252. Undeclared US-ASCII-looking text is tried as UTF-8 first, since 8-bit mail
     * without a charset is common.
     *
     * @param bytes the transfer-decoded body
     * @param declared the declared charset name, or null
     * @return the text
     */
    static String decode(byte[] bytes, String declared) {
        if (declared != null) {
            String name = declared.trim().replace("\"", "");
            try {
                Charset cs = Charset.forName(name);
                if (!cs.equals(StandardCharsets.US_ASCII)) {
                    return new String(bytes, cs);
                }
            } catch (IllegalArgumentException unknownOrUnsupported) {
                // fall through to the guesses below
            }
        }
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException notUtf8) {
            return new String(bytes, WINDOWS_1252);
        }
    }

    /**
     * Collapses every run of whitespace or control characters to one space, trims, and cuts to length without
     * splitting a surrogate pair.
     *
     * @param s the text
     * @param maxChars the longest result
     * @return the normalised text
     */
    static String normalise(String s, int maxChars) {
        String t = WHITESPACE.matcher(s).replaceAll(" ").strip();
        if (t.length() <= maxChars) {
            return t;
        }
        int end = maxChars;
        if (Character.isHighSurrogate(t.charAt(end - 1))) {
            end--;
        }
        return t.substring(0, end).strip();
    }
}
