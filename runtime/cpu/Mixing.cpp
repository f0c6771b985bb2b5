//===- Mixing.cpp - Linear, spectral and structured token mixing ----------===//
//
// Linear mixing and the Matmul algorithms are two GEMM stages: one tall
// product over all batch*seq rows on the hidden side, then one [seq,seq]
// product per example. The FFT algorithms run one 2-D real FFTW transform per
// example, in parallel over the batch, with plans made once per object.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"

#include <fftw3.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

//===----------------------------------------------------------------------===//
// FFTW helpers
//===----------------------------------------------------------------------===//

/// FFTW's planner (and plan destruction) is not thread-safe; executing plans
/// is. Every planner call takes this lock.
std::mutex &fftwPlannerMutex() {
  static std::mutex mutex;
  return mutex;
}

struct FftwFree {
  void operator()(void *p) const { fftwf_free(p); }
};

/// A SIMD-aligned FFTW array.
template <typename T> using FftwArray = std::unique_ptr<T[], FftwFree>;

template <typename T> FftwArray<T> allocateFftw(int64_t count) {
  void *p = fftwf_malloc(sizeof(T) * std::max<int64_t>(count, 1));
  if (!p)
    throw std::bad_alloc();
  return FftwArray<T>(static_cast<T *>(p));
}

/// Owns one plan; destruction takes the planner lock.
class FftwPlan {
public:
  FftwPlan() = default;
  FftwPlan(const FftwPlan &) = delete;
  FftwPlan &operator=(const FftwPlan &) = delete;
  ~FftwPlan() {
    if (!plan)
      return;
    std::lock_guard<std::mutex> lock(fftwPlannerMutex());
    fftwf_destroy_plan(plan);
  }

  /// Plans with the lock held; `make` calls one fftwf_plan_* function.
  template <typename Make> void create(Make &&make, const std::string &what) {
    {
      std::lock_guard<std::mutex> lock(fftwPlannerMutex());
      plan = make();
    }
    if (!plan)
      throw KernelError{"fftw could not plan the " + what};
  }

  fftwf_plan get() const { return plan; }

private:
  fftwf_plan plan = nullptr;
};

/// Planner effort: estimated plans. Measured plans run 15-40% faster on
/// model-sized grids, but the algorithm they pick can change from process to
/// process and with it the last bits of the result; the runtime promises the
/// same numbers for the same inputs in every run.
constexpr unsigned kPlanFlags = FFTW_ESTIMATE;

std::string shapeName(int64_t rows, int64_t cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

/// Per-thread scratch of a 2-D real transform of [rows, cols]: the real
/// signal and its half spectrum [rows, cols/2 + 1].
struct TransformBuffers {
  FftwArray<float> real;
  FftwArray<fftwf_complex> spectrum;
};

/// Grows `buffers` to one entry per thread the next parallel region may use.
void reserveThreadBuffers(std::vector<TransformBuffers> &buffers,
                          int64_t realSize, int64_t spectrumSize) {
  int64_t threads = omp_get_max_threads();
  while (static_cast<int64_t>(buffers.size()) < threads)
    buffers.push_back({allocateFftw<float>(realSize),
                       allocateFftw<fftwf_complex>(spectrumSize)});
}

//===----------------------------------------------------------------------===//
// Two-sided GEMM mixing
//===----------------------------------------------------------------------===//

/// Y[b] = left * X[b] * op(right) for left [seq,seq] and right [d,d]
/// (transposed if `transposeRight`): one tall product over all rows into
/// scratch, then one product per example.
void twoSidedMix(const float *x, const float *left, const float *right,
                 bool transposeRight, float *y, float *scratch, int64_t batch,
                 int64_t seq, int64_t d) {
  detail::GemmArgs hidden;
  hidden.transB = transposeRight;
  hidden.m = batch * seq;
  hidden.n = d;
  hidden.k = d;
  hidden.a = x;
  hidden.lda = d;
  hidden.b = right;
  hidden.ldb = d;
  hidden.c = scratch;
  hidden.ldc = d;
  detail::parallelGemm(hidden);

  detail::GemmArgs tokens;
  tokens.m = seq;
  tokens.n = d;
  tokens.k = seq;
  tokens.a = left;
  tokens.lda = seq;
  tokens.b = scratch;
  tokens.ldb = d;
  tokens.c = y;
  tokens.ldc = d;
  detail::parallelGemm(tokens, batch, 0, seq * d, seq * d);
}

/// The angle 2*pi*j*k/n of the DFT matrices; the product is reduced
/// mod n in integers first so large indices keep full accuracy.
double dftAngle(int64_t j, int64_t k, int64_t n) {
  return 2.0 * M_PI * static_cast<double>((j * k) % n) / static_cast<double>(n);
}

} // namespace

