// RUN: mixer-opt %s --mixer-partition-experts="dp=2" | FileCheck %s
// RUN: mixer-opt %s --mixer-partition-experts="dp=1 ep=1" | FileCheck %s --check-prefix=ONE
// RUN: mixer-opt %s --mixer-partition-experts="dp=2" --mixer-autodiff | FileCheck %s --check-prefix=GRAD

// On a mesh (data parallelism alone suffices) σ-MoE's entropy regulariser
// averages over every rank's tokens: the partitioning marks it with the
// world group, and its gradient inherits the group. One rank: unchanged.
// CHECK: mixer.entropy_regularizer %{{.*}} {group = "world"}
// ONE-NOT: group
// GRAD: mixer.entropy_regularizer_grad %{{.*}}, %{{.*}} {group = "world"}
func.func @forward(%logits: tensor<8x4xf32> {mixer.input = "logits"},
                   %w: tensor<4x4xf32> {mixer.param = "w"})
    -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
  %s = mixer.dense %logits, %w : (tensor<8x4xf32>, tensor<4x4xf32>) -> tensor<8x4xf32>
  %r = mixer.entropy_regularizer %s : tensor<8x4xf32>
  return %r : tensor<f32>
}
