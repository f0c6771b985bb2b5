//===- KernelInterface.td - how ops lower to plan kernels --*- tablegen -*-===//

#ifndef MIXER_KERNELINTERFACE_TD
#define MIXER_KERNELINTERFACE_TD

include "mlir/IR/OpBase.td"

def Mixer_KernelOpInterface : OpInterface<"KernelOpInterface"> {
  let description = [{
    An op that one plan kernel of runtime/support/Kernels.def runs, operand
    for operand: `mixer-lower-to-runtime` passes the op's operands in ODS
    order (an absent optional one as `mixrt.none`) and its attributes by
    name, renamed where the kernel names them differently, unit attributes
    as booleans and enums as their strings. An op gets it by setting
    `kernel` (see Mixer_Op in MixerBase.td), which also generates the
    methods and checks at compile time that the op's operands and attributes
    are the kernel's.
  }];
  let cppNamespace = "::mixer::graph";
  let methods = [
    StaticInterfaceMethod<"The plan kernel that runs the op.",
      "::mixer::Kernel", "getKernel">,
    StaticInterfaceMethod<[{
        The kernel's name for the op's attribute `name`.
      }],
      "::llvm::StringRef", "getKernelAttributeName",
      (ins "::llvm::StringRef":$name)>,
    InterfaceMethod<[{
        The op's operands in ODS order, the kernel's operands: null for an
        absent optional operand; every value of a variadic one.
      }],
      "::llvm::SmallVector<::mlir::Value>", "getKernelOperands">
  ];
}

def Mixer_FlopCountOpInterface : OpInterface<"FlopCountOpInterface"> {
  let description = [{
    An op with matrix products, whose floating-point operations
    `mixer-lower-to-runtime` adds up into the plan's `flops` (the
    throughput `mixer-run bench` reports). Each op counts its own beside its
    verifier, in the file of its family.
  }];
  let cppNamespace = "::mixer::graph";
  let methods = [
    InterfaceMethod<[{
        The floating-point operations of the op's matrix products (a
        multiply-add counts two).
      }],
      "double", "getFlops">
  ];
}

#endif // MIXER_KERNELINTERFACE_TD
