//===- MixingOps.td - token-mixing ops ---------------------*- tablegen -*-===//

#ifndef MIXER_MIXINGOPS_TD
#define MIXER_MIXINGOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixer_LinearMixOp : Mixer_Op<"linear_mix", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>,
    DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "learned dense mixing along both axes (Sparse Mixer)";
  let description = [{
    `result[b] = W_s · input[b] · W_h` with `W_s: [S, S]` and `W_h: [D, D]`,
    both untransposed.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$seq_kernel,
                       Mixer_F32Tensor:$hidden_kernel);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $seq_kernel `,` $hidden_kernel attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "LinearMix";
}

def Mixer_SpectralMixOp : Mixer_Op<"spectral_mix", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "Fourier (FNet) or Hartley mixing";
  let description = [{
    `Re(F_S · X · F_D)` per example, or `Re − Im` of the same 2-D DFT when
    `hartley` is set. `algorithm` is `auto` until `mixer-select-mixing-algorithm`
    picks `fft` or `matmul` (DFT matrices); every choice computes the same.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, UnitAttr:$hartley,
                       DefaultValuedAttr<Mixer_MixAlgorithmAttr,
                           "::mixer::graph::MixAlgorithm::automatic">:$algorithm);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let kernel = "SpectralMix";
}

def Mixer_StructuredMixOp : Mixer_Op<"structured_mix", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "circulant or Toeplitz mixing along both axes";
  let description = [{
    Circulant: `Circ(v_s) · X · Circ(v_h)ᵀ`, `Circ(v)[r,c] = v[(r − c) mod n]`,
    `v_s: [S]`, `v_h: [D]`. Toeplitz (`toeplitz` set): `Toep(t_s) · X ·
    Toep(t_h)ᵀ`, `Toep(t)[r,c] = t[(n − 1) + c − r]`, `t_s: [2S−1]`,
    `t_h: [2D−1]`.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$seq_kernel,
                       Mixer_F32Tensor:$hidden_kernel, UnitAttr:$toeplitz,
                       DefaultValuedAttr<Mixer_MixAlgorithmAttr,
                           "::mixer::graph::MixAlgorithm::automatic">:$algorithm);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $seq_kernel `,` $hidden_kernel attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "StructuredMix";
}

#endif // MIXER_MIXINGOPS_TD
