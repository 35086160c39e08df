// peft4j's fused ops: JNI functions over DJL's PyTorch tensor handles (a handle is a `torch::Tensor*` that DJL
// owns; every result is a new `torch::Tensor*` that Java wraps in a PtNDArray, which then owns it). Each function
// calls ATen ops that DJL 0.36 does not expose, with autograd recording as for any other op on the calling
// thread. Built by scripts/with-torch.sh against the libtorch DJL runs on; loaded by io.github.peft4j.nn.FusedOps.
#include <jni.h>
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#ifndef PEFT4J_TORCH_VERSION
#define PEFT4J_TORCH_VERSION "unknown"
#endif

namespace {

inline const at::Tensor& T(jlong h) { return *reinterpret_cast<const at::Tensor*>(h); }

inline jlong wrap(at::Tensor t) { return static_cast<jlong>(reinterpret_cast<uintptr_t>(new at::Tensor(std::move(t)))); }

void throwEngine(JNIEnv* env, const char* what) {
  jclass c = env->FindClass("ai/djl/engine/EngineException");
  if (c == nullptr) {  // FindClass left a NoClassDefFoundError pending
    return;
  }
  env->ThrowNew(c, what);
}

}  // namespace

#define FUSED_BEGIN try {
#define FUSED_END                                  \
  }                                                \
  catch (const c10::Error& e) {                    \
    throwEngine(env, e.what_without_backtrace());  \
  }                                                \
  catch (const std::exception& e) {                \
    throwEngine(env, e.what());                    \
  }                                                \
  return 0;

extern "C" {

JNIEXPORT jstring JNICALL Java_io_github_peft4j_nn_FusedOps_nativeTorchVersion(JNIEnv* env, jclass) {
  return env->NewStringUTF(PEFT4J_TORCH_VERSION);
}

// a 0-d BF16 zero on like's device: reads back as BFLOAT16 in Java only under the BF16-patched DJL JNI
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nBf16Probe(JNIEnv* env, jclass, jlong like) {
  FUSED_BEGIN
  return wrap(at::zeros({}, T(like).options().dtype(at::kBFloat16)));
  FUSED_END
}

// silu(x) = x * sigmoid(x), one kernel forward and backward
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nSilu(JNIEnv* env, jclass, jlong x) {
  FUSED_BEGIN
  return wrap(at::silu(T(x)));
  FUSED_END
}

// silu(gate) * up (SwiGLU)
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nSiluMul(JNIEnv* env, jclass, jlong gate, jlong up) {
  FUSED_BEGIN
  return wrap(at::silu(T(gate)) * T(up));
  FUSED_END
}

// x W^T + b (ATen linear: addmm/matmul with the bias fused); with fan_in_fan_out the weight is stored (in, out) and
// used as is (GPT-2's Conv1D: addmm(b, x, W) as transformers computes it, no transposed copy)
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nLinear(JNIEnv* env, jclass, jlong x, jlong w, jlong b,
                                                                 jboolean fanInFanOut) {
  FUSED_BEGIN
  const at::Tensor& in = T(x);
  const at::Tensor& weight = T(w);
  if (fanInFanOut != JNI_TRUE) {
    return wrap(b == 0 ? at::linear(in, weight) : at::linear(in, weight, T(b)));
  }
  std::vector<int64_t> shape = in.sizes().vec();
  shape.back() = weight.size(1);
  at::Tensor flat = in.reshape({-1, in.size(-1)});
  at::Tensor y = b == 0 ? at::mm(flat, weight) : at::addmm(T(b), flat, weight);
  return wrap(y.view(shape));
  FUSED_END
}

// GELU, tanh approximation (GPT-2's gelu_new)
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nGeluTanh(JNIEnv* env, jclass, jlong x) {
  FUSED_BEGIN
  return wrap(at::gelu(T(x), "tanh"));
  FUSED_END
}

// Llama RMSNorm: normalised in fp32, cast back to x's dtype, then times the weight (transformers' LlamaRMSNorm,
// op for op: pow, mean, add, rsqrt, mul, mul). ATen's rms_norm computes the same in one call, but its CPU
// backward measured 10x slower here (a PowBackward0 of 180 us per [4, 32, 64] call against 11 us).
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nRmsNorm(JNIEnv* env, jclass, jlong x, jlong w, jdouble eps) {
  FUSED_BEGIN
  const at::Tensor& in = T(x);
  const at::Tensor& weight = T(w);
  at::Tensor h = in.scalar_type() == at::kFloat ? in : in.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean({-1}, true);
  at::Tensor normed = h * at::rsqrt(variance + static_cast<double>(eps));
  if (in.scalar_type() != at::kFloat) {
    normed = normed.to(in.scalar_type());
  }
  return wrap(weight * normed);
  FUSED_END
}

// x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) over the last axis (transformers' RoPE)
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nRope(JNIEnv* env, jclass, jlong x, jlong cos, jlong sin) {
  FUSED_BEGIN
  const at::Tensor& in = T(x);
  int64_t half = in.size(-1) / 2;
  at::Tensor x1 = in.narrow(-1, 0, half);
  at::Tensor x2 = in.narrow(-1, half, half);
  at::Tensor rotated = at::cat({x2.neg(), x1}, -1);
  return wrap(at::addcmul(in * T(cos), rotated, T(sin)));
  FUSED_END
}

// scaled_dot_product_attention of q [B, H, Q, D] over k, v [B, Hkv, K, D] (grouped-query when Hkv < H) with an
// optional additive mask broadcastable to [B, H, Q, K]; returns the context [B, Q, H * D].
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nAttention(JNIEnv* env, jclass, jlong q, jlong k, jlong v,
                                                                    jlong mask, jdouble scale, jboolean causal) {
  FUSED_BEGIN
  const at::Tensor& query = T(q);
  std::optional<at::Tensor> m;
  if (mask != 0) {
    m = T(mask);
  }
  bool gqa = query.size(1) != T(k).size(1);
  at::Tensor ctx = at::scaled_dot_product_attention(query, T(k), T(v), m, 0.0, causal == JNI_TRUE,
                                                    static_cast<double>(scale), gqa);
  return wrap(ctx.transpose(1, 2).reshape({query.size(0), query.size(2), -1}));
  FUSED_END
}

// The additive causal mask [B|1, 1, Q, K] (K = past + Q) with optional key padding keyMask [B, K]: 0 where a query
// may attend, `min` elsewhere (Attention.causalMask's definition, built in one call).
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nCausalMask(JNIEnv* env, jclass, jlong keyMask, jlong batch,
                                                                     jlong queryLen, jlong pastLen, jint deviceType,
                                                                     jint deviceId, jint dtype, jdouble min) {
  FUSED_BEGIN
  at::Device dev = deviceType == 1 ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(deviceId)) : at::Device(at::kCPU);
  at::ScalarType st = dtype == 1 ? at::kHalf : dtype == 2 ? at::kBFloat16 : dtype == 3 ? at::kDouble : at::kFloat;
  int64_t k = pastLen + queryLen;
  at::TensorOptions lo = at::TensorOptions().device(dev).dtype(at::kLong);
  at::Tensor allowed = at::arange(k, lo).le(at::arange(pastLen, k, lo).view({queryLen, 1})).view({1, 1, queryLen, k});
  if (keyMask != 0) {
    allowed = allowed.logical_and(T(keyMask).to(at::kBool).view({batch, 1, 1, k}));
  }
  at::Tensor out = at::zeros(allowed.sizes(), at::TensorOptions().device(dev).dtype(st));
  return wrap(out.masked_fill_(allowed.logical_not(), min));
  FUSED_END
}

