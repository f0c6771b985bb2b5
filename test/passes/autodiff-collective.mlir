// RUN: mixer-opt %s --mixer-autodiff | FileCheck %s

// The gradient of a ragged exchange sends the cotangent back with the
// received offsets, into the input's rows; that of a sum over ranks is
// another sum over ranks.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: mixer.outputs = ["loss", "grad/w"]
// CHECK: %[[Y:.*]], %[[RO:.*]] = mixer.all_to_all_v %[[X:.*]], %[[O:[^ ]*]] {group = "ep"} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<12x4xf32>, tensor<5xi32>)
// CHECK: %[[S:.*]] = mixer.all_reduce %{{.*}} {group = "world"} : tensor<12x4xf32>
// CHECK: %[[DS:.*]] = mixer.all_reduce %{{.*}} {group = "world"} : tensor<12x4xf32>
// CHECK: %[[DX:.*]], %{{.*}} = mixer.all_to_all_v %[[DS]], %[[RO]] {group = "ep"} : (tensor<12x4xf32>, tensor<5xi32>) -> (tensor<8x4xf32>, tensor<5xi32>)
// CHECK: return %{{.*}}, %[[DX]]
module attributes {mixer.mesh = {dp = 1 : i64, ep = 2 : i64}} {
  func.func @forward(%w: tensor<8x4xf32> {mixer.param = "w"}, %o: tensor<5xi32> {mixer.input = "o"}) -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
    %y, %ro = mixer.all_to_all_v %w, %o {group = "ep"} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<12x4xf32>, tensor<5xi32>)
    %s = mixer.all_reduce %y {group = "world"} : tensor<12x4xf32>
    %l = mixer.reduce_sum %s : tensor<12x4xf32> to tensor<f32>
    return %l : tensor<f32>
  }
}
