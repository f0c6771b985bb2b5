//===- GradientInterface.td - reverse-mode derivatives of ops -*- tablegen -*-===//

#ifndef MIXER_GRADIENTINTERFACE_TD
#define MIXER_GRADIENTINTERFACE_TD

include "mlir/IR/OpBase.td"

def Mixer_GradientOpInterface : OpInterface<"GradientOpInterface"> {
  let description = [{
    An op that knows its reverse-mode derivative. `mixer-autodiff` walks a
    function backwards and asks each op for the gradients of its operands
    given the gradients of its results. Each op defines its gradient beside
    its verifier, in the file of its family.
  }];
  let cppNamespace = "::mixer::graph";
  let methods = [
    InterfaceMethod<[{
        Builds the gradient of the loss with respect to every operand, given
        `resultGrads` (one per result; a null value where a result does not
        reach the loss), and appends one value per operand to
        `operandGrads` (null for operands without a gradient, such as token
        ids).
      }],
      "::llvm::LogicalResult", "buildGradients",
      (ins "::mlir::OpBuilder &":$builder, "::mlir::ValueRange":$resultGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>
  ];
}

#endif // MIXER_GRADIENTINTERFACE_TD
