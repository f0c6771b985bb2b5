// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-partition-experts="ep=2" | FileCheck %s
// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-partition-experts="ep=4" | FileCheck %s --check-prefix=ONE
// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-partition-experts="dp=1 ep=1" | FileCheck %s --check-prefix=NONE
// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-partition-experts="ep=2" --mixer-autodiff | FileCheck %s --check-prefix=GRAD
// RUN: not mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-partition-experts="ep=3" -o /dev/null 2>&1 | FileCheck %s --check-prefix=REFUSED

// A one-process mesh changes nothing.
// NONE-NOT: mixer.mesh
// NONE-NOT: mixer.all_to_all

// Experts-choose with two local experts (E = 4, ep = 2): the parameters
// become slices [2, ...], the slot rows and their tokens go out in equal
// blocks, are reordered from (sender, local expert) to (local expert,
// sender) with the routing's offsets, and come back reversed before combine.
// CHECK-LABEL: module attributes {mixer.mesh = {dp = 1 : i64, ep = 2 : i64}}
// CHECK: %{{.*}}: tensor<2x16x32xf32> {mixer.param = "w1", mixer.shard = {axis = 0 : i64, mesh_axis = "ep"}}
// CHECK-SAME: %{{.*}}: tensor<2x32xf32> {mixer.param = "b1", mixer.shard = {axis = 0 : i64, mesh_axis = "ep"}}
// CHECK-SAME: %{{.*}}: tensor<2x32x16xf32> {mixer.param = "w2", mixer.shard
// CHECK-SAME: %{{.*}}: tensor<2x16xf32> {mixer.param = "b2", mixer.shard
// CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.select_experts
// CHECK: %[[XD:.*]] = mixer.dispatch
// CHECK: %[[XR:.*]] = mixer.all_to_all %[[XD]] {group = "ep"} : tensor<32x16xf32>
// CHECK: %[[TR:.*]] = mixer.all_to_all %[[T]] {group = "ep"} : tensor<32xi32>
// CHECK: %[[XE:.*]], %[[PO:.*]], %[[GO:.*]] = mixer.permute_blocks %[[XR]], %[[O]] {inner = 2 : i64, outer = 2 : i64}
// CHECK: %[[TE:.*]], %{{.*}}, %{{.*}} = mixer.permute_blocks %[[TR]], %[[O]] {inner = 2 : i64, outer = 2 : i64}
// CHECK: %[[YE:.*]] = mixer.experts %[[XE]], %[[TE]], %[[GO]], {{.*}} : (tensor<32x16xf32>, tensor<32xi32>, tensor<3xi32>, tensor<2x16x32xf32>, tensor<2x32xf32>, tensor<2x32x16xf32>, tensor<2x16xf32>) -> tensor<32x16xf32>
// CHECK: %[[YR:.*]], %{{.*}}, %{{.*}} = mixer.permute_blocks %[[YE]], %[[PO]] {inner = 2 : i64, outer = 2 : i64}
// CHECK: %[[YD:.*]] = mixer.all_to_all %[[YR]] {group = "ep"}
// CHECK: mixer.combine %[[YD]], %[[T]], %[[G]]

// One local expert (E = 4, ep = 4): the permutation has one inner block.
// ONE-LABEL: module attributes {mixer.mesh = {dp = 1 : i64, ep = 4 : i64}}
// ONE: tensor<1x16x32xf32> {mixer.param = "w1"
// ONE: mixer.all_to_all %{{.*}} {group = "ep"} : tensor<32x16xf32>
// ONE: mixer.permute_blocks %{{.*}}, %{{.*}} {inner = 1 : i64, outer = 4 : i64} : (tensor<32x16xf32>, tensor<5xi32>) -> (tensor<32x16xf32>, tensor<5xi32>, tensor<2xi32>)
// ONE: mixer.experts {{.*}} -> tensor<32x16xf32>
// ONE: mixer.permute_blocks %{{.*}}, %{{.*}} {inner = 4 : i64, outer = 1 : i64}

// The gradient retraces the path: the inverse permutation and the same
// all-to-all carry the slot-row gradient back.
// GRAD-LABEL: module attributes {mixer.mesh
// GRAD: %[[XR:.*]] = mixer.all_to_all %[[XD:.*]] {group = "ep"} : tensor<32x16xf32>
// GRAD: %[[XE:.*]], %[[PO:.*]], %[[GO:.*]] = mixer.permute_blocks %[[XR]], %[[O:[^ ]*]] {inner = 2 : i64, outer = 2 : i64}
// GRAD: %[[YR:.*]], %[[RO:.*]], %{{.*}} = mixer.permute_blocks %{{.*}}, %[[PO]] {inner = 2 : i64, outer = 2 : i64}
// GRAD: %[[DYD:.*]], %{{.*}} = mixer.combine_grad
// GRAD: %[[DYR:.*]] = mixer.all_to_all %[[DYD]] {group = "ep"} : tensor<32x16xf32>
// GRAD: %[[DYE:.*]], %{{.*}}, %{{.*}} = mixer.permute_blocks %[[DYR]], %[[RO]] {inner = 2 : i64, outer = 2 : i64}
// GRAD: %[[DXE:.*]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} = mixer.experts_grad %[[XE]], %{{.*}}, %[[GO]], {{.*}}, %[[DYE]]
// GRAD: %[[DXR:.*]], %{{.*}}, %{{.*}} = mixer.permute_blocks %[[DXE]], %[[PO]] {inner = 2 : i64, outer = 2 : i64}
// GRAD: %[[DXD:.*]] = mixer.all_to_all %[[DXR]] {group = "ep"}
// GRAD: mixer.dispatch_grad %[[DXD]]

