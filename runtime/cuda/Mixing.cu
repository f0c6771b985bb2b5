//===- Mixing.cu - Linear, spectral and structured token mixing -----------===//
//
// The two-sided products of linear and structured mixing (cuBLASLt through
// GemmContext), Fourier and Hartley mixing by a batched 2-D cuFFT transform or
// by real DFT matrices, circulant and Toeplitz mixing by a cuFFT convolution
// or by their dense matrices, and the structured gradient. The cuFFT plans and
// the DFT matrices are made once by prepare(), outside graph capture; the
// transforms themselves are captured like any other stream work. Everything
// runs in fp32; the small kernels here only move, expand and combine values,
// and the one reduction (the fold of a matrix gradient onto its kernel)
// sums each entry on one thread in a fixed order.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Common.cuh"
#include "runtime/cuda/Gemm.h"

#include <cufft.h>

#include <climits>
#include <initializer_list>
#include <string>
#include <vector>

namespace mixer::cuda {
namespace {

using namespace detail;

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

/// The cosine and sine of the DFT angle 2 pi j k / n, with j k reduced mod n
/// in integers first and sincospi in double so that large indices keep full
/// accuracy (the CPU's dftAngle).
__device__ __forceinline__ void dftCosSin(int64_t j, int64_t k, int64_t n,
                                          double &c, double &s) {
  sincospi(2.0 * static_cast<double>((j * k) % n) / static_cast<double>(n), &s,
           &c);
}

/// The matrices of the matmul spectral mixing: hidden [d, 2d] = [C_d | S_d]
/// (Hartley [C_d + S_d | C_d - S_d]), left1 = C_s and left2 = -S_s (Hartley
/// S_s), [seq, seq] each.
__global__ void __launch_bounds__(kBlockThreads)
    spectralMatricesKernel(float *hidden, float *left1, float *left2,
                           int64_t seq, int64_t d, bool hartley) {
  int64_t total = d * d + seq * seq;
  for (int64_t i = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kBlockThreads) {
    double c, s;
    if (i < d * d) {
      int64_t j = i / d, k = i % d;
      dftCosSin(j, k, d, c, s);
      hidden[j * 2 * d + k] = static_cast<float>(hartley ? c + s : c);
      hidden[j * 2 * d + d + k] = static_cast<float>(hartley ? c - s : s);
    } else {
      int64_t t = i - d * d;
      dftCosSin(t / seq, t % seq, seq, c, s);
      left1[t] = static_cast<float>(c);
      left2[t] = static_cast<float>(hartley ? s : -s);
    }
  }
}

/// y [batch, seq, d] from the half spectra z [batch, seq, d/2 + 1] of the
/// 2-D real transform: Re + imagSign * Im of F = Z for k <= d/2, and of the
/// Hermitian mirror F[i,k] = conj(Z[(seq - i) % seq, d - k]) above.
__global__ void __launch_bounds__(kBlockThreads)
    spectralOutputKernel(const float2 *z, float *y, int64_t batch, int64_t seq,
                         int64_t d, float imagSign) {
  int64_t half = d / 2 + 1, total = batch * seq * d;
  for (int64_t e = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * kBlockThreads) {
    int64_t k = e % d, row = e / d, i = row % seq, b = row / seq;
    if (k < half) {
      float2 v = z[row * half + k];
      y[e] = v.x + imagSign * v.y;
    } else {
      float2 v = z[(b * seq + (seq - i) % seq) * half + (d - k)];
      y[e] = v.x - imagSign * v.y;
    }
  }
}

/// The circulant vector of length `length` of a mixing kernel over n
/// positions: v itself for circulant mixing (length n); for Toeplitz mixing
/// (t of length 2n - 1, length >= 2n - 1) the vector c with Circ(c)[r,c'] =
/// t[(n - 1) + c' - r] for |r - c'| < n: c[m] = t[n - 1 - m] for m < n,
/// c[length - m] = t[n - 1 + m] for 0 < m < n, zero between.
__global__ void __launch_bounds__(kBlockThreads)
    circulantVectorKernel(const float *v, float *out, int64_t n, int64_t length,
                          bool toeplitz) {
  for (int64_t m = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x;
       m < length; m += int64_t(gridDim.x) * kBlockThreads) {
    if (!toeplitz)
      out[m] = v[m];
    else if (m < n)
      out[m] = v[n - 1 - m];
    else if (m > length - n)
      out[m] = v[n - 1 + (length - m)];
    else
      out[m] = 0.0f;
  }
}

/// Copies x [batch, seq, d] into the top-left corner of each example's
/// [rows, cols] grid of `grid`, zeros elsewhere.
__global__ void __launch_bounds__(kBlockThreads)
    mixPadKernel(const float *x, float *grid, int64_t batch, int64_t seq,
                 int64_t d, int64_t rows, int64_t cols) {
  int64_t total = batch * rows * cols;
  for (int64_t e = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * kBlockThreads) {
    int64_t j = e % cols, row = e / cols, i = row % rows, b = row / rows;
    grid[e] = i < seq && j < d ? x[(b * seq + i) * d + j] : 0.0f;
  }
}

/// The inverse of mixPadKernel: y [batch, seq, d] from the grids' corners.
__global__ void __launch_bounds__(kBlockThreads)
    mixCropKernel(const float *grid, float *y, int64_t batch, int64_t seq,
                  int64_t d, int64_t rows, int64_t cols) {
  int64_t total = batch * seq * d;
  for (int64_t e = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * kBlockThreads) {
    int64_t j = e % d, row = e / d, i = row % seq, b = row / seq;
    y[e] = grid[(b * rows + i) * cols + j];
  }
}

/// z [batch, rows, half] *= S[i] * (H[k] * norm): the half spectra of the
/// grid times the separable kernel's spectrum, S the full spectrum of the
/// sequence kernel from its half seqHalf (S[i] = conj(seqHalf[rows - i])
/// above rows/2) and H the hidden kernel's half spectrum; norm is the
/// inverse transform's 1 / (rows cols).
__global__ void __launch_bounds__(kBlockThreads)
    spectrumProductKernel(float2 *z, const float2 *seqHalf,
                          const float2 *hiddenHalf, int64_t batch, int64_t rows,
                          int64_t half, float norm) {
  int64_t total = batch * rows * half;
  for (int64_t e = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * kBlockThreads) {
    int64_t k = e % half, i = (e / half) % rows;
    bool direct = i <= rows / 2;
    float2 s = seqHalf[direct ? i : rows - i];
    if (!direct)
      s.y = -s.y;
    float2 h = hiddenHalf[k];
    h.x *= norm;
    h.y *= norm;
    float wr = s.x * h.x - s.y * h.y, wi = s.x * h.y + s.y * h.x;
    float2 v = z[e];
    z[e] = make_float2(v.x * wr - v.y * wi, v.x * wi + v.y * wr);
  }
}

/// The dense [n, n] matrix of a mixing kernel: Circ(v)[r,c] = v[(r - c) mod
/// n], or Toep(t)[r,c] = t[(n - 1) + c - r].
__global__ void __launch_bounds__(kBlockThreads)
    structuredMatrixKernel(const float *v, float *out, int64_t n,
                           bool toeplitz) {
  for (int64_t e = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; e < n * n;
       e += int64_t(gridDim.x) * kBlockThreads) {
    int64_t r = e / n, c = e % n;
    out[e] = toeplitz ? v[(n - 1) + c - r] : v[(r - c + n) % n];
  }
}

/// The gradient of a kernel vector from that of its dense [n, n] matrix:
/// entry j sums, in row order in double, the matrix entries built from it
/// (circulant: (r - c) mod n == j; Toeplitz: c - r == j - (n - 1)), as the
/// CPU's foldOntoKernel.
__global__ void __launch_bounds__(kBlockThreads)
    foldDiagonalsKernel(const float *grad, float *kernel, int64_t n,
                        bool toeplitz) {
  int64_t length = toeplitz ? 2 * n - 1 : n;
  for (int64_t j = int64_t(blockIdx.x) * kBlockThreads + threadIdx.x;
       j < length; j += int64_t(gridDim.x) * kBlockThreads) {
    double sum = 0.0;
    if (toeplitz) {
      int64_t shift = j - (n - 1);
      for (int64_t r = shift < 0 ? -shift : 0; r < n && r + shift < n; ++r)
        sum += grad[r * n + r + shift];
    } else {
      for (int64_t r = 0; r < n; ++r)
        sum += grad[r * n + (r - j + n) % n];
    }
    kernel[j] = static_cast<float>(sum);
  }
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

/// The dense sequence [seq, seq] and hidden [d, d] matrices of the mixing
/// kernels vs and vh, at `left` and `right`.
Status expandKernels(const char *kernel, const float *vs, const float *vh,
                     float *left, float *right, int64_t seq, int64_t d,
                     bool toeplitz, cudaStream_t stream) {
  structuredMatrixKernel<<<gridFor(seq * seq), kBlockThreads, 0, stream>>>(
      vs, left, seq, toeplitz);
  structuredMatrixKernel<<<gridFor(d * d), kBlockThreads, 0, stream>>>(
      vh, right, d, toeplitz);
  return launchStatus(kernel);
}

/// Fails unless every size is positive.
Status requirePositive(const char *kernel, int64_t batch, int64_t seq,
                       int64_t d) {
  if (batch > 0 && seq > 0 && d > 0)
    return Status::success();
  return Status::error(std::string(kernel) + ": shape [" +
                       std::to_string(batch) + ", " + std::to_string(seq) +
                       ", " + std::to_string(d) + "] must be positive");
}

Status cufftStatus(const char *kernel, const char *what, cufftResult result) {
  if (result == CUFFT_SUCCESS)
    return Status::success();
  return Status::error(std::string(kernel) + ": " + what +
                       " failed: cufftResult " +
                       std::to_string(static_cast<int>(result)));
}

/// One cuFFT plan, destroyed with its owner.
class FftPlan {
public:
  FftPlan() = default;
  FftPlan(const FftPlan &) = delete;
  FftPlan &operator=(const FftPlan &) = delete;
  ~FftPlan() {
    if (made)
      cufftDestroy(handle);
  }

  /// A batch of `batch` packed transforms of `type` over the sizes `n`
  /// (1 or 2 dimensions, the last one contiguous).
  Status make(const char *kernel, std::initializer_list<int64_t> n,
              cufftType type, int64_t batch) {
    if (made)
      return Status::success();
    int sizes[2] = {0, 0}, rank = 0;
    std::string shape;
    for (int64_t size : n) {
      if (size > INT_MAX)
        return Status::error(std::string(kernel) + ": transform length " +
                             std::to_string(size) + " exceeds cuFFT's int");
      shape += (rank ? "x" : "") + std::to_string(size);
      sizes[rank++] = static_cast<int>(size);
    }
    if (batch > INT_MAX)
      return Status::error(std::string(kernel) + ": batch " +
                           std::to_string(batch) + " exceeds cuFFT's int");
    std::string what = "planning the transforms of " + shape;
    if (Status status = cufftStatus(kernel, what.c_str(),
                                    cufftPlanMany(&handle, rank, sizes, nullptr,
                                                  1, 0, nullptr, 1, 0, type,
                                                  static_cast<int>(batch)));
        !status)
      return status;
    this->type = type;
    made = true;
    return Status::success();
  }

  /// Whether make() succeeded.
  bool ready() const { return made; }

  /// Executes the plan on `stream`: real to complex forward (`in` real), or
  /// complex to real inverse (`in` complex).
  Status execute(const char *kernel, void *in, void *out,
                 cudaStream_t stream) const {
    if (Status status = cufftStatus(kernel, "cufftSetStream",
                                    cufftSetStream(handle, stream));
        !status)
      return status;
    if (type == CUFFT_R2C)
      return cufftStatus(kernel, "cufftExecR2C",
                         cufftExecR2C(handle, static_cast<cufftReal *>(in),
                                      static_cast<cufftComplex *>(out)));
    return cufftStatus(kernel, "cufftExecC2R",
                       cufftExecC2R(handle, static_cast<cufftComplex *>(in),
                                    static_cast<cufftReal *>(out)));
  }

private:
  cufftHandle handle = 0;
  cufftType type = CUFFT_R2C;
  bool made = false;
};

/// Slices of one temporary allocation, each starting on a 256-byte boundary
/// (what cuFFT and cuBLASLt prefer).
class Slices {
public:
  /// Reserves `floats` and returns its offset in floats.
  int64_t add(int64_t floats) {
    int64_t offset = total;
    total += (floats + 63) / 64 * 64;
    return offset;
  }
  int64_t bytes() const { return total * int64_t(sizeof(float)); }

private:
  int64_t total = 0;
};

/// The smallest length >= n whose prime factors are all at most 7 (the
/// lengths cuFFT transforms fastest); n itself when n < 1 (a shape that
/// prepare() and run() refuse).
int64_t smoothLength(int64_t n) {
  if (n < 1)
    return n;
  for (int64_t m = n;; ++m) {
    int64_t rest = m;
    for (int64_t p : {2, 3, 5, 7})
      while (rest % p == 0)
        rest /= p;
    if (rest == 1)
      return m;
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// Two-sided products
//===----------------------------------------------------------------------===//

template <typename T>
Status twoSidedMix(GemmContext &gemm, const T *x, const T *left, const T *right,
                   bool transposeRight, T *y, T *work, int64_t batch,
                   int64_t seq, int64_t d) {
  if (Status status = gemm.gemm(
          packed(false, transposeRight, batch * seq, d, d, x, right, work));
      !status)
    return status;
  return gemm.gemm(
      sharedLeft(packed(false, false, seq, d, seq, left, work, y), batch));
}

template <typename T>
Status twoSidedMixBackward(GemmContext &gemm, const T *x, const T *left,
                           const T *right, bool transposeRight, const T *dy,
                           T *dx, float *dLeft, float *dRight, T *xRight,
                           T *leftX, T *leftDy, int64_t batch, int64_t seq,
                           int64_t d) {
  int64_t rows = batch * seq;
  for (Status status :
       {// X op(R) and L X.
        gemm.gemm(packed(false, transposeRight, rows, d, d, x, right, xRight)),
        gemm.gemm(sharedLeft(packed(false, false, seq, d, seq, left, x, leftX),
                             batch)),
        // d op(R) = sum_b (L X[b])^T dY[b] over all rows; R's own gradient
        // is its transpose dY^T (L X) when op(R) = R^T.
        gemm.gemm(transposeRight
                      ? packed(true, false, d, d, rows, dy, leftX, dRight)
                      : packed(true, false, d, d, rows, leftX, dy, dRight)),
        // dX[b] = (L^T dY[b]) op(R)^T.
        gemm.gemm(sharedLeft(packed(true, false, seq, d, seq, left, dy, leftDy),
                             batch)),
        gemm.gemm(
            packed(false, !transposeRight, rows, d, d, leftDy, right, dx))})
    if (!status)
      return status;
  // dL = sum_b dY[b] (X[b] op(R))^T, added example by example.
  for (int64_t b = 0; b < batch; ++b)
    if (Status status =
            gemm.gemm(packed(false, true, seq, seq, d, dy + b * seq * d,
                             xRight + b * seq * d, dLeft, b ? 1.0f : 0.0f));
        !status)
      return status;
  return Status::success();
}

template Status twoSidedMix(GemmContext &, const float *, const float *,
                            const float *, bool, float *, float *, int64_t,
                            int64_t, int64_t);
template Status twoSidedMix(GemmContext &, const Bf16 *, const Bf16 *,
                            const Bf16 *, bool, Bf16 *, Bf16 *, int64_t,
                            int64_t, int64_t);
template Status twoSidedMixBackward(GemmContext &, const float *, const float *,
                                    const float *, bool, const float *, float *,
                                    float *, float *, float *, float *, float *,
                                    int64_t, int64_t, int64_t);
template Status twoSidedMixBackward(GemmContext &, const Bf16 *, const Bf16 *,
                                    const Bf16 *, bool, const Bf16 *, Bf16 *,
                                    float *, float *, Bf16 *, Bf16 *, Bf16 *,
                                    int64_t, int64_t, int64_t);

//===----------------------------------------------------------------------===//
// SpectralMix
//===----------------------------------------------------------------------===//

struct SpectralMix::Impl {
  int64_t batch, seq, d;
  bool hartley;
  MixAlgorithm algorithm;
  FftPlan plan;
  /// Matmul: hidden [d, 2d], then left1 and left2 [seq, seq].
  float *matrices = nullptr;

  ~Impl() { cudaFree(matrices); }
  float *hidden() const { return matrices; }
  float *left1() const { return matrices + 2 * d * d; }
  float *left2() const { return matrices + 2 * d * d + seq * seq; }
};

SpectralMix::SpectralMix(int64_t batch, int64_t seq, int64_t d, bool hartley,
                         MixAlgorithm algorithm)
    : impl(new Impl{batch, seq, d, hartley, algorithm}) {}

SpectralMix::~SpectralMix() = default;

Status SpectralMix::prepare(cudaStream_t stream) {
  const char *kernel = "spectral_mix";
  Impl &s = *impl;
  if (Status status = requirePositive(kernel, s.batch, s.seq, s.d); !status)
    return status;
  if (s.algorithm == MixAlgorithm::Fft)
    return s.plan.make(kernel, {s.seq, s.d}, CUFFT_R2C, s.batch);
  if (s.matrices)
    return Status::success();
  size_t bytes = (2 * s.d * s.d + 2 * s.seq * s.seq) * sizeof(float);
  if (cudaError_t err = cudaMalloc(&s.matrices, bytes); err != cudaSuccess) {
    s.matrices = nullptr;
    return Status::error(std::string(kernel) + ": cannot allocate the " +
                         std::to_string(bytes) +
                         " bytes of DFT matrices: " + cudaGetErrorString(err));
  }
  spectralMatricesKernel<<<gridFor(s.d * s.d + s.seq * s.seq), kBlockThreads, 0,
                           stream>>>(s.hidden(), s.left1(), s.left2(), s.seq,
                                     s.d, s.hartley);
  return launchStatus(kernel);
}

Status SpectralMix::run(const float *x, float *y, GemmContext &gemm) const {
  const char *kernel = "spectral_mix";
  const Impl &s = *impl;
  if (Status status = requirePositive(kernel, s.batch, s.seq, s.d); !status)
    return status;
  bool fft = s.algorithm == MixAlgorithm::Fft;
  if (fft ? !s.plan.ready() : !s.matrices)
    return Status::error(std::string(kernel) + ": prepare() has not made the " +
                         (fft ? "cuFFT plan" : "DFT matrices"));
  cudaStream_t stream = gemm.stream();
  int64_t n = s.batch * s.seq * s.d;
  if (!fft) {
    StreamBuffer products(2 * n * sizeof(float), stream);
    if (!products.error().empty())
      return Status::error(std::string(kernel) + ": " + products.error());
    float *p = products.as<float>();
    if (Status status = gemm.gemm(packed(false, false, s.batch * s.seq, 2 * s.d,
                                         s.d, x, s.hidden(), p));
        !status)
      return status;
    // Y[b] = left1 P1[b] + left2 P2[b], P1 and P2 the halves of P's rows.
    for (int half = 0; half < 2; ++half) {
      GemmProblem<float> mix = sharedLeft(
          packed(false, false, s.seq, s.d, s.seq, half ? s.left2() : s.left1(),
                 p + half * s.d, y, half ? 1.0f : 0.0f),
          s.batch);
      mix.ldb = 2 * s.d;
      mix.strideB = 2 * s.seq * s.d;
      if (Status status = gemm.gemm(mix); !status)
        return status;
    }
    return Status::success();
  }
  // cuFFT's real-to-complex transform gets a copy: the input stays intact
  // whatever the transform does with its source.
  Slices slices;
  int64_t real = slices.add(n),
          spectrum = slices.add(2 * s.batch * s.seq * (s.d / 2 + 1));
  StreamBuffer buffer(slices.bytes(), stream);
  if (!buffer.error().empty())
    return Status::error(std::string(kernel) + ": " + buffer.error());
  float *base = buffer.as<float>();
  if (cudaError_t err = cudaMemcpyAsync(base + real, x, n * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream);
      err != cudaSuccess)
    return Status::error(std::string(kernel) +
                         ": copy failed: " + cudaGetErrorString(err));
  float2 *z = reinterpret_cast<float2 *>(base + spectrum);
  if (Status status = s.plan.execute(kernel, base + real, z, stream); !status)
    return status;
  spectralOutputKernel<<<gridFor(n), kBlockThreads, 0, stream>>>(
      z, y, s.batch, s.seq, s.d, s.hartley ? -1.0f : 0.0f);
  return launchStatus(kernel);
}

//===----------------------------------------------------------------------===//
// StructuredMix
//===----------------------------------------------------------------------===//

struct StructuredMix::Impl {
  int64_t batch, seq, d;
  bool toeplitz;
  MixAlgorithm algorithm;
  /// Fft: the grid, the 2-D transforms over it and the kernels' 1-D ones.
  int64_t rows, cols;
  FftPlan grid, gridInverse, seqKernel, hiddenKernel;

  Status runFft(const float *x, const float *vs, const float *vh, float *y,
                cudaStream_t stream) const;
  Status runMatmul(const float *x, const float *vs, const float *vh, float *y,
                   GemmContext &gemm) const;
};

StructuredMix::StructuredMix(int64_t batch, int64_t seq, int64_t d,
                             bool toeplitz, MixAlgorithm algorithm)
    : impl(new Impl{batch, seq, d, toeplitz, algorithm,
                    toeplitz ? smoothLength(2 * seq - 1) : seq,
                    toeplitz ? smoothLength(2 * d - 1) : d}) {}

StructuredMix::~StructuredMix() = default;

int64_t StructuredMix::fftRows() const { return impl->rows; }
int64_t StructuredMix::fftCols() const { return impl->cols; }

Status StructuredMix::prepare() {
  const char *kernel = "structured_mix";
  Impl &s = *impl;
  if (Status status = requirePositive(kernel, s.batch, s.seq, s.d); !status)
    return status;
  if (s.algorithm == MixAlgorithm::Matmul)
    return Status::success();
  if (Status status = s.grid.make(kernel, {s.rows, s.cols}, CUFFT_R2C, s.batch);
      !status)
    return status;
  if (Status status =
          s.gridInverse.make(kernel, {s.rows, s.cols}, CUFFT_C2R, s.batch);
      !status)
    return status;
  if (Status status = s.seqKernel.make(kernel, {s.rows}, CUFFT_R2C, 1); !status)
    return status;
  return s.hiddenKernel.make(kernel, {s.cols}, CUFFT_R2C, 1);
}

Status StructuredMix::run(const float *x, const float *vs, const float *vh,
                          float *y, GemmContext &gemm) const {
  const Impl &s = *impl;
  if (Status status = requirePositive("structured_mix", s.batch, s.seq, s.d);
      !status)
    return status;
  if (s.algorithm == MixAlgorithm::Matmul)
    return s.runMatmul(x, vs, vh, y, gemm);
  if (!s.hiddenKernel.ready())
    return Status::error(
        "structured_mix: prepare() has not made the cuFFT plans");
  return s.runFft(x, vs, vh, y, gemm.stream());
}

Status StructuredMix::Impl::runFft(const float *x, const float *vs,
                                   const float *vh, float *y,
                                   cudaStream_t stream) const {
  const char *kernel = "structured_mix";
  int64_t half = cols / 2 + 1;
  Slices slices;
  int64_t real = slices.add(batch * rows * cols),
          spectrum = slices.add(2 * batch * rows * half),
          seqSignal = slices.add(rows), hiddenSignal = slices.add(cols),
          seqHalf = slices.add(2 * (rows / 2 + 1)),
          hiddenHalf = slices.add(2 * half);
  StreamBuffer buffer(slices.bytes(), stream);
  if (!buffer.error().empty())
    return Status::error(std::string(kernel) + ": " + buffer.error());
  float *base = buffer.as<float>();
  auto complex = [&](int64_t offset) {
    return reinterpret_cast<float2 *>(base + offset);
  };

  // Spectra of the two kernels.
  circulantVectorKernel<<<gridFor(rows), kBlockThreads, 0, stream>>>(
      vs, base + seqSignal, seq, rows, toeplitz);
  circulantVectorKernel<<<gridFor(cols), kBlockThreads, 0, stream>>>(
      vh, base + hiddenSignal, d, cols, toeplitz);
  if (Status status = launchStatus(kernel); !status)
    return status;
  if (Status status =
          seqKernel.execute(kernel, base + seqSignal, complex(seqHalf), stream);
      !status)
    return status;
  if (Status status = hiddenKernel.execute(kernel, base + hiddenSignal,
                                           complex(hiddenHalf), stream);
      !status)
    return status;

  // The grid's spectrum times the kernel's, transformed back.
  mixPadKernel<<<gridFor(batch * rows * cols), kBlockThreads, 0, stream>>>(
      x, base + real, batch, seq, d, rows, cols);
  if (Status status = launchStatus(kernel); !status)
    return status;
  if (Status status =
          grid.execute(kernel, base + real, complex(spectrum), stream);
      !status)
    return status;
  spectrumProductKernel<<<gridFor(batch * rows * half), kBlockThreads, 0,
                          stream>>>(complex(spectrum), complex(seqHalf),
                                    complex(hiddenHalf), batch, rows, half,
                                    1.0f / static_cast<float>(rows * cols));
  if (Status status = launchStatus(kernel); !status)
    return status;
  if (Status status =
          gridInverse.execute(kernel, complex(spectrum), base + real, stream);
      !status)
    return status;
  mixCropKernel<<<gridFor(batch * seq * d), kBlockThreads, 0, stream>>>(
      base + real, y, batch, seq, d, rows, cols);
  return launchStatus(kernel);
}

Status StructuredMix::Impl::runMatmul(const float *x, const float *vs,
                                      const float *vh, float *y,
                                      GemmContext &gemm) const {
  const char *kernel = "structured_mix";
  cudaStream_t stream = gemm.stream();
  Slices slices;
  int64_t left = slices.add(seq * seq), right = slices.add(d * d),
          work = slices.add(batch * seq * d);
  StreamBuffer buffer(slices.bytes(), stream);
  if (!buffer.error().empty())
    return Status::error(std::string(kernel) + ": " + buffer.error());
  float *base = buffer.as<float>();
  if (Status status = expandKernels(kernel, vs, vh, base + left, base + right,
                                    seq, d, toeplitz, stream);
      !status)
    return status;
  return twoSidedMix(gemm, x, base + left, base + right,
                     /*transposeRight=*/true, y, base + work, batch, seq, d);
}

//===----------------------------------------------------------------------===//
// Structured gradient
//===----------------------------------------------------------------------===//

Status structuredMixBackward(const float *x, const float *vs, const float *vh,
                             const float *dy, float *dx, float *dvs, float *dvh,
                             int64_t batch, int64_t seq, int64_t d,
                             bool toeplitz, GemmContext &gemm) {
  const char *kernel = "structured_mix_grad";
  if (Status status = requirePositive(kernel, batch, seq, d); !status)
    return status;
  cudaStream_t stream = gemm.stream();
  int64_t n = batch * seq * d;
  Slices slices;
  int64_t left = slices.add(seq * seq), right = slices.add(d * d),
          dLeft = slices.add(seq * seq), dRight = slices.add(d * d),
          xRight = slices.add(n), leftX = slices.add(n), leftDy = slices.add(n);
  StreamBuffer buffer(slices.bytes(), stream);
  if (!buffer.error().empty())
    return Status::error(std::string(kernel) + ": " + buffer.error());
  float *base = buffer.as<float>();
  if (Status status = expandKernels(kernel, vs, vh, base + left, base + right,
                                    seq, d, toeplitz, stream);
      !status)
    return status;
  if (Status status = twoSidedMixBackward(
          gemm, x, base + left, base + right, /*transposeRight=*/true, dy, dx,
          base + dLeft, base + dRight, base + xRight, base + leftX,
          base + leftDy, batch, seq, d);
      !status)
    return status;
  int64_t seqLength = toeplitz ? 2 * seq - 1 : seq,
          hiddenLength = toeplitz ? 2 * d - 1 : d;
  foldDiagonalsKernel<<<gridFor(seqLength), kBlockThreads, 0, stream>>>(
      base + dLeft, dvs, seq, toeplitz);
  foldDiagonalsKernel<<<gridFor(hiddenLength), kBlockThreads, 0, stream>>>(
      base + dRight, dvh, d, toeplitz);
  return launchStatus(kernel);
}

} // namespace mixer::cuda