void linearMix(const float *x, const float *ws, const float *wh, float *y,
               float *scratch, int64_t batch, int64_t seq, int64_t d) {
  twoSidedMix(x, ws, wh, /*transposeRight=*/false, y, scratch, batch, seq, d);
}

/// Rows of W_s per tile of the bf16 sequence product.
constexpr int64_t kMixRowTile = 256;

struct LinearMixBf16::Impl {
  int64_t batch, seq, d;
  bool yBf16;
  int64_t rowTile, rowTiles;
  /// X * W_h over all rows, into bf16.
  DenseBf16 hidden;
  /// W_s times one example's rows: a full row tile, and the last tile when
  /// it is shorter.
  detail::Bf16Matmul full;
  std::optional<detail::Bf16Matmul> last;

  /// Where the bf16 W_s starts in the packed bytes (64-byte aligned).
  int64_t sequenceOffset() const {
    return (hidden.packedBytes() + 63) / 64 * 64;
  }
};

namespace {

detail::Bf16Matmul sequenceProduct(int64_t rows, int64_t seq, int64_t d,
                                   bool yBf16) {
  detail::Bf16MatmulShape shape;
  shape.m = rows;
  shape.k = seq;
  shape.n = d;
  shape.lda = seq;
  shape.ldb = d;
  shape.ldc = d;
  shape.cBf16 = yBf16;
  return detail::Bf16Matmul(shape);
}

} // namespace

LinearMixBf16::LinearMixBf16(int64_t batch, int64_t seq, int64_t d, bool xBf16,
                             bool yBf16) {
  int64_t rowTile = std::min(std::max<int64_t>(seq, 1), kMixRowTile);
  int64_t rowTiles = (seq + rowTile - 1) / rowTile;
  int64_t lastRows = seq - (rowTiles - 1) * rowTile;
  DenseBf16 hidden(batch * seq, d, d, /*transposeW=*/false, xBf16,
                   /*yBf16=*/true, /*bias=*/false, Activation::None);
  std::optional<detail::Bf16Matmul> last;
  if (lastRows != rowTile && lastRows > 0)
    last.emplace(sequenceProduct(lastRows, seq, d, yBf16));
  impl.reset(
      new Impl{batch, seq, d, yBf16, rowTile, rowTiles, std::move(hidden),
               sequenceProduct(rowTile, seq, d, yBf16), std::move(last)});
}

LinearMixBf16::~LinearMixBf16() = default;
LinearMixBf16::LinearMixBf16(LinearMixBf16 &&) noexcept = default;

int64_t LinearMixBf16::packedBytes() const {
  return impl->sequenceOffset() +
         impl->seq * impl->seq * static_cast<int64_t>(sizeof(uint16_t));
}

void LinearMixBf16::pack(const float *ws, const float *wh, void *packed) const {
  impl->hidden.pack(wh, packed);
  toBf16(ws,
         reinterpret_cast<uint16_t *>(static_cast<char *>(packed) +
                                      impl->sequenceOffset()),
         impl->seq * impl->seq);
}

