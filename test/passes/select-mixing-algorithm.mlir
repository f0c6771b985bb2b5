// RUN: mixer-opt %s --mixer-select-mixing-algorithm | FileCheck %s --check-prefix=CPU
// RUN: mixer-opt %s --mixer-select-mixing-algorithm=target=cuda | FileCheck %s --check-prefix=CUDA
// RUN: not mixer-opt %s --mixer-select-mixing-algorithm=target=tpu 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: unknown target 'tpu' (expected cpu or cuda)

// Fourier mixing: the FFT wins at every size on both targets.
// CPU-LABEL: func.func @fourier
// CPU: mixer.spectral_mix {{.*}}algorithm = #mixer<algorithm fft>
// CUDA-LABEL: func.func @fourier
// CUDA: mixer.spectral_mix {{.*}}algorithm = #mixer<algorithm fft>
func.func @fourier(%x: tensor<8x512x768xf32>) -> tensor<8x512x768xf32> {
  %y = mixer.spectral_mix %x : (tensor<8x512x768xf32>) -> tensor<8x512x768xf32>
  return %y : tensor<8x512x768xf32>
}

// Circulant at S = D = 512: the FFT wins on the CPU too; at a short sequence
// of a narrow model the dense products are cheaper on the CPU.
// CPU-LABEL: func.func @circulant
// CPU: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm fft>
// CPU: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
func.func @circulant(%x: tensor<8x512x512xf32>, %vs: tensor<512xf32>, %vh: tensor<512xf32>,
                     %y: tensor<8x16x32xf32>, %ws: tensor<16xf32>, %wh: tensor<32xf32>) -> tensor<8x16x32xf32> {
  %a = mixer.structured_mix %x, %vs, %vh : (tensor<8x512x512xf32>, tensor<512xf32>, tensor<512xf32>) -> tensor<8x512x512xf32>
  %b = mixer.structured_mix %y, %ws, %wh : (tensor<8x16x32xf32>, tensor<16xf32>, tensor<32xf32>) -> tensor<8x16x32xf32>
  return %b : tensor<8x16x32xf32>
}

// Toeplitz pays for its 2n circulant embedding: matmul on the CPU at 512,
// the FFT on the GPU.
// CPU-LABEL: func.func @toeplitz
// CPU: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm matmul>
// CUDA-LABEL: func.func @toeplitz
// CUDA: mixer.structured_mix {{.*}}algorithm = #mixer<algorithm fft>
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
