//===- MixrtOps.td - runtime-level dialect -----------------*- tablegen -*-===//

#ifndef MIXRT_OPS_TD
#define MIXRT_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixrt_Dialect : Dialect {
  let name = "mixrt";
  let summary = "Runtime-level plan: arena buffers and kernel calls";
  let description = [{
    What the runtime executes, one op per plan entry: buffers carved out of one
    arena (`mixrt.alloc`, placed by `mixrt-plan-memory`), views that reinterpret
    a buffer's shape, and calls of the runtime's kernels in program order.
    Function arguments are parameters and inputs; returned buffers are outputs.
  }];
  let cppNamespace = "::mixer::rt";
  // The function attributes of MixrtDialect.h are checked where attached.
  let hasOperationAttrVerify = 1;
}

class Mixrt_Op<string mnemonic, list<Trait> traits = []>
    : Op<Mixrt_Dialect, mnemonic, traits>;

def Mixrt_AllocOp : Mixrt_Op<"alloc"> {
  let summary = "a buffer in the arena";
  let description = [{
    `offset` (bytes, 64-byte aligned) is assigned by `mixrt-plan-memory`.

    ```mlir
    %b = mixrt.alloc {offset = 4096 : i64} : memref<2x8x16xf32>
    ```
  }];
  let arguments = (ins OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$offset);
  let results = (outs AnyStaticShapeMemRef:$buffer);
  let assemblyFormat = "attr-dict `:` type($buffer)";
  let hasVerifier = 1;
}

def Mixrt_ViewOp : Mixrt_Op<"view", [Pure]> {
  let summary = "the same bytes with another row-major shape";
  let arguments = (ins AnyStaticShapeMemRef:$source);
  let results = (outs AnyStaticShapeMemRef:$result);
  let assemblyFormat = "$source attr-dict `:` type($source) `to` type($result)";
  let hasVerifier = 1;
}

def Mixrt_NoneOp : Mixrt_Op<"none", [Pure]> {
  let summary = "placeholder for an absent optional kernel operand";
  let results = (outs AnyMemRef:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
}

def Mixrt_KernelOp : Mixrt_Op<"kernel", [AttrSizedOperandSegments]> {
  let summary = "call of a runtime kernel";
  let description = [{
    Reads `ins`, writes `outs`. The callee is a kernel of the plan kernel
    vocabulary (runtime/support/Kernels.def), whose operands and results
    the op has in number, with `mixrt.none` only for optional operands;
    `params` holds the kernel's attributes, each of its type (bool, i64,
    f64, or a string of the allowed values), all the required ones among
    them.

    ```mlir
    mixrt.kernel "dense" ins(%x, %w, %b : memref<16x16xf32>, memref<16x32xf32>, memref<32xf32>)
                         outs(%y : memref<16x32xf32>) params {activation = "gelu", transpose_w = false}
    ```
  }];
  let arguments = (ins StrAttr:$callee, Variadic<AnyMemRef>:$inputs,
                       Variadic<AnyMemRef>:$outputs, DictionaryAttr:$params);
  let assemblyFormat = [{
    $callee `ins` `(` ($inputs^ `:` type($inputs))? `)`
    `outs` `(` ($outputs^ `:` type($outputs))? `)` `params` $params attr-dict
  }];
  let builders = [
    OpBuilder<(ins "::mixer::Kernel":$kernel, "::mlir::ValueRange":$inputs,
                   "::mlir::ValueRange":$outputs,
                   "::mlir::DictionaryAttr":$params), [{
      build($_builder, $_state, ::mixer::kernelName(kernel), inputs, outputs,
            params);
    }]>
  ];
  let extraClassDeclaration = [{
    /// The kernel called; the op verifies that its callee names one.
    const ::mixer::KernelInfo &getKernelInfo() {
      return *::mixer::findKernel(getCallee());
    }
    ::mixer::Kernel getKernel() { return getKernelInfo().kernel; }
  }];
  let hasVerifier = 1;
}

#endif // MIXRT_OPS_TD