int64_t LinearMixBf16::scratchWords() const {
  return impl->batch * impl->seq * impl->d;
}

void LinearMixBf16::run(const void *x, const void *packed, void *y,
                        uint16_t *scratch) const {
  const Impl &p = *impl;
  if (p.batch == 0 || p.seq == 0 || p.d == 0)
    return;
  p.hidden.run(x, packed, nullptr, scratch);
  const uint16_t *ws = reinterpret_cast<const uint16_t *>(
      static_cast<const char *>(packed) + p.sequenceOffset());
  size_t yElement = p.yBf16 ? sizeof(uint16_t) : sizeof(float);
  int64_t tiles = p.batch * p.rowTiles;
  bool parallel = tiles > 1 && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t tile = 0; tile < tiles; ++tile)
    errors.run([&] {
      int64_t b = tile / p.rowTiles;
      int64_t row0 = tile % p.rowTiles * p.rowTile;
      int64_t rows = std::min(p.rowTile, p.seq - row0);
      const detail::Bf16Matmul &product = rows == p.rowTile ? p.full : *p.last;
      product.run(ws + row0 * p.seq, scratch + b * p.seq * p.d,
                  static_cast<char *>(y) + (b * p.seq + row0) * p.d * yElement);
    });
  errors.rethrow();
}

//===----------------------------------------------------------------------===//
// SpectralMix
//===----------------------------------------------------------------------===//

struct SpectralMix::Impl {
  int64_t batch, seq, d;
  bool hartley;
  MixAlgorithm algorithm;

  // Fft: one 2-D r2c plan for a single [seq, d] example.
  FftwPlan forward;
  std::vector<TransformBuffers> buffers;

  // Matmul: Y[b] = left1 * P1[b] + left2 * P2[b] with [P1 | P2] = X * hidden;
  // Fourier: hidden = [C_d | S_d], left1 = C_s, left2 = -S_s;
  // Hartley: hidden = [C_d + S_d | C_d - S_d], left1 = C_s, left2 = S_s.
  std::vector<float> hidden, left1, left2, products;

  Impl(int64_t batch, int64_t seq, int64_t d, bool hartley,
       MixAlgorithm algorithm);
  void runFft(const float *x, float *y);
  void runMatmul(const float *x, float *y);
};

SpectralMix::Impl::Impl(int64_t batch, int64_t seq, int64_t d, bool hartley,
                        MixAlgorithm algorithm)
    : batch(batch), seq(seq), d(d), hartley(hartley), algorithm(algorithm) {
  int64_t half = d / 2 + 1;
  if (algorithm == MixAlgorithm::Fft) {
    reserveThreadBuffers(buffers, seq * d, seq * half);
    forward.create(
        [&] {
          return fftwf_plan_dft_r2c_2d(seq, d, buffers[0].real.get(),
                                       buffers[0].spectrum.get(), kPlanFlags);
        },
        "2-D real transform of " + shapeName(seq, d));
    return;
  }
  hidden.resize(d * 2 * d);
  for (int64_t j = 0; j < d; ++j)
    for (int64_t k = 0; k < d; ++k) {
      double angle = dftAngle(j, k, d);
      double c = std::cos(angle), s = std::sin(angle);
      hidden[j * 2 * d + k] = static_cast<float>(hartley ? c + s : c);
      hidden[j * 2 * d + d + k] = static_cast<float>(hartley ? c - s : s);
    }
  left1.resize(seq * seq);
  left2.resize(seq * seq);
  for (int64_t i = 0; i < seq; ++i)
    for (int64_t n = 0; n < seq; ++n) {
      double angle = dftAngle(i, n, seq);
      left1[i * seq + n] = static_cast<float>(std::cos(angle));
      left2[i * seq + n] =
          static_cast<float>(hartley ? std::sin(angle) : -std::sin(angle));
    }
  products.resize(batch * seq * 2 * d);
}

