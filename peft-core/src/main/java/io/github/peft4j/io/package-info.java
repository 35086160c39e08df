/**
 * Reading and writing model weights in the <a href="https://github.com/huggingface/safetensors">safetensors</a>
 * format, Hugging Face checkpoint directories (single file or sharded with an index), and atomic file writes;
 * reading PyTorch {@code torch.save} state dicts ({@code .bin}) with {@link io.github.peft4j.io.TorchBinFile},
 * which never runs pickled code.
 *
 * <p>Every array returned by this package is owned by libtorch (copied out of any Java or memory-mapped
 * buffer). DJL cannot hold {@code BFLOAT16} arrays, so BF16 tensors are widened to {@code FLOAT32} in Java.
 */
package io.github.peft4j.io;
