//===- Passes.td - mixer compiler passes -------------------*- tablegen -*-===//
//
// The index of every pass: one file per pass under passes/, one lit test per
// pass under test/passes/, pipelines in Pipelines.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_PASSES_TD
#define MIXER_PASSES_TD

include "mlir/Pass/PassBase.td"

def MixerVerifyShapes : Pass<"mixer-verify-shapes", "mlir::ModuleOp"> {
  let summary = "Check that every value of the model has a static, supported type";
  let description = [{
    Artifacts have static shapes (one compile per batch and sequence length).
    The pass rejects dynamic dimensions, unranked tensors and element types
    other than f32/i32, naming the offending value, and checks that every
    function argument is marked as a model input (`mixer.input`), parameter
    (`mixer.param`) or optimizer state (`mixer.state`).

    ```mlir
    func.func @forward(%x: tensor<?x8xf32> {mixer.input = "x"}) ...
    // error: argument 0 ('x') has a dynamic shape: recompile for a fixed batch
    ```
  }];
}

def MixerSelectOutputs : Pass<"mixer-select-outputs", "mlir::ModuleOp"> {
  let summary = "Keep only the named model outputs";
  let description = [{
    Drops the results of `@forward` that `outputs` does not name (the names of
    its `mixer.outputs` attribute), so canonicalization removes the work only
    they needed, e.g. the masked-LM logits when only `sequence_output` and
    `pooled_output` are wanted.

    ```mlir
    func.func @forward(...) -> (tensor<8x512x512xf32>, tensor<8x512x32000xf32>)
        attributes {mixer.outputs = ["sequence_output", "mlm_logits"]}
    // with outputs=sequence_output becomes
    func.func @forward(...) -> tensor<8x512x512xf32>
        attributes {mixer.outputs = ["sequence_output"]}
    ```
  }];
  let options = [
    ListOption<"outputs", "outputs", "std::string", "names of the outputs to keep">
  ];
}

