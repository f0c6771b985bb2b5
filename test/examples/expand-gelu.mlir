// RUN: mixer-opt %s --load-pass-plugin=%expand_gelu_plugin --mixer-expand-gelu | FileCheck %s

// A plugin pass that rewrites mixer ops through their C++ classes, run alone:
// a GELU becomes x/2 + x/2 * tanh(sqrt(2/pi) * (x + 0.044715 * x^3)); other
// activations stay.
// CHECK-LABEL: func.func @feed_forward
// CHECK-SAME: (%[[X:.*]]: tensor<8x16xf32>, %[[W:.*]]: tensor<16x32xf32>)
// CHECK: %[[H:.*]] = mixer.dense %[[X]], %[[W]]
// CHECK-NEXT: %[[SQUARE:.*]] = mixer.multiply %[[H]], %[[H]]
// CHECK-NEXT: %[[CUBE:.*]] = mixer.multiply %[[SQUARE]], %[[H]]
// CHECK-NEXT: %[[TERM:.*]] = mixer.scale %[[CUBE]] by 4.471500e-02
// CHECK-NEXT: %[[SUM:.*]] = mixer.add %[[H]], %[[TERM]]
// CHECK-NEXT: %[[INNER:.*]] = mixer.scale %[[SUM]] by 0.79788456080286541
// CHECK-NEXT: %[[TANH:.*]] = mixer.activation tanh %[[INNER]]
// CHECK-NEXT: %[[HALF:.*]] = mixer.scale %[[H]] by 5.000000e-01
// CHECK-NEXT: %[[PRODUCT:.*]] = mixer.multiply %[[HALF]], %[[TANH]]
// CHECK-NEXT: %[[GELU:.*]] = mixer.add %[[HALF]], %[[PRODUCT]]
// CHECK-NEXT: %[[POOLED:.*]] = mixer.activation tanh %[[X]]
// CHECK-NEXT: return %[[GELU]], %[[POOLED]]
func.func @feed_forward(%x: tensor<8x16xf32>, %w: tensor<16x32xf32>) -> (tensor<8x32xf32>, tensor<8x16xf32>) {
  %h = mixer.dense %x, %w : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
  %g = mixer.activation gelu %h : tensor<8x32xf32>
  %p = mixer.activation tanh %x : tensor<8x16xf32>
  return %g, %p : tensor<8x32xf32>, tensor<8x16xf32>
}

// Loaded into mixc, the plugin adds the pass at the graph stage, before fusion
// would fold the GELU into its dense: the artifact has no GELU kernel.
// RUN: mixc %models/tiny/bert_tiny.json --batch 2 --emit=fused | FileCheck %s --check-prefix=BUILTIN
// BUILTIN: mixer.dense {{.*}}activation = #mixer<activation gelu>
// RUN: mixc %models/tiny/bert_tiny.json --batch 2 --load-pass-plugin=%expand_gelu_plugin --emit=fused | FileCheck %s --check-prefix=FUSED --implicit-check-not=gelu
// FUSED: mixer.activation tanh
// RUN: mixc %models/tiny/bert_tiny.json --batch 2 --load-pass-plugin=%expand_gelu_plugin --emit=plan -o %t.extended.json
// RUN: FileCheck %s --check-prefix=PLAN --implicit-check-not=gelu < %t.extended.json
// PLAN: "kernel": "multiply"
// PLAN: "kind": "tanh"

// Plugins load before the command line is parsed, so their passes work in
// MLIR's debugging flags.
// RUN: mixc %models/tiny/bert_tiny.json --batch 2 --mlir-print-ir-after=mixer-expand-gelu --load-pass-plugin=%expand_gelu_plugin --emit=graph -o /dev/null 2>&1 | FileCheck %s --check-prefix=DEBUG
// DEBUG: IR Dump After {{.*}}ExpandGeluPass

// mixer-opt's --mixer-pipeline is the same pipeline, with the same extension.
// RUN: mixc %models/tiny/bert_tiny.json --batch 2 --emit=frontend -o %t.frontend.mlir
// RUN: mixer-opt %t.frontend.mlir --load-pass-plugin=%expand_gelu_plugin --mixer-pipeline | FileCheck %s --check-prefix=OPT --implicit-check-not=gelu
// OPT: mixrt.kernel "activation" {{.*}} params {kind = "tanh"}

// The pass run by mixer-opt on IR of the graph stage, and mixc continuing
// from its output, give the artifact of the plugin in mixc's pipeline.
// RUN: mixc %models/tiny/bert_tiny.json --batch 2 --emit=graph -o %t.graph.mlir
// RUN: mixer-opt %t.graph.mlir --load-pass-plugin=%expand_gelu_plugin --mixer-expand-gelu -o %t.expanded.mlir
// RUN: mixc %t.expanded.mlir --emit=plan -o %t.continued.json
// RUN: diff %t.extended.json %t.continued.json
