/**
 * A language model over HTTP: {@link io.github.peft4j.generate.serve.LogitsServer} serves a local model's decode
 * sessions, whole-sequence logits and generation as JSON on the JDK's HTTP server (loopback by default), and
 * {@link io.github.peft4j.generate.serve.RemoteLm} is the client side, a
 * {@link io.github.peft4j.generate.LanguageModel} whose sessions run on the server, so
 * {@code Generator.of(remote)} and proxy-tuning with a remote base model work as with a local one. The wire format
 * is in docs/server.md.
 */
package io.github.peft4j.generate.serve;
