// RUN: mixer-opt %s --mixer-select-mixing-algorithm | FileCheck %s --check-prefix=CPU
// RUN: mixer-opt %s --mixer-select-mixing-algorithm=target=cuda | FileCheck %s --check-prefix=CUDA
// RUN: mixer-opt %s --mixer-select-mixing-algorithm="target=cuda precision=bf16" | FileCheck %s --check-prefix=BF16
// RUN: not mixer-opt %s --mixer-select-mixing-algorithm=target=tpu 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not mixer-opt %s --mixer-select-mixing-algorithm="target=cuda precision=fp16" 2>&1 | FileCheck %s --check-prefix=BADP

// BAD: unknown target 'tpu' (expected cpu or cuda)
// BADP: unknown precision 'fp16' (expected fp32 or bf16)

// Fourier mixing at S = 512, D = 768: the FFT wins on the CPU and on the GPU
// in fp32 (2 GFLOP of dense products on the FP32 pipes take longer than the
// memory-bound FFT); with bf16 tensor cores the dense products win.
// CPU-LABEL: func.func @fourier
// CPU: mixer.spectral_mix {{.*}}algorithm = #mixer<algorithm fft>
// CUDA-LABEL: func.func @fourier
// CUDA: mixer.spectral_mix {{.*}}algorithm = #mixer<algorithm fft>
// BF16-LABEL: func.func @fourier
// BF16: mixer.spectral_mix {{.*}}algorithm = #mixer<algorithm matmul>
func.func @fourier(%x: tensor<8x512x768xf32>) -> tensor<8x512x768xf32> {
  %y = mixer.spectral_mix %x : (tensor<8x512x768xf32>) -> tensor<8x512x768xf32>
  return %y : tensor<8x512x768xf32>
}

// Circulant at S = D = 512: the FFT wins on the CPU too; at a short sequence
// of a narrow model the dense products are cheaper on the CPU. On the GPU the
// fp32 round trip of FFTs still beats the dense products at 512, bf16 GEMMs
// do not; small planes always take the dense products.
// CPU-LABEL: func.func @circulant
// CPU: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm fft>
// CPU: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
// CUDA-LABEL: func.func @circulant
// CUDA: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm fft>
// CUDA: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
// BF16-LABEL: func.func @circulant
// BF16: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
// BF16: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
func.func @circulant(%x: tensor<8x512x512xf32>, %vs: tensor<512xf32>, %vh: tensor<512xf32>,
                     %y: tensor<8x16x32xf32>, %ws: tensor<16xf32>, %wh: tensor<32xf32>) -> tensor<8x16x32xf32> {
  %a = mixer.structured_mix %x, %vs, %vh : (tensor<8x512x512xf32>, tensor<512xf32>, tensor<512xf32>) -> tensor<8x512x512xf32>
  %b = mixer.structured_mix %y, %ws, %wh : (tensor<8x16x32xf32>, tensor<16xf32>, tensor<32xf32>) -> tensor<8x16x32xf32>
  return %b : tensor<8x16x32xf32>
}

// Toeplitz pays for its 2n circulant embedding (four times the FFT traffic):
// matmul on the CPU and on the GPU at 512.
// CPU-LABEL: func.func @toeplitz
// CPU: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
// CUDA-LABEL: func.func @toeplitz
// CUDA: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
// BF16-LABEL: func.func @toeplitz
// BF16: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
func.func @toeplitz(%x: tensor<8x512x512xf32>, %ts: tensor<1023xf32>, %th: tensor<1023xf32>) -> tensor<8x512x512xf32> {
  %a = mixer.structured_mix %x, %ts, %th {toeplitz} : (tensor<8x512x512xf32>, tensor<1023xf32>, tensor<1023xf32>) -> tensor<8x512x512xf32>
  return %a : tensor<8x512x512xf32>
}

// An explicit choice is kept.
// CPU-LABEL: func.func @explicit
// CPU: algorithm = #mixer<algorithm matmul>
func.func @explicit(%x: tensor<8x512x768xf32>) -> tensor<8x512x768xf32> {
  %y = mixer.spectral_mix %x {algorithm = #mixer<algorithm matmul>} : (tensor<8x512x768xf32>) -> tensor<8x512x768xf32>
  return %y : tensor<8x512x768xf32>
}
