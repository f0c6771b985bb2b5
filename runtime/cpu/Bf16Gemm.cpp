//===- Bf16Gemm.cpp - bf16 products through oneDNN's matmul ---------------===//
//
// The bf16 product of Gemm.h and the conversions around it. Every product is
// a oneDNN matmul primitive built once for fixed sizes; its weights are
// reordered from fp32 into the primitive's packed bf16 layout once, when the
// parameters are bound, and its bias and activation run as the primitive's
// post-ops on the fp32 accumulators.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/support/Bf16Router.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <string>
#include <unordered_map>
#include <vector>

namespace mixer::cpu {

namespace {

using Dims = dnnl::memory::dims;
using DataType = dnnl::memory::data_type;

const dnnl::engine &cpuEngine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

/// Runs `body` with oneDNN held to the calling thread, as detail::gemm does:
/// the kernels parallelise over tiles themselves.
template <typename Body> void onOneThread(Body &&body) {
  int savedThreads = omp_get_max_threads();
  if (savedThreads != 1)
    omp_set_num_threads(1);
  try {
    body();
  } catch (const dnnl::error &error) {
    if (savedThreads != 1)
      omp_set_num_threads(savedThreads);
    throw KernelError{std::string("oneDNN bf16 matmul: ") + error.what()};
  }
  if (savedThreads != 1)
    omp_set_num_threads(savedThreads);
}

dnnl::algorithm eltwiseOf(Activation act) {
  switch (act) {
  case Activation::Gelu:
    return dnnl::algorithm::eltwise_gelu_tanh;
  case Activation::GeluErf:
    return dnnl::algorithm::eltwise_gelu_erf;
  case Activation::Tanh:
    return dnnl::algorithm::eltwise_tanh;
  case Activation::Relu:
    return dnnl::algorithm::eltwise_relu;
  case Activation::None:
    break;
  }
  return dnnl::algorithm::undef;
}

/// Tiles run the same primitive on several threads at once, which oneDNN's
/// shared scratchpad does not allow: each thread brings its own.
dnnl::primitive_attr userScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

/// Adds the calling thread's scratchpad, grown to `desc`, to `args`.
void addScratchpad(std::unordered_map<int, dnnl::memory> &args,
                   const dnnl::memory::desc &desc) {
  thread_local std::vector<char> scratchpad;
  if (scratchpad.size() < desc.get_size())
    scratchpad.resize(desc.get_size());
  args.emplace(DNNL_ARG_SCRATCHPAD,
               dnnl::memory(desc, cpuEngine(), scratchpad.data()));
}

} // namespace

bool hasBf16Products() {
  return dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core_bf16;
}

void toBf16(const float *x, uint16_t *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<uint16_t>(bf16::bitsOf(bf16::nearest(x[i])) >> 16);
}

namespace detail {

struct Bf16Product::Impl {
  int64_t m, k, n;
  dnnl::memory::desc a, weights, bias, c, scratchpad;
  dnnl::matmul matmul;
};

Bf16Product::Bf16Product(int64_t m, int64_t k, int64_t n, bool cBf16, bool bias,
                         Activation act, const Bf16Product *layout)
    : impl(std::make_unique<Impl>()) {
  Impl &p = *impl;
  p.m = m;
  p.k = k;
  p.n = n;
  onOneThread([&] {
    p.a = dnnl::memory::desc({m, k}, DataType::bf16, Dims{k, 1});
    p.weights = layout ? layout->impl->weights
                       : dnnl::memory::desc({k, n}, DataType::bf16,
                                            dnnl::memory::format_tag::any);
    p.c = dnnl::memory::desc({m, n}, cBf16 ? DataType::bf16 : DataType::f32,
                             Dims{n, 1});
    if (bias)
      p.bias = dnnl::memory::desc({1, n}, DataType::f32, Dims{n, 1});
    dnnl::primitive_attr attr = userScratchpad();
    if (act != Activation::None) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.0f, eltwiseOf(act), 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc desc(
        dnnl::matmul::desc(p.a, p.weights, p.bias, p.c), attr, cpuEngine());
    p.weights = desc.weights_desc();
    p.scratchpad = desc.scratchpad_desc();
    p.matmul = dnnl::matmul(desc);
  });
}

Bf16Product::~Bf16Product() = default;
Bf16Product::Bf16Product(Bf16Product &&) noexcept = default;

int64_t Bf16Product::packedBytes() const {
  return static_cast<int64_t>(impl->weights.get_size());
}

void Bf16Product::pack(const float *w, bool transposed, void *packed) const {
  const Impl &p = *impl;
  onOneThread([&] {
    dnnl::memory::desc plain({p.k, p.n}, DataType::f32,
                             transposed ? Dims{1, p.k} : Dims{p.n, 1});
    dnnl::memory from(plain, cpuEngine(), const_cast<float *>(w));
    dnnl::memory to(p.weights, cpuEngine(), packed);
    dnnl::stream stream(cpuEngine());
    dnnl::reorder(from, to).execute(stream, from, to);
    stream.wait();
  });
}

void Bf16Product::run(const uint16_t *a, const void *packed, const float *bias,
                      void *c) const {
  const Impl &p = *impl;
  onOneThread([&] {
    const dnnl::engine &engine = cpuEngine();
    dnnl::stream stream(engine);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory(p.a, engine, const_cast<uint16_t *>(a))},
        {DNNL_ARG_WEIGHTS,
         dnnl::memory(p.weights, engine, const_cast<void *>(packed))},
        {DNNL_ARG_DST, dnnl::memory(p.c, engine, c)}};
    addScratchpad(args, p.scratchpad);
    if (bias)
      args.emplace(DNNL_ARG_BIAS,
                   dnnl::memory(p.bias, engine, const_cast<float *>(bias)));
    p.matmul.execute(stream, args);
    stream.wait();
  });
}