// REFUSED: error: 'mixer.experts' op has 4 experts, which do not divide into 3 expert shards
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %rk: tensor<16x4xf32> {mixer.param = "rk"},
    %rb: tensor<4xf32> {mixer.param = "rb"}, %w1: tensor<4x16x32xf32> {mixer.param = "w1"},
    %b1: tensor<4x32xf32> {mixer.param = "b1"}, %w2: tensor<4x32x16xf32> {mixer.param = "w2"},
    %b2: tensor<4x16xf32> {mixer.param = "b2"}) -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  %l = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

// Tokens-choose routes with capacity too: equal blocks.
// CHECK-LABEL: module attributes {mixer.mesh
// CHECK: mixer.select_experts %{{.*}} {{{.*}}routing = #mixer<routing tokens_choose>}
// CHECK: mixer.all_to_all %{{.*}} {group = "ep"} : tensor<32x16xf32>
// CHECK: mixer.experts {{.*}} -> tensor<32x16xf32>
// CHECK: mixer.all_to_all %{{.*}} {group = "ep"} : tensor<32x16xf32>
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %rk: tensor<16x4xf32> {mixer.param = "rk"},
    %rb: tensor<4xf32> {mixer.param = "rb"}, %w1: tensor<4x16x32xf32> {mixer.param = "w1"},
    %b1: tensor<4x32xf32> {mixer.param = "b1"}, %w2: tensor<4x32x16xf32> {mixer.param = "w2"},
    %b2: tensor<4x16xf32> {mixer.param = "b2"}) -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing tokens_choose>, num_groups = 2, capacity = 4, k = 2} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  %l = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

// σ-MoE is dropless: its rows go ragged by the routing's offsets into a
// worst-case buffer of ep · (slots / k) · min(k, E_l) = 2 · 16 · 2 rows, are
// reordered by the received offsets, and come back ragged to the 32 slots.
// CHECK-LABEL: module attributes {mixer.mesh
// CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.route
// CHECK: %[[XD:.*]] = mixer.dispatch
// CHECK: %[[XR:.*]], %{{.*}} = mixer.all_to_all_v %[[XD]], %[[O]] {group = "ep"} : (tensor<32x16xf32>, tensor<5xi32>) -> (tensor<64x16xf32>, tensor<5xi32>)
// CHECK: %[[TR:.*]], %[[RO:.*]] = mixer.all_to_all_v %[[T]], %[[O]] {group = "ep"} : (tensor<32xi32>, tensor<5xi32>) -> (tensor<64xi32>, tensor<5xi32>)
// CHECK: %[[XE:.*]], %[[PO:.*]], %[[GO:.*]] = mixer.permute_blocks %[[XR]], %[[RO]] {inner = 2 : i64, outer = 2 : i64}
// CHECK: mixer.experts %[[XE]], %{{.*}}, %[[GO]], %{{.*}}, %{{.*}} {activation = #mixer<activation relu>} : (tensor<64x16xf32>, tensor<64xi32>, tensor<3xi32>, tensor<2x16x8xf32>, tensor<2x8x16xf32>) -> tensor<64x16xf32>
// CHECK: %[[YR:.*]], %{{.*}}, %{{.*}} = mixer.permute_blocks %{{.*}}, %[[PO]] {inner = 2 : i64, outer = 2 : i64}
// CHECK: %[[YD:.*]], %{{.*}} = mixer.all_to_all_v %[[YR]], %[[RO]] {group = "ep"} : (tensor<64x16xf32>, tensor<5xi32>) -> (tensor<32x16xf32>, tensor<5xi32>)
// CHECK: mixer.combine %[[YD]], %[[T]], %[[G]]
// ONE-LABEL: module attributes {mixer.mesh
// ONE: mixer.all_to_all_v %{{.*}}, %{{.*}} {group = "ep"} : (tensor<32x16xf32>, tensor<5xi32>) -> (tensor<64x16xf32>, tensor<5xi32>)
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %sel: tensor<4x16xf32> {mixer.param = "sel"},
    %keys: tensor<4x16x8xf32> {mixer.param = "keys"}, %values: tensor<4x8x16xf32> {mixer.param = "values"}) -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 2} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x8x16xf32>
  %l = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  return %l : tensor<f32>
}
