// RUN: mixer-opt %s -split-input-file -verify-diagnostics

func.func @unknown_group(%x: tensor<8x4xf32>) {
  // expected-error @+1 {{group must be one of world, ep, edp, got 'tp'}}
  %y = mixer.all_to_all %x {group = "tp"} : tensor<8x4xf32>
  return
}

// -----

module attributes {mixer.mesh = {dp = 1 : i64, ep = 3 : i64}} {
  func.func @rows_not_divisible(%x: tensor<8x4xf32>) {
    // expected-error @+1 {{input rows (8) must divide into the 3 ranks of group 'ep'}}
    %y = mixer.all_to_all %x {group = "ep"} : tensor<8x4xf32>
    return
  }
}

// -----

func.func @all_to_all_v_width(%x: tensor<8x4xf32>, %o: tensor<3xi32>) {
  // expected-error @+1 {{result must hold rows of the input's width and element type}}
  %y, %yo = mixer.all_to_all_v %x, %o {group = "ep"} : (tensor<8x4xf32>, tensor<3xi32>) -> (tensor<8x5xf32>, tensor<3xi32>)
  return
}

// -----

module attributes {mixer.mesh = {dp = 1 : i64, ep = 2 : i64}} {
  func.func @all_to_all_v_blocks(%x: tensor<8x4xf32>, %o: tensor<4xi32>) {
    // expected-error @+1 {{offsets must have k·2 + 1 entries, k >= 1, but has 4}}
    %y, %yo = mixer.all_to_all_v %x, %o {group = "ep"} : (tensor<8x4xf32>, tensor<4xi32>) -> (tensor<8x4xf32>, tensor<4xi32>)
    return
  }
}

// -----

func.func @all_to_all_v_received(%x: tensor<8x4xf32>, %o: tensor<3xi32>) {
  // expected-error @+1 {{received_offsets must have shape [3] but has [5]}}
  %y, %yo = mixer.all_to_all_v %x, %o {group = "ep"} : (tensor<8x4xf32>, tensor<3xi32>) -> (tensor<8x4xf32>, tensor<5xi32>)
  return
}

// -----

func.func @all_reduce_type(%x: tensor<4xf32>) {
  // expected-error @+1 {{all of {input, result} have same type}}
  %y = "mixer.all_reduce"(%x) {group = "world"} : (tensor<4xf32>) -> tensor<5xf32>
  return
}

// -----

func.func @permute_offsets(%x: tensor<8x4xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{offsets must have shape [7] but has [5]}}
  %y, %yo, %yg = mixer.permute_blocks %x, %o {outer = 2, inner = 3} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<8x4xf32>, tensor<7xi32>, tensor<4xi32>)
  return
}

// -----

func.func @permute_groups(%x: tensor<8x4xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{group_offsets must have shape [3] but has [2]}}
  %y, %yo, %yg = mixer.permute_blocks %x, %o {outer = 2, inner = 2} : (tensor<8x4xf32>, tensor<5xi32>) -> (tensor<8x4xf32>, tensor<5xi32>, tensor<2xi32>)
  return
}

// -----

// expected-error @+1 {{'mixer.mesh' must be a dictionary}}
module attributes {mixer.mesh = 2 : i64} {
}

// -----

// expected-error @+1 {{'mixer.mesh' holds the positive integers dp and ep}}
module attributes {mixer.mesh = {dp = 1 : i64, ep = 0 : i64}} {
}
