// RUN: mixer-opt %s --mixer-fuse-dense-activation=target=cuda | FileCheck %s
// RUN: not mixer-opt %s --mixer-fuse-dense-activation=target=tpu 2>&1 | FileCheck %s --check-prefix=BAD

// The cuda dense kernel's cuBLASLt epilogue applies GELU only (TargetInfo):
// a ReLU or the pooler's tanh stays a separate activation on cuda (the CPU
// fuses both), since the CUDA executor refuses a dense with either.
// CHECK-LABEL: func.func @epilogues
// CHECK: mixer.dense {{.*}} {activation = #mixer<activation gelu>}
// CHECK: %[[R:.*]] = mixer.dense %{{.*}}, %{{.*}} :
// CHECK: mixer.activation relu %[[R]]
// CHECK: %[[P:.*]] = mixer.dense %{{.*}}, %{{.*}} :
// CHECK: mixer.activation tanh %[[P]]
// BAD: unknown target 'tpu' (expected cpu or cuda)
func.func @epilogues(%x: tensor<8x16xf32>, %w: tensor<16x16xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>) {
  %a = mixer.dense %x, %w : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  %ga = mixer.activation gelu %a : tensor<8x16xf32>
  %b = mixer.dense %x, %w : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  %rb = mixer.activation relu %b : tensor<8x16xf32>
  %c = mixer.dense %x, %w : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  %tc = mixer.activation tanh %c : tensor<8x16xf32>
  return %ga, %rb, %tc : tensor<8x16xf32>, tensor<8x16xf32>, tensor<8x16xf32>
}