def MixerDecomposeMoe : Pass<"mixer-decompose-moe", "mlir::func::FuncOp"> {
  let summary = "Rewrite MoE layers into route → dispatch → experts → combine";
  let description = [{
    `mixer.moe` becomes router logits (`mixer.dense`; when `router_bf16`,
    `mixer.round_bf16` of the input and the kernel, a bias-free product and
    `mixer.router_logits_bf16`), `mixer.softmax` (`{bf16}` when
    `router_bf16`), and
    `mixer.select_experts`; `mixer.sigma_moe` becomes logits against the
    transposed `expert_sel` and a sigmoid `mixer.route`. Both continue with
    `mixer.dispatch` (gather the slot rows), `mixer.experts` (per-expert
    feed-forward, whose `layout` records the routing's slot layout: capacity
    for `mixer.moe`, grouped for `mixer.sigma_moe`) and `mixer.combine`
    (gate-weighted scatter-add), so no one-hot dispatch or combine tensor is
    ever built. A training step's MoE
    noise becomes `mixer.random_scale` ops: jitter on the router's input
    (dispatch still reads the unperturbed tokens), expert dropout on the
    experts' output rows before `mixer.combine`; σ-MoE expert dropout
    becomes `mixer.drop_experts` on the selection logits before the route.
    The router losses a training step asks for (the op's `losses` results)
    become `mixer.router_z_loss` of the logits and, for tokens_choose,
    `mixer.load_balancing_loss` of the probabilities; σ-MoE's
    `mixer.entropy_regularizer` of the raw logits.

    ```mlir
    %y = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, ...}
    // becomes
    %l = mixer.dense %x2d, %rk, %rb
    %p = mixer.softmax %l
    %t, %g, %o = mixer.select_experts %p {...}
    %xd = mixer.dispatch %x2d, %t
    %yd = mixer.experts %xd, %t, %o, %w1 bias %b1, %w2 bias %b2 {activation = #mixer<activation gelu>, layout = #mixer<expert_layout capacity>}
    %y2d = mixer.combine %yd, %t, %g
    ```
  }];
}

def MixerPartitionExperts : Pass<"mixer-partition-experts", "mlir::ModuleOp"> {
  let summary = "Shard each MoE layer's experts over the ep ranks of a mesh";
  let description = [{
    Turns a decomposed MoE layer of the per-rank program into its expert-
    parallel form on a `dp × ep` mesh (recorded as the module's
    `mixer.mesh`; nothing changes at 1 × 1). Each rank keeps E / ep experts:
    the expert parameters become their axis-0 slices (`mixer.shard`), the
    dispatched slot rows and their tokens go to the ranks that own their
    experts before `mixer.experts` and come back after it. Capacity routings
    (experts_choose, tokens_choose) send equal blocks (`mixer.all_to_all`);
    σ-MoE's dropless rows go ragged (`mixer.all_to_all_v`) into a worst-case
    buffer. `mixer.permute_blocks` reorders the received rows from
    (sender, local expert) to (local expert, sender) and back. The local
    `mixer.experts` reads the offsets permute_blocks forms, so its `layout`
    is `grouped` whatever the routing. On any mesh above one rank, every
    `mixer.entropy_regularizer` gets `group = "world"`: σ-MoE's batch mean
    spans every rank's tokens.

    ```mlir
    %ye = mixer.experts %xd, %tok, %off, %w1 ...       // w1 : tensor<4x16x32xf32>
    // at ep = 2 becomes
    %xr = mixer.all_to_all %xd {group = "ep"}
    %tr = mixer.all_to_all %tok {group = "ep"}
    %xe, %po, %go = mixer.permute_blocks %xr, %off {inner = 2, outer = 2}
    %te, %po2, %go2 = mixer.permute_blocks %tr, %off {inner = 2, outer = 2}
    %y = mixer.experts %xe, %te, %go, %w1 ...          // w1 : tensor<2x16x32xf32>, grouped
    %yr, %ro, %rg = mixer.permute_blocks %y, %po {inner = 2, outer = 2}
    %ye = mixer.all_to_all %yr {group = "ep"}
    ```
  }];
  let options = [
    Option<"dp", "dp", "int64_t", /*default=*/"1", "data-parallel replicas">,
    Option<"ep", "ep", "int64_t", /*default=*/"1", "expert shards">
  ];
}

def MixerAutodiff : Pass<"mixer-autodiff", "mlir::ModuleOp"> {
  let summary = "Append the gradients of the loss with respect to every parameter";
  let description = [{
    Reverse-mode differentiation of `@forward`: starting from the output named
    `loss` (a scalar) with gradient 1, walks the ops backwards and asks each
    for its operand gradients through `GradientOpInterface` (defined beside
    each op family), summing gradients that meet at a value. Every parameter
    gets a result named `grad/<parameter name>` (zeros when the loss does not
    depend on it). Runs before fusion: fused epilogues drop values that
    gradients need.

    ```mlir
    func.func @forward(%x: tensor<4x8xf32> {mixer.input = "x"},
                       %w: tensor<8x2xf32> {mixer.param = "w"}) -> tensor<f32>
        attributes {mixer.outputs = ["loss"]}
    // gains a result
    //   %dw = mixer.dense_weight_grad %x, %dy : ... -> tensor<8x2xf32>
    // named "grad/w" in mixer.outputs
    ```
  }];
}

def MixerSumOverRanks : Pass<"mixer-sum-over-ranks", "mlir::ModuleOp"> {
  let summary = "Sum the ranks' gradients and losses of a parallel training step";
  let description = [{
    Each rank of a parallel training step (after `mixer-autodiff`) has
    computed its share of the objective: the IR builder divides by the
    whole batch's counts. This pass makes the step's results global sums
    (nothing changes on a one-rank module): every `grad/P` of a replicated
    parameter gets a `mixer.all_reduce` over `world`; the gradient of an
    expert slice (`mixer.shard` over `ep`), which the all-to-alls'
    gradients have already summed over its expert group, one over `edp`
    when there are replicas (`dp > 1`); and every f32 scalar result (the
    loss and its terms) one over `world`. Summed results are marked
    `mixer.replicated`, expert gradients carry their parameter's
    `mixer.shard`, so the plan says how to gather each output.

    ```mlir
    func.func @forward(..., %w: tensor<8x2xf32> {mixer.param = "w"})
        -> (tensor<f32>, tensor<8x2xf32>)
        attributes {mixer.outputs = ["loss", "grad/w"]}
    //   return %loss, %dw
    // becomes, in a module with mixer.mesh = {dp = 1, ep = 2}
    //   %0 = mixer.all_reduce %loss {group = "world"} : tensor<f32>
    //   %1 = mixer.all_reduce %dw {group = "world"} : tensor<8x2xf32>
    //   return %0, %1      // both results {mixer.replicated}
    ```
  }];
}

def MixerApplyOptimizer : Pass<"mixer-apply-optimizer", "mlir::ModuleOp"> {
  let summary = "Replace the parameter gradients by one AdamW update per parameter";
  let description = [{
    Turns the differentiated `@forward` (after `mixer-autodiff`) into a whole
    training step. For every parameter `P` (in argument order) it adds the
    zero-initialised state arguments `adam_m/P` and `adam_v/P` (argument
    attribute `mixer.state`), and at the very end of the function one
    `mixer.adamw` that takes the gradient `grad/P`; the inputs
    `learning_rate` (f32 []) and `step` (i32 [], reused when the function
    already has it) feed every update. With `clip_grad_norm > 0` a
    `mixer.global_norm` of all gradients precedes the updates. The
    `grad/*` results are dropped; the updated parameter and moments become
    results marked `mixer.update = "<argument name>"` after the outputs,
    which `mixer-lower-to-runtime` writes in place. The hyper-parameters
    come from the function's `mixer.training` dictionary (`b1`, `b2`,
    `eps`, `weight_decay`, `clip_grad_norm`, all f64).

    ```mlir
    func.func @forward(%x: ..., %w: tensor<8x2xf32> {mixer.param = "w"})
        -> (tensor<f32>, tensor<8x2xf32>)
        attributes {mixer.outputs = ["loss", "grad/w"], mixer.training = {...}}
    // becomes
    func.func @forward(%x: ..., %w: tensor<8x2xf32> {mixer.param = "w"},
                       %lr: tensor<f32> {mixer.input = "learning_rate"},
                       %step: tensor<i32> {mixer.input = "step"},
                       %m: tensor<8x2xf32> {mixer.state = "adam_m/w", ...},
                       %v: tensor<8x2xf32> {mixer.state = "adam_v/w", ...})
        -> (tensor<f32>, tensor<8x2xf32> {mixer.update = "w"},
            tensor<8x2xf32> {mixer.update = "adam_m/w"},
            tensor<8x2xf32> {mixer.update = "adam_v/w"})
        attributes {mixer.outputs = ["loss"], ...}
    //   %w1, %m1, %v1 = mixer.adamw %w, %m, %v, %dw, %lr, %step {...}
    ```
  }];
}

