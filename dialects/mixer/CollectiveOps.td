//===- CollectiveOps.td - collectives between ranks --------*- tablegen -*-===//
//
// The ops of a parallel program. A parallel artifact is one SPMD program: every
// rank runs the same ops on its own shard of the batch (and of the experts),
// and these ops move data between the ranks of a group. `group` names the
// communicator: `world` (every rank), `ep` (the ranks that share a replica's
// experts) or `edp` (the ranks that hold the same experts), resolved against
// the module's `mixer.mesh = {dp = D, ep = E}`; a module without one is a
// one-process program (every group has one rank).
//
// Rows are laid out in blocks described by offsets (ascending, from 0, one
// more than there are blocks): block i holds rows [offsets[i], offsets[i+1]).
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_COLLECTIVEOPS_TD
#define MIXER_COLLECTIVEOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixer_RowsTensor : RankedTensorOf<[F32, I32]>;

class Mixer_CollectiveOp<string mnemonic, list<Trait> props = []>
    : Mixer_Op<mnemonic, !listconcat([Pure,
          DeclareOpInterfaceMethods<Mixer_GradientOpInterface>], props)>;

def Mixer_AllToAllOp : Mixer_CollectiveOp<"all_to_all",
    [AllTypesMatch<["input", "result"]>]> {
  let summary = "exchange equal blocks of rows between the ranks of a group";
  let description = [{
    The `[P·m, …]` input is cut into P equal blocks along dimension 0, P the
    group's size; block p goes to rank p, and the result holds the blocks
    received, in the order of the ranks that sent them. Its gradient is the
    same exchange of the result gradient.
  }];
  let arguments = (ins Mixer_RowsTensor:$input, StrAttr:$group);
  let results = (outs Mixer_RowsTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let hasVerifier = 1;
  let kernel = "AllToAll";
}

def Mixer_AllToAllVOp : Mixer_CollectiveOp<"all_to_all_v"> {
  let summary = "exchange ragged blocks of rows between the ranks of a group";
  let description = [{
    The input's rows form P·b blocks by `offsets` (I32[P·b + 1]), P the
    group's size: blocks p·b … p·b + b − 1 go to rank p. The result receives,
    for every sender s in rank order, the b blocks s sent to this rank,
    packed from row 0; `received_offsets` gives their blocks in that order
    (I32[P·b + 1]). The result's rows are a static worst case: rows past the
    received ones are zero, and receiving more rows than it has is a runtime
    error. The gradient sends the result gradient back with
    `received_offsets`, which lands every row where it came from.
  }];
  let arguments = (ins Mixer_RowsTensor:$input, Mixer_I32Tensor:$offsets,
                       StrAttr:$group);
  let results = (outs Mixer_RowsTensor:$result,
                      Mixer_I32Tensor:$received_offsets);
  let assemblyFormat = [{
    $input `,` $offsets attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "AllToAllV";
}

def Mixer_AllReduceOp : Mixer_CollectiveOp<"all_reduce",
    [AllTypesMatch<["input", "result"]>]> {
  let summary = "element-wise sum over the ranks of a group";
  let description = [{
    Every rank gets the sum of every rank's input, added in rank order (the
    same bits on every rank). A parallel program's objective is the sum of
    the ranks' contributions, so the gradient of a summed value is the sum
    of the ranks' gradients: another all_reduce.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, StrAttr:$group);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let hasVerifier = 1;
  let kernel = "AllReduce";
}

def Mixer_PermuteBlocksOp : Mixer_CollectiveOp<"permute_blocks"> {
  let summary = "reorder blocks of rows from [outer][inner] to [inner][outer]";
  let description = [{
    The input's rows form `outer`·`inner` blocks by `offsets`
    (I32[outer·inner + 1]), block (i, j) at index i·inner + j. The result
    holds the same blocks in the order (j, i): all blocks of inner index 0,
    then of 1, …; `permuted_offsets` gives its blocks (index j·outer + i) and
    `group_offsets` (I32[inner + 1]) the rows of each inner index. Rows past
    the last block are zero. This turns rows received by sender and then
    local expert into rows by local expert and then sender, as the expert
    kernels read them. The gradient is the inverse permutation
    (`outer` and `inner` swapped, with `permuted_offsets`).
  }];
  let arguments = (ins Mixer_RowsTensor:$input, Mixer_I32Tensor:$offsets,
                       ConfinedAttr<I64Attr, [IntPositive]>:$outer,
                       ConfinedAttr<I64Attr, [IntPositive]>:$inner);
  let results = (outs Mixer_RowsTensor:$result,
                      Mixer_I32Tensor:$permuted_offsets,
                      Mixer_I32Tensor:$group_offsets);
  let assemblyFormat = [{
    $input `,` $offsets attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "PermuteBlocks";
}

#endif // MIXER_COLLECTIVEOPS_TD
