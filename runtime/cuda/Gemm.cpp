//===- Gemm.cpp - Matrix products through cuBLASLt ------------------------===//
//
// Maps the row-major problems of Gemm.h onto cuBLASLt's column-major ones
// (operands swapped, see Gemm.h) and caches the algorithm chosen for each
// problem, so that repeated products take the same algorithm.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <string>
#include <type_traits>
#include <vector>

namespace mixer::cuda {

struct GemmContext::State {
  cudaStream_t stream;
  size_t workspaceBytes;
  cublasLtHandle_t handle = nullptr;
  void *workspace = nullptr;
  /// The algorithm of each problem key (see problemKey).
  std::map<std::vector<int64_t>, cublasLtMatmulAlgo_t> algorithms;
};

namespace {

const char *kName = "gemm";

const char *epilogueName(GemmEpilogue epilogue) {
  switch (epilogue) {
  case GemmEpilogue::None:
    return "none";
  case GemmEpilogue::Bias:
    return "bias";
  case GemmEpilogue::Gelu:
    return "gelu";
  case GemmEpilogue::GeluAux:
    return "gelu_aux";
  case GemmEpilogue::DGelu:
    return "dgelu";
  case GemmEpilogue::BiasGradB:
    return "bias_grad_b";
  }
  return "unknown";
}

Status argumentError(const std::string &what) {
  return Status::error(std::string(kName) + ": " + what);
}

Status cublasError(const char *call, cublasStatus_t status) {
  return argumentError(std::string(call) +
                       " failed: " + cublasLtGetStatusString(status));
}

/// Checks the problem against Gemm.h's contract; no device access.
template <typename T, typename Out>
Status validate(const GemmProblem<T, Out> &p) {
  for (auto [what, value] : {std::pair<const char *, int64_t>{"m", p.m},
                             {"n", p.n},
                             {"k", p.k},
                             {"batch", p.batch},
                             {"strideA", p.strideA},
                             {"strideB", p.strideB},
                             {"strideC", p.strideC},
                             {"strideBias", p.strideBias},
                             {"strideAux", p.strideAux}})
    if (value < 0)
      return argumentError(std::string(what) + " " + std::to_string(value) +
                           " is negative");
  if (p.m == 0 || p.n == 0 || p.batch == 0)
    return Status::success();
  if (p.k == 0)
    return argumentError("k is 0 for a [" + std::to_string(p.m) + ", " +
                         std::to_string(p.n) + "] product");
  auto checkLd = [](const char *what, int64_t ld, int64_t minimum) {
    if (ld >= minimum)
      return Status::success();
    return argumentError(std::string(what) + " " + std::to_string(ld) +
                         " is less than the row length " +
                         std::to_string(minimum));
  };
  for (Status s : {checkLd("lda", p.lda, p.transA ? p.m : p.k),
                   checkLd("ldb", p.ldb, p.transB ? p.k : p.n),
                   checkLd("ldc", p.ldc, p.n)})
    if (!s.ok())
      return s;
  if (!p.a || !p.b || !p.c)
    return argumentError("a null A, B or C");
  const char *name = epilogueName(p.epilogue);
  switch (p.epilogue) {
  case GemmEpilogue::None:
  case GemmEpilogue::Gelu:
    break;
  case GemmEpilogue::Bias:
    if (!p.bias)
      return argumentError(std::string("epilogue ") + name + " needs a bias");
    break;
  case GemmEpilogue::GeluAux:
  case GemmEpilogue::DGelu:
    if (!p.aux)
      return argumentError(std::string("epilogue ") + name +
                           " needs the aux matrix");
    if (p.ldAux < p.n || p.ldAux % 8 != 0)
      return argumentError("ldAux " + std::to_string(p.ldAux) +
                           " is not a multiple of 8 at least n " +
                           std::to_string(p.n));
    break;
  case GemmEpilogue::BiasGradB:
    if (!p.biasGrad)
      return argumentError(std::string("epilogue ") + name +
                           " needs a bias gradient");
    if (p.transB)
      return argumentError(std::string("epilogue ") + name +
                           " needs B untransposed");
    break;
  default:
    return argumentError("unknown epilogue " +
                         std::to_string(static_cast<int32_t>(p.epilogue)));
  }
  return Status::success();
}

/// The cuBLASLt epilogue of a row-major problem: cuBLASLt's A is our B, so
/// our B's bias gradient is its BGRADA.
cublasLtEpilogue_t ltEpilogue(GemmEpilogue epilogue, bool bias, bool biasGrad) {
  switch (epilogue) {
  case GemmEpilogue::None:
    return CUBLASLT_EPILOGUE_DEFAULT;
  case GemmEpilogue::Bias:
    return CUBLASLT_EPILOGUE_BIAS;
  case GemmEpilogue::Gelu:
    return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  case GemmEpilogue::GeluAux:
    return bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  case GemmEpilogue::DGelu:
    return biasGrad ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_DGELU;
  case GemmEpilogue::BiasGradB:
    return CUBLASLT_EPILOGUE_BGRADA;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

/// The largest power of two up to 256 dividing the address and the batch
/// stride in bytes: what the algorithms may assume of a matrix.
uint32_t alignment(const void *p, int64_t strideBytes) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | uint64_t(strideBytes) | 256;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

/// Owns a cuBLASLt descriptor.
template <typename D, cublasStatus_t (*Destroy)(D)> struct Owned {
  D value = nullptr;
  ~Owned() {
    if (value)
      Destroy(value);
  }
};
using MatmulDesc = Owned<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using Layout = Owned<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using Preference =
    Owned<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

/// Creates the handle and the workspace unless they exist.
Status createHandle(GemmContext::State &state) {
  if (state.handle)
    return Status::success();
  if (cublasStatus_t st = cublasLtCreate(&state.handle);
      st != CUBLAS_STATUS_SUCCESS) {
    state.handle = nullptr;
    return cublasError("cublasLtCreate", st);
  }
  if (state.workspaceBytes) {
    cudaError_t err =
        cudaMallocAsync(&state.workspace, state.workspaceBytes, state.stream);
    if (err != cudaSuccess) {
      state.workspace = nullptr;
      return argumentError("cannot allocate the " +
                           std::to_string(state.workspaceBytes) +
                           " byte workspace: " + cudaGetErrorString(err));
    }
  }
  return Status::success();
}

template <typename T, typename Out>
Status run(GemmContext::State &state, const GemmProblem<T, Out> &p) {
  Status s = validate(p);
  if (!s.ok() || p.m == 0 || p.n == 0 || p.batch == 0)
    return s;
  if (Status created = createHandle(state); !created.ok())
    return created;

  constexpr bool isFloat = std::is_same_v<T, float>;
  constexpr bool floatOut = std::is_same_v<Out, float>;
  cudaDataType_t type = isFloat ? CUDA_R_32F : CUDA_R_16BF;
  cudaDataType_t outType = floatOut ? CUDA_R_32F : CUDA_R_16BF;
  cublasComputeType_t compute = isFloat && p.allowTf32
                                    ? CUBLAS_COMPUTE_32F_FAST_TF32
                                    : CUBLAS_COMPUTE_32F;
  // Row-major C = op(A) op(B) as column-major C^T = op(B)^T op(A)^T.
  int64_t ltM = p.n, ltN = p.m;
  cublasOperation_t opA = p.transB ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opB = p.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue =
      ltEpilogue(p.epilogue, p.bias != nullptr, p.biasGrad != nullptr);
  bool usesBias = epilogue == CUBLASLT_EPILOGUE_BIAS ||
                  epilogue == CUBLASLT_EPILOGUE_GELU_BIAS ||
                  epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  bool usesBiasGrad = epilogue == CUBLASLT_EPILOGUE_DGELU_BGRAD ||
                      epilogue == CUBLASLT_EPILOGUE_BGRADA;
  bool usesAux =
      p.epilogue == GemmEpilogue::GeluAux || p.epilogue == GemmEpilogue::DGelu;
  const void *vector = usesBias       ? static_cast<const void *>(p.bias)
                       : usesBiasGrad ? p.biasGrad
                                      : nullptr;

  MatmulDesc desc;
  cublasStatus_t st =
      cublasLtMatmulDescCreate(&desc.value, compute, CUDA_R_32F);
  if (st != CUBLAS_STATUS_SUCCESS)
    return cublasError("cublasLtMatmulDescCreate", st);
  auto setDesc = [&](cublasLtMatmulDescAttributes_t attribute,
                     const auto &value) {
    return cublasLtMatmulDescSetAttribute(desc.value, attribute, &value,
                                          sizeof(value));
  };
  int32_t biasType = CUDA_R_32F;
  for (cublasStatus_t r :
       {setDesc(CUBLASLT_MATMUL_DESC_TRANSA, opA),
        setDesc(CUBLASLT_MATMUL_DESC_TRANSB, opB),
        setDesc(CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue),
        vector ? setDesc(CUBLASLT_MATMUL_DESC_BIAS_POINTER, vector)
               : CUBLAS_STATUS_SUCCESS,
        vector ? setDesc(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, biasType)
               : CUBLAS_STATUS_SUCCESS,
        vector && p.batch > 1
            ? setDesc(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, p.strideBias)
            : CUBLAS_STATUS_SUCCESS,
        usesAux ? setDesc(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                          static_cast<void *>(p.aux))
                : CUBLAS_STATUS_SUCCESS,
        usesAux ? setDesc(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, p.ldAux)
                : CUBLAS_STATUS_SUCCESS,
        usesAux && p.batch > 1
            ? setDesc(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE,
                      p.strideAux)
            : CUBLAS_STATUS_SUCCESS})
    if (r != CUBLAS_STATUS_SUCCESS)
      return cublasError("cublasLtMatmulDescSetAttribute", r);

  // Column-major layouts: cuBLASLt's A is our B as stored, its B our A.
  Layout layoutA, layoutB, layoutC;
  struct LayoutSpec {
    Layout *layout;
    int64_t rows, cols, ld, stride;
  };
  for (LayoutSpec spec : {LayoutSpec{&layoutA, p.transB ? p.k : p.n,
                                     p.transB ? p.n : p.k, p.ldb, p.strideB},
                          LayoutSpec{&layoutB, p.transA ? p.m : p.k,
                                     p.transA ? p.k : p.m, p.lda, p.strideA},
                          LayoutSpec{&layoutC, ltM, ltN, p.ldc, p.strideC}}) {
    st = cublasLtMatrixLayoutCreate(&spec.layout->value,
                                    spec.layout == &layoutC ? outType : type,
                                    spec.rows, spec.cols, spec.ld);
    if (st != CUBLAS_STATUS_SUCCESS)
      return cublasError("cublasLtMatrixLayoutCreate", st);
    if (p.batch > 1) {
      int32_t count = static_cast<int32_t>(p.batch);
      for (cublasStatus_t r :
           {cublasLtMatrixLayoutSetAttribute(spec.layout->value,
                                             CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                             &count, sizeof(count)),
            cublasLtMatrixLayoutSetAttribute(
                spec.layout->value, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                &spec.stride, sizeof(spec.stride))})
        if (r != CUBLAS_STATUS_SUCCESS)
          return cublasError("cublasLtMatrixLayoutSetAttribute", r);
    }
  }

  int64_t size = sizeof(T), outSize = sizeof(Out);
  uint32_t alignA = alignment(p.b, p.strideB * size);
  uint32_t alignB = alignment(p.a, p.strideA * size);
  uint32_t alignC = alignment(p.c, p.strideC * outSize);
  std::vector<int64_t> key = {
      isFloat,
      floatOut,
      compute,
      p.transA,
      p.transB,
      p.m,
      p.n,
      p.k,
      p.lda,
      p.ldb,
      p.ldc,
      p.batch,
      p.strideA,
      p.strideB,
      p.strideC,
      epilogue,
      p.strideBias,
      p.ldAux,
      p.strideAux,
      alignA,
      alignB,
      alignC,
      alignment(vector, p.strideBias * 4),
      alignment(usesAux ? p.aux : nullptr, p.strideAux * outSize),
      p.beta != 0.0f};
  auto found = state.algorithms.find(key);
  if (found == state.algorithms.end()) {
    Preference preference;
    st = cublasLtMatmulPreferenceCreate(&preference.value);
    if (st != CUBLAS_STATUS_SUCCESS)
      return cublasError("cublasLtMatmulPreferenceCreate", st);
    uint64_t workspace = state.workspaceBytes;
    auto setPreference = [&](cublasLtMatmulPreferenceAttributes_t attribute,
                             const auto &value) {
      return cublasLtMatmulPreferenceSetAttribute(preference.value, attribute,
                                                  &value, sizeof(value));
    };
    for (cublasStatus_t r :
         {setPreference(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace),
          setPreference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignA),
          setPreference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignB),
          setPreference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignC),
          setPreference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignC)})
      if (r != CUBLAS_STATUS_SUCCESS)
        return cublasError("cublasLtMatmulPreferenceSetAttribute", r);
    cublasLtMatmulHeuristicResult_t result = {};
    int count = 0;
    st = cublasLtMatmulAlgoGetHeuristic(
        state.handle, desc.value, layoutA.value, layoutB.value, layoutC.value,
        layoutC.value, preference.value, 1, &result, &count);
    if (st != CUBLAS_STATUS_SUCCESS || count == 0)
      return argumentError(
          std::string("no cuBLASLt algorithm for epilogue ") +
          epilogueName(p.epilogue) + " on a " +
          (isFloat    ? "fp32"
           : floatOut ? "bf16 (fp32 out)"
                      : "bf16") +
          " [" + std::to_string(p.m) + ", " + std::to_string(p.k) + "] x [" +
          std::to_string(p.k) + ", " + std::to_string(p.n) + "] product" +
          (p.batch > 1 ? " batched " + std::to_string(p.batch) + " times"
                       : std::string()) +
          (st != CUBLAS_STATUS_SUCCESS
               ? std::string(": ") + cublasLtGetStatusString(st)
               : std::string()));
    found = state.algorithms.emplace(std::move(key), result.algo).first;
  }

  st = cublasLtMatmul(state.handle, desc.value, &p.alpha, p.b, layoutA.value,
                      p.a, layoutB.value, &p.beta, p.c, layoutC.value, p.c,
                      layoutC.value, &found->second, state.workspace,
                      state.workspaceBytes, state.stream);
  if (st != CUBLAS_STATUS_SUCCESS)
    return cublasError("cublasLtMatmul", st);
  return Status::success();
}

} // namespace

GemmContext::GemmContext(cudaStream_t stream, size_t workspaceBytes)
    : state(new State{stream, workspaceBytes}) {}

GemmContext::~GemmContext() {
  if (state->workspace)
    cudaFreeAsync(state->workspace, state->stream);
  if (state->handle)
    cublasLtDestroy(state->handle);
}

Status GemmContext::prepare() { return createHandle(*state); }

Status GemmContext::gemm(const GemmProblem<float> &problem) {
  return run(*state, problem);
}

Status GemmContext::gemm(const GemmProblem<Bf16> &problem) {
  return run(*state, problem);
}

Status GemmContext::gemm(const GemmProblem<Bf16, float> &problem) {
  return run(*state, problem);
}

cudaStream_t GemmContext::stream() const { return state->stream; }

} // namespace mixer::cuda
