package io.github.peft4j.examples.spam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import org.junit.jupiter.api.Test;

/** MIME parsing keeps exactly the decoded Subject and body text: encodings, charsets, HTML, multipart. */
class EmailParserTest {
    private static final EmailParser PARSER = new EmailParser();

    private static EmailParser.Parsed parse(String raw) throws Exception {
        return PARSER.parse(raw.getBytes(StandardCharsets.ISO_8859_1));
    }

    private static String lines(String... l) {
        return String.join("\r\n", l);
    }

    /** UTF-8 text as the 8-bit chars of its bytes, to place raw UTF-8 in an ISO-8859-1 test string. */
    private static String utf8Bytes(String s) {
        return new String(s.getBytes(StandardCharsets.UTF_8), StandardCharsets.ISO_8859_1);
    }

    @Test
    void plainEmailKeepsSubjectAndBodyOnly() throws Exception {
        EmailParser.Parsed p = parse(FakeSpamPackage.plain("Meeting   moved", "Hi all,\r\n\r\n  the meeting\tis at 3pm.\r\n"));
        assertEquals("Meeting moved", p.subject());
        assertEquals("Hi all, the meeting is at 3pm.", p.body());
        assertEquals("Meeting moved\nHi all, the meeting is at 3pm.", p.text());
        for (String token : FakeSpamPackage.HEADER_TOKENS) {
            assertFalse(p.text().contains(token), token);
        }
    }

    @Test
    void rfc2047SubjectAndQuotedPrintableHtmlOnlyMultipart() throws Exception {
        String subject = "=?utf-8?B?" + Base64.getEncoder().encodeToString("Gewinn für Sie €".getBytes(StandardCharsets.UTF_8))
                + "?= =?iso-8859-1?Q?jetzt_gr=FCn?=";
        String raw = lines(
                "From: x@example.org",
                "Subject: " + subject,
                "MIME-Version: 1.0",
                "Content-Type: multipart/mixed; boundary=\"BOUND\"",
                "",
                "preamble is not text",
                "--BOUND",
                "Content-Type: text/html; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                "<html><head><style>p {color: red}</style><script>var hidden=3D1;</script></head>",
                "<body><p>Click <b>h=",
                "ere</b> now &amp; win =E2=82=AC100</p><!-- comment --></body></html>",
                "--BOUND",
                "Content-Type: image/gif; name=\"a.gif\"",
                "Content-Transfer-Encoding: base64",
                "Content-Disposition: attachment; filename=\"a.gif\"",
                "",
                "R0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs=",
                "--BOUND--",
                "");
        EmailParser.Parsed p = parse(raw);
        // RFC 2047: the space between two adjacent encoded words is not part of the text
        assertEquals("Gewinn für Sie €jetzt grün", p.subject());
        assertEquals("Click here now & win €100", p.body());
    }

    @Test
    void alternativePrefersPlainAndBase64LatinBodyIsDecoded() throws Exception {
        String body = Base64.getMimeEncoder().encodeToString("Un café crème, s'il vous plaît.".getBytes(StandardCharsets.ISO_8859_1));
        String raw = lines(
                "Subject: menu",
                "Content-Type: multipart/alternative; boundary=ALT",
                "",
                "--ALT",
                "Content-Type: text/plain; charset=ISO-8859-1",
                "Content-Transfer-Encoding: base64",
                "",
                body,
                "--ALT",
                "Content-Type: text/html; charset=ISO-8859-1",
                "",
                "<p>htmlonlytoken</p>",
                "--ALT--",
                "");
        EmailParser.Parsed p = parse(raw);
        assertEquals("Un café crème, s'il vous plaît.", p.body());
        assertFalse(p.text().contains("htmlonlytoken"));
    }

    @Test
    void charsetFallbacks() throws Exception {
        // undeclared charset, valid UTF-8 bytes: read as UTF-8
        assertEquals("naïve", parse(lines("Subject: a", "", utf8Bytes("naïve"))).body());
        // declared us-ascii but 8-bit windows-1252 bytes (not UTF-8): read as windows-1252
        assertEquals("“quoted” café", parse(lines("Subject: a", "Content-Type: text/plain; charset=us-ascii", "",
                "\u0093quoted\u0094 caf\u00e9")).body());
        // a charset Java does not know: UTF-8 if it decodes, else windows-1252
        assertEquals("über", parse(lines("Subject: a", "Content-Type: text/plain; charset=x-unknown-42", "",
                "\u00fcber")).body());
        // raw 8-bit subject in the message's declared charset
        assertEquals("Grüße", parse(lines("Subject: Gr\u00fc\u00dfe", "Content-Type: text/plain; charset=iso-8859-1", "",
                "x")).subject());
        assertEquals("Grüße", parse(lines("Subject: " + utf8Bytes("Grüße"), "", "x")).subject());
    }

    @Test
    void plainTextThatIsHtmlIsStrippedNestedMessagesContributeTheirBodyOnly() throws Exception {
        assertEquals("Big offer today", parse(lines("Subject: s", "Content-Type: text/plain", "",
                "<HTML><BODY><FONT size=3D2>Big <b>offer</b></FONT><br>today</BODY></HTML>")).body()
                .replace("=3D", "="));
        // addresses in angle brackets are not tags: such a plain part is left as it is
        assertEquals("<brian@example.org> and <a@b.org> wrote: hi", parse(lines("Subject: s", "", "<brian@example.org> and <a@b.org> wrote: hi")).body());
        String raw = lines(
                "Subject: Fwd: look",
                "Content-Type: multipart/mixed; boundary=B",
                "",
                "--B",
                "Content-Type: text/plain",
                "",
                "see below",
                "--B",
                "Content-Type: message/rfc822",
                "",
                "Received: from relayleak7.example.org",
                "From: senderleak7@example.org",
                "Subject: inner subject",
                "",
                "inner body",
                "--B--",
                "");
        EmailParser.Parsed p = parse(raw);
        assertEquals("Fwd: look\nsee below inner body", p.text());
    }

    @Test
    void longBodiesAreCutAndEmptyEmailsGiveEmptyText() throws Exception {
        String body = "word ".repeat(2000);
        EmailParser.Parsed p = parse(lines("Subject: long", "", body));
        // 800 x "word " fill the 4,000 chars; the trailing space is stripped
        assertEquals(3999, p.body().length());
        assertTrue(p.body().startsWith("word word") && p.body().endsWith("word"));
        assertEquals("word word wo", new EmailParser(12).parse(lines("Subject: x", "", body)
                .getBytes(StandardCharsets.US_ASCII)).body());
        assertEquals("", parse(lines("From: a@b", "Content-Type: image/png", "", "AAAA")).text());
        assertEquals("😀", EmailParser.normalise("😀😀", 3), "no half surrogate pair");
    }
}