SpectralMix::SpectralMix(int64_t batch, int64_t seq, int64_t d, bool hartley,
                         MixAlgorithm algorithm)
    : impl(std::make_unique<Impl>(batch, seq, d, hartley, algorithm)) {}

SpectralMix::~SpectralMix() = default;

void SpectralMix::run(const float *x, float *y) {
  if (impl->algorithm == MixAlgorithm::Fft)
    impl->runFft(x, y);
  else
    impl->runMatmul(x, y);
}

void SpectralMix::Impl::runFft(const float *x, float *y) {
  int64_t half = d / 2 + 1;
  reserveThreadBuffers(buffers, seq * d, seq * half);
  bool parallel = batch > 1 && seq * d >= 4096 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < batch; ++b) {
    TransformBuffers &buffer = buffers[omp_get_thread_num()];
    float *in = const_cast<float *>(x + b * seq * d);
    // A plan runs on new arrays only with the alignment it was planned for.
    if (fftwf_alignment_of(in) != 0) {
      std::memcpy(buffer.real.get(), in, seq * d * sizeof(float));
      in = buffer.real.get();
    }
    fftwf_execute_dft_r2c(forward.get(), in, buffer.spectrum.get());
    // Columns above d/2 come from the Hermitian mirror:
    // F[i,k] = conj(Z[(seq-i) % seq, d-k]).
    float *out = y + b * seq * d;
    const fftwf_complex *z = buffer.spectrum.get();
    float imagSign = hartley ? -1.0f : 0.0f;
    for (int64_t i = 0; i < seq; ++i) {
      const fftwf_complex *row = z + i * half;
      const fftwf_complex *mirror = z + ((seq - i) % seq) * half;
      float *outRow = out + i * d;
      for (int64_t k = 0; k < half; ++k)
        outRow[k] = row[k][0] + imagSign * row[k][1];
      for (int64_t k = half; k < d; ++k)
        outRow[k] = mirror[d - k][0] - imagSign * mirror[d - k][1];
    }
  }
}

void SpectralMix::Impl::runMatmul(const float *x, float *y) {
  detail::GemmArgs first;
  first.m = batch * seq;
  first.n = 2 * d;
  first.k = d;
  first.a = x;
  first.lda = d;
  first.b = hidden.data();
  first.ldb = 2 * d;
  first.c = products.data();
  first.ldc = 2 * d;
  detail::parallelGemm(first);

  detail::GemmArgs second;
  second.m = seq;
  second.n = d;
  second.k = seq;
  second.a = left1.data();
  second.lda = seq;
  second.b = products.data();
  second.ldb = 2 * d;
  second.c = y;
  second.ldc = d;
  // Each tile of left1 * P1 gets its left2 * P2 term while it is in cache.
  detail::parallelGemm(
      second, batch, 0, seq * 2 * d, seq * d,
      [&](int64_t b, int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
        detail::GemmArgs rest = second;
        rest.m = rows;
        rest.n = cols;
        rest.a = left2.data() + row0 * seq;
        rest.b = products.data() + b * seq * 2 * d + d + col0;
        rest.c = y + b * seq * d + row0 * d + col0;
        rest.beta = 1.0f;
        detail::gemm(rest);
      });
}

//===----------------------------------------------------------------------===//
// StructuredMix
//===----------------------------------------------------------------------===//

struct StructuredMix::Impl {
  int64_t batch, seq, d;
  bool toeplitz;
  MixAlgorithm algorithm;

  // Fft: 2-D circular convolution on a [rows, cols] grid ([2seq, 2d] with the
  // zero padding of Toeplitz mixing) with the separable kernel cs (x) ch.
  int64_t rows = 0, cols = 0;
  FftwPlan forward, inverse, seqKernel, hiddenKernel;
  std::vector<TransformBuffers> buffers;
  FftwArray<float> seqSignal, hiddenSignal;
  FftwArray<fftwf_complex> seqHalf, hiddenHalf;
  std::vector<float> seqSpectrum; // full spectrum of cs, [rows][re, im]

