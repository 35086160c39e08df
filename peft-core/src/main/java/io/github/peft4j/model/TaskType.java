package io.github.peft4j.model;

/** What a model's head computes; the names are Hugging Face PEFT's {@code task_type} values. */
public enum TaskType {
    /** Next-token logits {@code [B, S, vocab]}. */
    CAUSAL_LM,
    /** One label distribution per sequence {@code [B, labels]}. */
    SEQ_CLS,
    /** One label distribution per token {@code [B, S, labels]}. */
    TOKEN_CLS,
    /** Hidden states only. */
    FEATURE_EXTRACTION
}