// Causal-LM loss: labels [B, T] move left by one with -100 appended (transformers' ForCausalLMLoss), then the
// mean cross-entropy of logits [B, T, V] over the labels that are not -100 (0 when none), as nCrossEntropy.
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nCausalLmLoss(JNIEnv* env, jclass, jlong logits, jlong labels) {
  FUSED_BEGIN
  const at::Tensor& lg = T(logits);
  const at::Tensor& lab = T(labels);
  int64_t b = lab.size(0), t = lab.size(1);
  at::Tensor target = at::cat({lab.narrow(1, 1, t - 1), at::full({b, 1}, -100, lab.options())}, 1).view({-1});
  at::Tensor x = (lg.scalar_type() == at::kFloat || lg.scalar_type() == at::kDouble ? lg : lg.to(at::kFloat)).view({b * t, -1});
  at::Tensor sum = at::cross_entropy_loss(x, target, std::nullopt, at::Reduction::Sum, -100, 0.0);
  at::Tensor count = target.ne(-100).sum().clamp_min(1).to(sum.scalar_type());
  return wrap(sum / count);
  FUSED_END
}

// Mean cross-entropy over the labels that are not -100 (0 with a zero gradient when all are): logits [N, C],
// labels [N] int64. In fp32 for fp16/bf16 logits (as transformers), the cast kept on the gradient path.
JNIEXPORT jlong JNICALL Java_io_github_peft4j_nn_FusedOps_nCrossEntropy(JNIEnv* env, jclass, jlong logits, jlong labels) {
  FUSED_BEGIN
  const at::Tensor& lg = T(logits);
  const at::Tensor& target = T(labels);
  at::Tensor x = lg.scalar_type() == at::kFloat || lg.scalar_type() == at::kDouble ? lg : lg.to(at::kFloat);
  at::Tensor sum = at::cross_entropy_loss(x, target, std::nullopt, at::Reduction::Sum, -100, 0.0);
  at::Tensor count = target.ne(-100).sum().clamp_min(1).to(sum.scalar_type());
  return wrap(sum / count);
  FUSED_END
}

// One AdamW step on one parameter, in place (ATen's _fused_adamw_, torch.optim.AdamW(fused=True)): p *= 1 - lr*wd;
// m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps). The caller has gradient
// recording off.
JNIEXPORT void JNICALL Java_io_github_peft4j_nn_FusedOps_nAdamW(JNIEnv* env, jclass, jlong p, jlong g, jlong m,
                                                               jlong v, jdouble lr, jdouble beta1, jdouble beta2,
                                                               jdouble wd, jdouble eps, jlong step) {
  try {
    at::Tensor param = T(p);
    at::Tensor steps = at::full({}, static_cast<double>(step), param.options().dtype(at::kFloat));
    at::_fused_adamw_({param}, {T(g)}, {T(m)}, {T(v)}, {}, {steps}, lr, beta1, beta2, wd, eps, false, false);
  } catch (const c10::Error& e) {
    throwEngine(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throwEngine(env, e.what());
  }
}

}  // extern "C"
