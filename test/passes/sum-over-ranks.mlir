// RUN: mixer-opt %s --split-input-file --mixer-sum-over-ranks | FileCheck %s

// At dp 2 × ep 2: the loss and a replicated parameter's gradient are summed
// over the world and marked replicated; the gradient of an expert slice,
// already summed over its expert group by the all-to-alls' gradients, is
// summed over the replicas holding the same experts (`edp`) and keeps the
// parameter's shard; batch rows stay as they are.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: -> (tensor<f32> {mixer.replicated}, tensor<4x2xf32>, tensor<4x4xf32> {mixer.replicated},
// CHECK-SAME: tensor<1x4x4xf32> {mixer.shard = {axis = 0 : i64, mesh_axis = "ep"}})
// CHECK: %[[L:.*]] = mixer.all_reduce %{{.*}} {group = "world"} : tensor<f32>
// CHECK: %[[W:.*]] = mixer.all_reduce %{{.*}} {group = "world"} : tensor<4x4xf32>
// CHECK: %[[E:.*]] = mixer.all_reduce %{{.*}} {group = "edp"} : tensor<1x4x4xf32>
// CHECK: return %[[L]], %{{.*}}, %[[W]], %[[E]]
module attributes {mixer.mesh = {dp = 2 : i64, ep = 2 : i64}} {
func.func @forward(%w: tensor<4x4xf32> {mixer.param = "w"},
                   %e: tensor<1x4x4xf32> {mixer.param = "e", mixer.shard = {axis = 0 : i64, mesh_axis = "ep"}},
                   %y: tensor<4x2xf32>, %dw: tensor<4x4xf32>, %de: tensor<1x4x4xf32>, %l: tensor<f32>)
    -> (tensor<f32>, tensor<4x2xf32>, tensor<4x4xf32>, tensor<1x4x4xf32>)
    attributes {mixer.outputs = ["loss", "logits", "grad/w", "grad/e"]} {
  return %l, %y, %dw, %de : tensor<f32>, tensor<4x2xf32>, tensor<4x4xf32>, tensor<1x4x4xf32>
}
}

// -----

// At dp 1 the expert gradient is already the whole sum.
// CHECK-LABEL: func.func @forward
// CHECK-NOT: group = "edp"
// CHECK: return
module attributes {mixer.mesh = {dp = 1 : i64, ep = 2 : i64}} {
func.func @forward(%e: tensor<1x4x4xf32> {mixer.param = "e", mixer.shard = {axis = 0 : i64, mesh_axis = "ep"}},
                   %de: tensor<1x4x4xf32>, %l: tensor<f32>)
    -> (tensor<f32>, tensor<1x4x4xf32>)
    attributes {mixer.outputs = ["loss", "grad/e"]} {
  return %l, %de : tensor<f32>, tensor<1x4x4xf32>
}
}

// -----

// One rank: nothing changes.
// CHECK-LABEL: func.func @forward
// CHECK-NOT: mixer.all_reduce
// CHECK: return
func.func @forward(%w: tensor<4x4xf32> {mixer.param = "w"}, %dw: tensor<4x4xf32>, %l: tensor<f32>)
    -> (tensor<f32>, tensor<4x4xf32>)
    attributes {mixer.outputs = ["loss", "grad/w"]} {
  return %l, %dw : tensor<f32>, tensor<4x4xf32>
}