def MixerFuseRouter : Pass<"mixer-fuse-router", "mlir::func::FuncOp"> {
  let summary = "Fuse the router softmax into expert selection";
  let description = [{
    `mixer.select_experts(mixer.softmax(l))` (the bfloat16 router's softmax
    for a `router_bf16` selection) becomes one
    `mixer.route(l)` whose kernel computes the probabilities and the top-k or
    top-C selection in one pass.
  }];
}

def MixerFuseDenseActivation : Pass<"mixer-fuse-dense-activation", "mlir::func::FuncOp"> {
  let summary = "Fuse bias + activation epilogues into mixer.dense";
  let description = [{
    `mixer.activation(mixer.dense(x, w, b))` with an activation-free dense
    whose only user is the activation becomes one `mixer.dense` with the
    activation attribute, so the epilogue runs while the GEMM output is hot.

    ```mlir
    %h = mixer.dense %x, %w, %b : ...
    %g = mixer.activation gelu %h : ...
    // becomes
    %g = mixer.dense %x, %w, %b {activation = #mixer<activation gelu>} : ...
    ```

    Only the activations the target's dense kernel applies in its GEMM
    epilogue are fused (`TargetInfo::denseEpilogues` in
    runtime/support/TargetInfo.h): every one on `cpu`, `gelu` on `cuda`,
    where a `relu` or a `tanh` (the pooler's) stays a separate
    `mixer.activation`.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "target whose GEMM epilogues decide (cpu or cuda)">
  ];
}

def MixerFuseResidualLayerNorm : Pass<"mixer-fuse-residual-layer-norm", "mlir::func::FuncOp"> {
  let summary = "Fuse residual additions into the following LayerNorm";
  let description = [{
    `mixer.layer_norm(mixer.add(a, b))` where the sum has no other user becomes
    `mixer.add_layer_norm(a, b)`: one pass over memory instead of two.
  }];
}

def MixerSelectMixingAlgorithm : Pass<"mixer-select-mixing-algorithm", "mlir::func::FuncOp"> {
  let summary = "Choose FFT or matmul for spectral and structured mixing";
  let description = [{
    Replaces `algorithm = auto` by the cheaper of `fft` and `matmul` under the
    target's cost model: on `cpu` the FFT wins for Fourier/Hartley mixing at
    every size, and for circulant/Toeplitz mixing once the sequence is long
    enough that O(n log n) beats the dense product (Toeplitz pays for a
    2n-point circulant embedding). On `cuda` each candidate is timed by a
    roofline (flops over the GEMM or FFT throughput plus bytes over memory
    bandwidth): the FFT is memory-bound, the dense products run at the GEMM
    rate of the precision (fp32 on the FP32 pipes, bf16 on tensor cores), so
    at S = 512 bf16 picks the dense products and fp32 the FFT except for
    Toeplitz. Explicit choices are kept.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "target whose cost model decides (cpu or cuda)">,
    Option<"precision", "precision", "std::string", /*default=*/"\"fp32\"",
           "activation precision (fp32 or bf16), which sets the GEMM rate">
  ];
}

def MixerLowerToRuntime : Pass<"mixer-lower-to-runtime", "mlir::ModuleOp"> {
  let summary = "Lower the mixer graph to runtime kernel calls on buffers";
  let description = [{
    Every tensor becomes a buffer (`mixrt.alloc`, or a `mixrt.view` for
    reshapes), every op one or more `mixrt.kernel` calls of the plan kernels
    (runtime/support/Kernels.def), the function arguments memrefs. An op
    whose definition names its kernel (`let kernel`, Mixer_KernelOpInterface)
    becomes that kernel with its operands in order (`mixrt.none` for an
    absent optional one, and for optional kernel operands beyond the op's)
    and its attributes by name; a noise op keyed by a `mixer.noise_counter`
    passes the counter's `step`, `micro_step` and `micro_steps` to its
    kernel instead, and the counter lowers to nothing. The other ops are
    lowered by hand: the routings, LayerNorm without a residual, attention's
    dropout defaults, mixing with an unselected algorithm (an error), the
    in-place updates. Also records the model's FLOP count (`mixrt.flops`,
    from Mixer_FlopCountOpInterface) on the function. Results marked
    `mixer.update` (see `mixer-apply-optimizer`) leave the function's
    results: their `adamw` kernel writes the parameter or state argument
    in place, which the pass allows only when nothing reads that argument
    after the update.
  }];
  let dependentDialects = ["::mixer::rt::MixrtDialect"];
}

def MixrtAssignPrecision : Pass<"mixrt-assign-precision", "mlir::ModuleOp"> {
  let summary = "Store activations in the plan's precision";
  let description = [{
    With `precision=bf16` (a `cuda` plan) arena buffers that hold activations
    or their gradients become `bf16` memrefs; everything else stays as it
    is: parameters, their gradients, optimizer state, inputs, scalars and
    losses, and the router's logits and probabilities (routing and the router
    losses are fp32). Which results are activations is a property of the
    kernel, stated in runtime/support/Kernels.def: producers (`embed`,
    `dense`, `layer_norm`, `attention`, the mixing kernels, `dispatch`,
    `experts`, `combine`, the activation gradients of the backward kernels)
    write them, elementwise kernels (`activation`, `add`, `softmax`,
    `random_scale`, ...) keep the precision of their operands, and the router
    kernels demand fp32 operands, which keeps the elementwise chain before
    them (and the producer it starts from) in fp32. Views take
    the element type of the buffer they view. `fp32` changes nothing.

    A target whose TargetInfo lists its bf16 kernels (`cpu`: `dense` and
    `experts`) instead marks each step of those kernels whose result would be
    a bf16 activation with `bf16 = true` (products in bf16 with fp32
    accumulation; the router's product stays unmarked) and keeps in bf16
    only the buffers that such kernels alone write and read and that the
    function does not return (the feed-forward hidden layer).

    ```mlir
    %h = mixrt.alloc : memref<8x16x32xf32>
    mixrt.kernel "dense"(%x, %w, %b) -> (%h) {...}
    // becomes
    %h = mixrt.alloc : memref<8x16x32xbf16>
    ```
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "target of the plan (cpu or cuda)">,
    Option<"precision", "precision", "std::string", /*default=*/"\"fp32\"",
           "activation precision: fp32 or bf16">
  ];
}

def MixrtFuseExpertGather : Pass<"mixrt-fuse-expert-gather", "mlir::func::FuncOp"> {
  let summary = "Fuse the MoE dispatch into the experts' operand loads";
  let description = [{
    With `target=cuda`, a `dispatch` of the token rows x [T, D] into the slot
    rows xd [slots, D] whose result only `experts` and `experts_grad` read
    (as their first operand, with the dispatch's tokens) disappears with its
    buffer: those kernels read x itself and get `gather = true`, gathering
    row tokens[i] for slot i in their operand loads (empty slots, token -1,
    read zeros). A dispatch whose result anything else reads stays, as does
    one whose x has another element type than its result, or whose x a
    later kernel writes in place. Other targets are left as they are: the
    CPU experts read dispatched rows.

    ```mlir
    %xd = mixrt.alloc : memref<16x8xf32>
    mixrt.kernel "dispatch" ins(%x, %t : memref<8x8xf32>, memref<16xi32>) outs(%xd : memref<16x8xf32>) params {}
    mixrt.kernel "experts" ins(%xd, %t, %o, ...) outs(%yd : ...) params {activation = "gelu"}
    // becomes
    mixrt.kernel "experts" ins(%x, %t, %o, ...) outs(%yd : ...) params {activation = "gelu", gather = true}
    ```
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "target whose experts kernels decide (cpu or cuda)">
  ];
}

def MixrtPlanMemory : Pass<"mixrt-plan-memory", "mlir::ModuleOp"> {
  let summary = "Assign arena offsets to buffers by liveness";
  let description = [{
    Computes each buffer's live range in program order (from its first write
    to its last read, views included; returned buffers live to the end) and
    packs buffers whose ranges do not overlap into the same bytes (largest
    first, lowest fitting offset, 64-byte aligned). The placed buffers are
    kept in offset order in a balanced tree whose nodes summarise their
    subtrees, so the search for the lowest fitting offset steps over whole
    runs of buffers rather than every buffer placed before. Sets `offset` on
    every `mixrt.alloc` and `mixrt.arena_bytes` (the peak) on the function.
  }];
}

#endif // MIXER_PASSES_TD