struct Bf16Matmul::Impl {
  dnnl::memory::desc a, b, c, scratchpad;
  dnnl::matmul matmul;
};

Bf16Matmul::Bf16Matmul(const Bf16MatmulShape &shape)
    : impl(std::make_unique<Impl>()) {
  Impl &p = *impl;
  onOneThread([&] {
    p.a = dnnl::memory::desc({shape.m, shape.k}, DataType::bf16,
                             Dims{shape.lda, 1});
    p.b = dnnl::memory::desc({shape.k, shape.n}, DataType::bf16,
                             shape.transB ? Dims{1, shape.ldb}
                                          : Dims{shape.ldb, 1});
    p.c = dnnl::memory::desc({shape.m, shape.n},
                             shape.cBf16 ? DataType::bf16 : DataType::f32,
                             Dims{shape.ldc, 1});
    dnnl::primitive_attr attr = userScratchpad();
    if (shape.alpha != 1.0f)
      attr.set_output_scales(0, {shape.alpha});
    dnnl::matmul::primitive_desc desc(dnnl::matmul::desc(p.a, p.b, p.c), attr,
                                      cpuEngine());
    p.scratchpad = desc.scratchpad_desc();
    p.matmul = dnnl::matmul(desc);
  });
}

Bf16Matmul::~Bf16Matmul() = default;
Bf16Matmul::Bf16Matmul(Bf16Matmul &&) noexcept = default;

void Bf16Matmul::run(const uint16_t *a, const uint16_t *b, void *c) const {
  const Impl &p = *impl;
  onOneThread([&] {
    const dnnl::engine &engine = cpuEngine();
    dnnl::stream stream(engine);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory(p.a, engine, const_cast<uint16_t *>(a))},
        {DNNL_ARG_WEIGHTS,
         dnnl::memory(p.b, engine, const_cast<uint16_t *>(b))},
        {DNNL_ARG_DST, dnnl::memory(p.c, engine, c)}};
    addScratchpad(args, p.scratchpad);
    p.matmul.execute(stream, args);
    stream.wait();
  });
}

} // namespace detail
} // namespace mixer::cpu
