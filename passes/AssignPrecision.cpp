//===- AssignPrecision.cpp - activation buffers in the plan's precision ---===//
//
// Decides, per arena buffer, whether it holds an activation (stored in the
// plan's precision) or a value that stays fp32, from the kernels that write
// and read it (Passes.td, docs/runtime.md).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringSwitch.h"

namespace mixer {
#define GEN_PASS_DEF_MIXRTASSIGNPRECISION
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using mixer::rt::AllocOp;
using mixer::rt::KernelOp;
using mixer::rt::ViewOp;

namespace {

/// How a kernel's results relate to the plan's precision.
enum class ResultClass {
  /// Writes activations or activation gradients in the listed results.
  Producer,
  /// Elementwise: result 0 keeps the precision of its floating operands.
  Follower,
  /// Every result stays fp32 (losses, parameter gradients, routing, ...).
  Fp32,
};

ResultClass classify(StringRef kernel) {
  return llvm::StringSwitch<ResultClass>(kernel)
      .Cases({"embed", "dense", "layer_norm", "attention", "linear_mix",
              "spectral_mix", "structured_mix", "dispatch", "experts",
              "combine", "gather_positions"},
             ResultClass::Producer)
      .Cases({"activation_grad", "layer_norm_grad", "linear_mix_grad",
              "structured_mix_grad", "attention_grad", "dispatch_grad",
              "combine_grad", "experts_grad", "gather_positions_grad",
              "take_position_grad", "softmax_cross_entropy_grad"},
             ResultClass::Producer)
      .Cases({"activation", "add", "softmax", "softmax_grad", "random_scale",
              "take_position", "scale"},
             ResultClass::Follower)
      .Default(ResultClass::Fp32);
}

/// Whether result `index` of a producer holds an activation: the first
/// result, and the three input gradients of attention. The other results
/// of backward kernels are parameter gradients or gate gradients.
bool producesActivation(StringRef kernel, unsigned index) {
  return index == 0 || (kernel == "attention_grad" && index < 3);
}

/// Whether operand `index` of `kernel` must be fp32: the router's logits and
/// probabilities (routing, router losses, expert dropout, the router's own
/// bf16 rounding) and every operand of the optimizer.
bool demandsFp32(StringRef kernel, unsigned index) {
  return llvm::StringSwitch<bool>(kernel)
      .Cases({"route_experts_choose", "route_tokens_choose",
              "route_sigmoid_topk", "router_z_loss", "load_balancing_loss",
              "entropy_regularizer", "drop_experts", "route_grad",
              "router_z_loss_grad", "load_balancing_loss_grad",
              "entropy_regularizer_grad", "round_bf16", "accumulate_gradient",
              "adamw"},
             index == 0)
      .Case("global_norm", true)
      .Default(false);
}

/// The arena buffer `value` lives in (through views), or null.
AllocOp storageOf(Value value) {
  while (auto view = value.getDefiningOp<ViewOp>())
    value = view.getSource();
  return value.getDefiningOp<AllocOp>();
}

bool isFloatBuffer(Value value) {
  auto type = cast<MemRefType>(value.getType());
  return type.getElementType().isF32() && type.getRank() > 0;
}

class PrecisionAssignment {
public:
  explicit PrecisionAssignment(func::FuncOp func) : func(func) {
    func.walk([&](KernelOp kernel) {
      kernels.push_back(kernel);
      for (Value output : kernel.getOutputs())
        if (AllocOp alloc = storageOf(output))
          writer[alloc] = kernel;
    });
  }

  /// Chooses the bf16 buffers and retypes them, their views and the
  /// function's results.
  void run();

private:
  /// The buffers the kernels would store in bf16 given the fp32 demands
  /// found so far.
  llvm::DenseSet<Operation *> candidates() const;
  /// Adds the buffers that must be fp32 for the kernels reading them;
  /// returns whether any was new.
  bool addDemands(const llvm::DenseSet<Operation *> &lowered);
  void demand(Value operand, const llvm::DenseSet<Operation *> &lowered,
              bool &changed);
  void retype(const llvm::DenseSet<Operation *> &lowered);

