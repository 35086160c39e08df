/**
 * Training arithmetic: optimizers with the exact update rules of {@code torch.optim} ({@link
 * io.github.peft4j.train.AdamW}, {@link io.github.peft4j.train.Sgd}) and the cross-entropy losses of Hugging Face
 * heads ({@link io.github.peft4j.train.Losses}).
 */
package io.github.peft4j.train;