  // Matmul: explicit matrices.
  std::vector<float> left, right, scratch;

  Impl(int64_t batch, int64_t seq, int64_t d, bool toeplitz,
       MixAlgorithm algorithm);
  void runFft(const float *x, const float *vs, const float *vh, float *y);
  void runMatmul(const float *x, const float *vs, const float *vh, float *y);
  /// The length-n circulant vector of a mixing kernel: the kernel itself for
  /// circulant mixing, its circulant embedding for Toeplitz mixing.
  void circulantVector(const float *v, int64_t n, float *out) const;
};

StructuredMix::Impl::Impl(int64_t batch, int64_t seq, int64_t d, bool toeplitz,
                          MixAlgorithm algorithm)
    : batch(batch), seq(seq), d(d), toeplitz(toeplitz), algorithm(algorithm) {
  if (algorithm == MixAlgorithm::Matmul) {
    left.resize(seq * seq);
    right.resize(d * d);
    scratch.resize(batch * seq * d);
    return;
  }
  rows = toeplitz ? 2 * seq : seq;
  cols = toeplitz ? 2 * d : d;
  int64_t half = cols / 2 + 1;
  reserveThreadBuffers(buffers, rows * cols, rows * half);
  seqSignal = allocateFftw<float>(rows);
  hiddenSignal = allocateFftw<float>(cols);
  seqHalf = allocateFftw<fftwf_complex>(rows / 2 + 1);
  hiddenHalf = allocateFftw<fftwf_complex>(half);
  seqSpectrum.resize(2 * rows);
  std::string grid = shapeName(rows, cols);
  TransformBuffers &b0 = buffers[0];
  forward.create(
      [&] {
        return fftwf_plan_dft_r2c_2d(rows, cols, b0.real.get(),
                                     b0.spectrum.get(), kPlanFlags);
      },
      "2-D real transform of " + grid);
  inverse.create(
      [&] {
        return fftwf_plan_dft_c2r_2d(rows, cols, b0.spectrum.get(),
                                     b0.real.get(), kPlanFlags);
      },
      "2-D inverse real transform of " + grid);
  seqKernel.create(
      [&] {
        return fftwf_plan_dft_r2c_1d(rows, seqSignal.get(), seqHalf.get(),
                                     FFTW_ESTIMATE);
      },
      "real transform of length " + std::to_string(rows));
  hiddenKernel.create(
      [&] {
        return fftwf_plan_dft_r2c_1d(cols, hiddenSignal.get(), hiddenHalf.get(),
                                     FFTW_ESTIMATE);
      },
      "real transform of length " + std::to_string(cols));
}

StructuredMix::StructuredMix(int64_t batch, int64_t seq, int64_t d,
                             bool toeplitz, MixAlgorithm algorithm)
    : impl(std::make_unique<Impl>(batch, seq, d, toeplitz, algorithm)) {}

StructuredMix::~StructuredMix() = default;

void StructuredMix::run(const float *x, const float *vs, const float *vh,
                        float *y) {
  if (impl->algorithm == MixAlgorithm::Fft)
    impl->runFft(x, vs, vh, y);
  else
    impl->runMatmul(x, vs, vh, y);
}

void StructuredMix::Impl::circulantVector(const float *v, int64_t n,
                                          float *out) const {
  if (!toeplitz) {
    std::memcpy(out, v, n * sizeof(float));
    return;
  }
  // Toeplitz t of length 2m-1 embeds in a circulant of length n = 2m:
  // [t[m-1], ..., t[0], t[m-1], t[2m-2], ..., t[m]].
  int64_t m = n / 2;
  for (int64_t i = 0; i < m; ++i)
    out[i] = v[m - 1 - i];
  out[m] = v[m - 1];
  for (int64_t j = 0; j < m - 1; ++j)
    out[m + 1 + j] = v[2 * m - 2 - j];
}

