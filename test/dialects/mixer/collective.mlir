// RUN: mixer-opt %s | mixer-opt | FileCheck %s
// RUN: mixer-opt %s --mlir-print-op-generic | mixer-opt | FileCheck %s

// The collectives of a parallel program print and parse back, in a module
// whose mesh sizes their groups.
module attributes {mixer.mesh = {dp = 2 : i64, ep = 2 : i64}} {
  // CHECK-LABEL: func.func @exchange
  // CHECK: mixer.all_to_all %{{.*}} {group = "ep"} : tensor<8x4xf32>
  // CHECK: mixer.all_to_all %{{.*}} {group = "world"} : tensor<8xi32>
  // CHECK: mixer.all_to_all_v %{{.*}}, %{{.*}} {group = "ep"} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<12x4xf32>, tensor<5xi32>)
  // CHECK: mixer.all_reduce %{{.*}} {group = "edp"} : tensor<4xf32>
  // CHECK: mixer.permute_blocks %{{.*}}, %{{.*}} {inner = 2 : i64, outer = 2 : i64} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<8x4xf32>, tensor<5xi32>, tensor<3xi32>)
  func.func @exchange(%x: tensor<8x4xf32>, %t: tensor<8xi32>, %o: tensor<5xi32>, %g: tensor<4xf32>) {
    %a = mixer.all_to_all %x {group = "ep"} : tensor<8x4xf32>
    %b = mixer.all_to_all %t {group = "world"} : tensor<8xi32>
    %c, %co = mixer.all_to_all_v %x, %o {group = "ep"} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<12x4xf32>, tensor<5xi32>)
    %d = mixer.all_reduce %g {group = "edp"} : tensor<4xf32>
    %e, %eo, %eg = mixer.permute_blocks %x, %o {outer = 2, inner = 2} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<8x4xf32>, tensor<5xi32>, tensor<3xi32>)
    return
  }
}