  func::FuncOp func;
  SmallVector<KernelOp> kernels;
  DenseMap<Operation *, KernelOp> writer;
  llvm::DenseSet<Operation *> fp32;
};

llvm::DenseSet<Operation *> PrecisionAssignment::candidates() const {
  llvm::DenseSet<Operation *> lowered;
  auto isLowered = [&](Value value) {
    AllocOp alloc = storageOf(value);
    return alloc && lowered.contains(alloc);
  };
  // Program order: a follower sees the decisions about its operands.
  for (KernelOp kernel : kernels) {
    StringRef name = kernel.getCallee();
    ResultClass kind = classify(name);
    if (kind == ResultClass::Fp32)
      continue;
    bool operandsLowered = llvm::all_of(kernel.getInputs(), [&](Value in) {
      return !isFloatBuffer(in) || isLowered(in);
    });
    for (auto [index, output] : llvm::enumerate(kernel.getOutputs())) {
      AllocOp alloc = storageOf(output);
      if (!alloc || !isFloatBuffer(output) || fp32.contains(alloc))
        continue;
      if (kind == ResultClass::Producer ? producesActivation(name, index)
                                        : index == 0 && operandsLowered)
        lowered.insert(alloc);
    }
  }
  return lowered;
}

void PrecisionAssignment::demand(Value operand,
                                 const llvm::DenseSet<Operation *> &lowered,
                                 bool &changed) {
  AllocOp alloc = storageOf(operand);
  if (!alloc || !lowered.contains(alloc) || !fp32.insert(alloc).second)
    return;
  changed = true;
  // An elementwise chain before an fp32 reader runs in fp32 back to the
  // producer that starts it.
  KernelOp producer = writer.lookup(alloc);
  if (producer && classify(producer.getCallee()) == ResultClass::Follower)
    for (Value in : producer.getInputs())
      demand(in, lowered, changed);
}

bool PrecisionAssignment::addDemands(
    const llvm::DenseSet<Operation *> &lowered) {
  bool changed = false;
  for (KernelOp kernel : kernels)
    for (auto [index, operand] : llvm::enumerate(kernel.getInputs()))
      if (demandsFp32(kernel.getCallee(), index))
        demand(operand, lowered, changed);
  return changed;
}

void PrecisionAssignment::retype(const llvm::DenseSet<Operation *> &lowered) {
  Type bf16 = BFloat16Type::get(func.getContext());
  auto lower = [&](Value value) {
    auto type = cast<MemRefType>(value.getType());
    value.setType(MemRefType::get(type.getShape(), bf16));
  };
  func.walk([&](Operation *op) {
    if (isa<AllocOp, ViewOp>(op) &&
        lowered.contains(storageOf(op->getResult(0))))
      lower(op->getResult(0));
  });
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  func.setType(FunctionType::get(func.getContext(),
                                 func.getBody().getArgumentTypes(),
                                 ret.getOperandTypes()));
}

void PrecisionAssignment::run() {
  // fp32 demands only grow, so this reaches a fixed point.
  llvm::DenseSet<Operation *> lowered = candidates();
  while (addDemands(lowered))
    lowered = candidates();
  retype(lowered);
}

struct AssignPrecisionPass
    : mixer::impl::MixrtAssignPrecisionBase<AssignPrecisionPass> {
  using MixrtAssignPrecisionBase::MixrtAssignPrecisionBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (precision != "fp32" && precision != "bf16") {
      module.emitError() << "unknown precision '" << precision
                         << "' (expected fp32 or bf16)";
      return signalPassFailure();
    }
    if (precision == "fp32")
      return;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (target != "cuda") {
        func.emitError() << "precision bf16 needs target cuda: the " << target
                         << " kernels store activations in fp32";
        return signalPassFailure();
      }
      PrecisionAssignment(func).run();
    }
  }
};

} // namespace