void StructuredMix::Impl::runFft(const float *x, const float *vs,
                                 const float *vh, float *y) {
  int64_t half = cols / 2 + 1;
  reserveThreadBuffers(buffers, rows * cols, rows * half);

  // Spectra of the two kernels; the inverse transform's 1/(rows*cols) is
  // folded into the hidden one.
  circulantVector(vs, rows, seqSignal.get());
  fftwf_execute(seqKernel.get());
  for (int64_t i = 0; i < rows; ++i) {
    bool direct = i <= rows / 2;
    const fftwf_complex &z = seqHalf[direct ? i : rows - i];
    seqSpectrum[2 * i] = z[0];
    seqSpectrum[2 * i + 1] = direct ? z[1] : -z[1];
  }
  circulantVector(vh, cols, hiddenSignal.get());
  fftwf_execute(hiddenKernel.get());
  float norm = 1.0f / static_cast<float>(rows * cols);
  for (int64_t k = 0; k < half; ++k) {
    hiddenHalf[k][0] *= norm;
    hiddenHalf[k][1] *= norm;
  }

  bool parallel = batch > 1 && rows * cols >= 4096 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < batch; ++b) {
    TransformBuffers &buffer = buffers[omp_get_thread_num()];
    float *real = buffer.real.get();
    fftwf_complex *z = buffer.spectrum.get();
    const float *in = x + b * seq * d;
    if (toeplitz)
      std::memset(real, 0, rows * cols * sizeof(float));
    for (int64_t i = 0; i < seq; ++i)
      std::memcpy(real + i * cols, in + i * d, d * sizeof(float));
    fftwf_execute_dft_r2c(forward.get(), real, z);
    for (int64_t i = 0; i < rows; ++i) {
      float sr = seqSpectrum[2 * i], si = seqSpectrum[2 * i + 1];
      fftwf_complex *row = z + i * half;
      for (int64_t k = 0; k < half; ++k) {
        float hr = hiddenHalf[k][0], hi = hiddenHalf[k][1];
        float wr = sr * hr - si * hi, wi = sr * hi + si * hr;
        float zr = row[k][0], zi = row[k][1];
        row[k][0] = zr * wr - zi * wi;
        row[k][1] = zr * wi + zi * wr;
      }
    }
    fftwf_execute_dft_c2r(inverse.get(), z, real);
    float *out = y + b * seq * d;
    for (int64_t i = 0; i < seq; ++i)
      std::memcpy(out + i * d, real + i * cols, d * sizeof(float));
  }
}

void StructuredMix::Impl::runMatmul(const float *x, const float *vs,
                                    const float *vh, float *y) {
  if (toeplitz) {
    toeplitzMatrix(vs, left.data(), seq);
    toeplitzMatrix(vh, right.data(), d);
  } else {
    circulantMatrix(vs, left.data(), seq);
    circulantMatrix(vh, right.data(), d);
  }
  twoSidedMix(x, left.data(), right.data(), /*transposeRight=*/true, y,
              scratch.data(), batch, seq, d);
}

void circulantMatrix(const float *v, float *out, int64_t n) {
  for (int64_t r = 0; r < n; ++r) {
    float *row = out + r * n;
    for (int64_t c = 0; c <= r; ++c)
      row[c] = v[r - c];
    for (int64_t c = r + 1; c < n; ++c)
      row[c] = v[r - c + n];
  }
}

void toeplitzMatrix(const float *t, float *out, int64_t n) {
  // Row r is the contiguous window t[n-1-r .. 2n-2-r].
  for (int64_t r = 0; r < n; ++r)
    std::memcpy(out + r * n, t + (n - 1 - r), n * sizeof(float));
}

} // namespace mixer::cpu
