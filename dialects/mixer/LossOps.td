//===- LossOps.td - training losses and scalar arithmetic --*- tablegen -*-===//

#ifndef MIXER_LOSSOPS_TD
#define MIXER_LOSSOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class Mixer_BinaryOp<string mnemonic, string summaryText>
    : Mixer_Op<mnemonic, [Pure, SameOperandsAndResultType,
                          DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = summaryText;
  let arguments = (ins Mixer_F32Tensor:$lhs, Mixer_F32Tensor:$rhs);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Mixer_MultiplyOp : Mixer_BinaryOp<"multiply", "elementwise product"> {
  let kernel = "Multiply";
}
def Mixer_DivideOp : Mixer_BinaryOp<"divide", "elementwise quotient (loss normalisation)"> {
  let kernel = "Divide";
}

def Mixer_ScaleOp : Mixer_Op<"scale", [Pure, SameOperandsAndResultType,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "multiplication by a constant (loss factors)";
  let arguments = (ins Mixer_F32Tensor:$input, F64Attr:$factor);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input `by` $factor attr-dict `:` type($result)";
  let kernel = "Scale";
}

def Mixer_GatherPositionsOp : Mixer_Op<"gather_positions", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "rows of the sequence at per-example positions (masked-LM inputs)";
  let description = [{
    `result[b·P + p] = input[b, positions[b, p]]` for input `[B, S, D]` and
    positions `[B, P]`.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Tensor:$positions);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $positions attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "GatherPositions";
}

def Mixer_GatherPositionsGradOp : Mixer_Op<"gather_positions_grad", [Pure]> {
  let summary = "scatter-add of gathered-row gradients back to [B, S, D]";
  let arguments = (ins Mixer_F32Tensor:$result_grad, Mixer_I32Tensor:$positions);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $result_grad `,` $positions attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "GatherPositionsGrad";
}

def Mixer_SoftmaxCrossEntropyOp : Mixer_Op<"softmax_cross_entropy", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "Σ weight · cross-entropy of softmax(logits) against labels";
  let description = [{
    Logits `[R, C]`, labels `[R]` (−1 = ignored row), optional weights `[R]`;
    the result is the weighted sum (normalise with mixer.divide).
  }];
  let arguments = (ins Mixer_F32Tensor:$logits, Mixer_I32Tensor:$labels,
                       Optional<Mixer_F32Tensor>:$weights);
  let results = (outs 0DTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $logits `,` $labels (`weights` $weights^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "SoftmaxCrossEntropy";
}

def Mixer_SoftmaxCrossEntropyGradOp : Mixer_Op<"softmax_cross_entropy_grad",
    [Pure]> {
  let summary = "gradient of mixer.softmax_cross_entropy: dloss · w · (softmax − onehot)";
  let arguments = (ins Mixer_F32Tensor:$logits, Mixer_I32Tensor:$labels,
                       0DTensorOf<[F32]>:$result_grad,
                       Optional<Mixer_F32Tensor>:$weights);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $logits `,` $labels `,` $result_grad (`weights` $weights^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let kernel = "SoftmaxCrossEntropyGrad";
}

def Mixer_SquaredErrorOp : Mixer_Op<"squared_error", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "Σ (prediction − target)² (regression heads)";
  let arguments = (ins Mixer_F32Tensor:$prediction, Mixer_F32Tensor:$target);
  let results = (outs 0DTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $prediction `,` $target attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "SquaredError";
}

def Mixer_LabelMaskOp : Mixer_Op<"label_mask", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "1 where a label is set (>= 0), 0 where it is padding (-1)";
  let description = [{
    The weights of padded prediction slots, e.g. the masked-LM normaliser
    Σ weights of spec §9 from `masked_lm_ids` padded with −1.
  }];
  let arguments = (ins Mixer_I32Tensor:$labels);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$labels attr-dict `:` type($labels) `to` type($result)";
  let hasVerifier = 1;
  let kernel = "LabelMask";
}

def Mixer_ArgmaxOp : Mixer_Op<"argmax", [Pure]> {
  let summary = "index of the largest value of each last-axis row";
  let description = [{
    The predicted class of each row of logits (the first of equal maxima),
    for evaluation metrics such as the masked-LM accuracy. It has no
    gradient: training plans output it beside the losses.
  }];
  let arguments = (ins Mixer_F32Tensor:$input);
  let results = (outs Mixer_I32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let kernel = "Argmax";
}

#endif // MIXER_LOSSOPS_TD
