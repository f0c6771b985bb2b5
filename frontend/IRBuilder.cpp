//===- IRBuilder.cpp - model description to mixer dialect -----------------===//

#include "frontend/IRBuilder.h"
#include "frontend/MoeGrouping.h"

#include "dialects/mixer/MixerDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include <cmath>

using namespace mlir;
using namespace mixer::graph;

namespace mixer {
namespace {

/// The parameter initialisers of docs/runtime.md.
struct Init {
  std::string kind;
  double stddev = 0;
  static Init normal(double stddev) { return {"normal", stddev}; }
  static Init zeros() { return {"zeros", 0}; }
  static Init ones() { return {"ones", 0}; }
};

constexpr double kKernelStddev = 0.02;

/// Emits the forward function of one model, layer by layer.
class ModelEmitter {
public:
  ModelEmitter(MLIRContext &context, const ModelConfig &config,
               const BuildOptions &options)
      : config(config), options(options), builder(&context),
        fileLoc(FileLineColLoc::get(&context, options.sourcePath, 1, 1)) {}

  OwningOpRef<ModuleOp> emit();

private:
  Location loc(const Twine &scope) {
    return NameLoc::get(builder.getStringAttr(scope), fileLoc);
  }
  RankedTensorType f32(ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, builder.getF32Type());
  }
  /// Appends an entry block argument with the given attributes; the
  /// function's type and argument attributes are set once, at the end, as
  /// setting them per argument interns a new type and attribute array each
  /// time (memory quadratic in the number of arguments).
  Value addArgument(Type type, const std::string &name,
                    ArrayRef<NamedAttribute> attrs);
  /// Adds a model input argument named `name`; an optional one defaults to
  /// zeros when an input file lacks it.
  Value addInput(Type type, const char *name, bool optional = false) {
    SmallVector<NamedAttribute, 2> attrs = {builder.getNamedAttr(
        mixer::graph::kInputAttr, builder.getStringAttr(name))};
    if (optional)
      attrs.push_back(builder.getNamedAttr(mixer::graph::kOptionalAttr,
                                           builder.getUnitAttr()));
    return addArgument(type, name, attrs);
  }
  /// Adds a parameter argument named `name`.
  Value param(const std::string &name, ArrayRef<int64_t> shape, Init init);
  Value kernel(const std::string &name, ArrayRef<int64_t> shape) {
    return param(name, shape, Init::normal(kKernelStddev));
  }
  Value bias(const std::string &name, ArrayRef<int64_t> shape) {
    return param(name, shape,
                 config.biasInit == BiasInit::Normal
                     ? Init::normal(kKernelStddev)
                     : Init::zeros());
  }
  Value reshape(Location at, Value value, ArrayRef<int64_t> shape) {
    return ReshapeOp::create(builder, at, f32(shape), value);
  }
  Value dense(Location at, Value input, Value weight, Value biasValue,
              bool transposeWeight = false);
  Value activation(Location at, Activation kind, Value input) {
    return ActivationOp::create(builder, at, input, kind);
  }
  /// The model's GELU (feed-forward layers, masked-LM head).
  Activation gelu() const {
    return config.activation == GeluKind::Erf ? Activation::gelu_erf
                                              : Activation::gelu;
  }
  Value layerNorm(const std::string &scope, Value input, int64_t width);
  /// The attributes of a noise at `rate`: the rate and the next unused
  /// random stream; nulls outside a training step or at rate 0, where no
  /// noise is emitted.
  std::pair<FloatAttr, IntegerAttr> noise(double rate) {
    if (!seed || rate == 0)
      return {};
    return {builder.getF64FloatAttr(rate),
            builder.getI64IntegerAttr(streams++)};
  }
  /// `input` with dropout at `rate` in a training step; `input` itself
  /// otherwise.
  Value dropout(Location at, Value input, double rate);

  Value emitEmbeddings();
  /// Masked-LM logits of `rows` [..., D] against the tied word embeddings.
  Value emitMlmLogits(Value rows);
  /// The classification / NSP logits of the pooled output.
  Value emitClassifierLogits(Value pooled, int64_t classes);
  /// Next-token logits [B, S, V] of the sequence output.
  Value emitCausalLmLogits(Value h);
  /// Appends the training inputs and returns the total loss; emits the
  /// component losses through `addOutput`.
  Value
  emitTrainingLoss(Value h, Value pooled,
                   llvm::function_ref<void(const char *, Value)> addOutput);
  Value emitMixing(int64_t layer, Value h);
  Value emitAttention(int64_t layer, Value h);
  Value emitFeedForward(int64_t layer, Value h);
  Value emitMoe(int64_t layer, Value h);

  const ModelConfig &config;
  const BuildOptions &options;
  OpBuilder builder;
  Location fileLoc;
  func::FuncOp func;
  Value inputIds, typeIds, wordEmbedding;
  /// The random key of the training step's noise and its counter: the
  /// input `step`, or with gradient accumulation the micro-step's
  /// mixer.noise_counter (null without noise).
  Value seed, step;
  /// The unscaled router losses of the MoE layers of a training step, in
  /// layer order: z-losses and load-balancing losses of capacity layers,
  /// entropy regularisers of sigma-MoE layers.
  SmallVector<Value> zLosses, balanceLosses, entropyLosses;
  /// The attributes of each entry block argument, in order.
  SmallVector<Attribute> argumentAttrs;
  int64_t streams = 0;
  int64_t batch = 0, seq = 0;
};

Value ModelEmitter::param(const std::string &name, ArrayRef<int64_t> shape,
                          Init init) {
  SmallVector<NamedAttribute> initAttrs = {
      builder.getNamedAttr("kind", builder.getStringAttr(init.kind))};
  if (init.kind != "zeros" && init.kind != "ones")
    initAttrs.push_back(
        builder.getNamedAttr("stddev", builder.getF64FloatAttr(init.stddev)));
  return addArgument(
      f32(shape), name,
      {builder.getNamedAttr(mixer::graph::kParamAttr,
                            builder.getStringAttr(name)),
       builder.getNamedAttr(mixer::graph::kInitAttr,
                            builder.getDictionaryAttr(initAttrs))});
}

Value ModelEmitter::addArgument(Type type, const std::string &name,
                                ArrayRef<NamedAttribute> attrs) {
  argumentAttrs.push_back(builder.getDictionaryAttr(attrs));
  return func.getBody().front().addArgument(type, loc(name));
}

Value ModelEmitter::dense(Location at, Value input, Value weight,
                          Value biasValue, bool transposeWeight) {
  auto in = cast<RankedTensorType>(input.getType()).getShape();
  auto w = cast<RankedTensorType>(weight.getType()).getShape();
  SmallVector<int64_t> shape(in.begin(), in.end());
  shape.back() = transposeWeight ? w[0] : w[1];
  auto op = DenseOp::create(builder, at, f32(shape), input, weight, biasValue);
  if (transposeWeight)
    op.setTransposeWeight(true);
  return op;
}

Value ModelEmitter::layerNorm(const std::string &scope, Value input,
                              int64_t width) {
  Value scale = param(scope + "/scale", {width}, Init::ones());
  Value offset = param(scope + "/bias", {width}, Init::zeros());
  return LayerNormOp::create(builder, loc(scope), input.getType(), input, scale,
                             offset,
                             builder.getF64FloatAttr(config.layerNormEpsilon));
}

Value ModelEmitter::dropout(Location at, Value input, double rate) {
  auto [rateAttr, stream] = noise(rate);
  if (!rateAttr)
    return input;
  return RandomScaleOp::create(
      builder, at, input, seed, step,
      NoiseKindAttr::get(builder.getContext(), NoiseKind::dropout), rateAttr,
      stream, /*blocks=*/IntegerAttr());
}

Value ModelEmitter::emitEmbeddings() {
  const EmbeddingConfig &emb = config.embeddings;
  const std::string scope = "encoder/embedder";
  wordEmbedding = kernel(scope + "/word/embedding", {emb.vocabSize, emb.dEmb});
  Value position =
      kernel(scope + "/position/embedding", {1, emb.maxSeqLength, emb.dEmb});
  Value type = kernel(scope + "/type/embedding", {emb.typeVocabSize, emb.dEmb});
  Value sum = EmbedOp::create(builder, loc(scope), f32({batch, seq, emb.dEmb}),
                              inputIds, typeIds, wordEmbedding, position, type);
  Value normed = layerNorm(scope + "/layer_norm", sum, emb.dEmb);
  if (!emb.hiddenMappingIn)
    return dropout(loc(scope), normed, config.training.dropoutRate);
  // lecun_normal: truncated normal with variance 1 / fan_in.
  Value mapKernel =
      param(scope + "/hidden_mapping_in/kernel", {emb.dEmb, config.dModel},
            {"truncated_normal", 1.0 / std::sqrt(double(emb.dEmb))});
  Value mapBias = bias(scope + "/hidden_mapping_in/bias", config.dModel);
  Location at = loc(scope + "/hidden_mapping_in");
  return dropout(at, dense(at, normed, mapKernel, mapBias),
                 config.training.dropoutRate);
}

Value ModelEmitter::emitAttention(int64_t layer, Value h) {
  const std::string scope =
      "encoder/attention_" + std::to_string(layer) + "/self";
  int64_t heads = config.attention.numHeads, headDim = config.attention.headDim;
  int64_t d = config.dModel, width = heads * headDim;
  auto project = [&](const std::string &name) {
    Location at = loc(scope + "/" + name);
    Value w =
        reshape(at, kernel(scope + "/" + name + "/kernel", {d, heads, headDim}),
                {d, width});
    Value b = reshape(at, bias(scope + "/" + name + "/bias", {heads, headDim}),
                      {width});
    return dense(at, h, w, b);
  };
  Value q = project("query"), k = project("key"), v = project("value");
  auto [dropoutRate, dropoutStream] =
      noise(config.training.attentionDropoutRate);
  Value attended = AttentionOp::create(
      builder, loc(scope), f32({batch, seq, width}), q, k, v, inputIds,
      dropoutRate ? seed : Value(), dropoutRate ? step : Value(),
      builder.getI64IntegerAttr(heads), builder.getI64IntegerAttr(headDim),
      builder.getI64IntegerAttr(config.embeddings.padId),
      config.attention.causal ? builder.getUnitAttr() : UnitAttr(), dropoutRate,
      dropoutStream);
  Location outLoc = loc(scope + "/out");
  Value outKernel = reshape(
      outLoc, kernel(scope + "/out/kernel", {heads, headDim, d}), {width, d});
  return dropout(
      outLoc, dense(outLoc, attended, outKernel, bias(scope + "/out/bias", d)),
      config.training.attentionOutputDropoutRate);
}

Value ModelEmitter::emitMixing(int64_t layer, Value h) {
  const LayerConfig &lc = config.layers[layer];
  std::string l = std::to_string(layer);
  int64_t d = config.dModel;
  MixAlgorithm algorithm =
      lc.useFft ? MixAlgorithm::fft : MixAlgorithm::automatic;
  auto algorithmAttr = MixAlgorithmAttr::get(builder.getContext(), algorithm);
  switch (lc.mixing) {
  case MixingKind::Attention:
    return emitAttention(layer, h);
  case MixingKind::Identity:
    return h;
  case MixingKind::Linear: {
    const std::string scope = "encoder/linear_transform_" + l;
    Value hidden = kernel(scope + "/hidden_kernel", {d, d});
    Value input = kernel(scope + "/input_kernel", {seq, seq});
    return LinearMixOp::create(builder, loc(scope), h.getType(), h, input,
                               hidden);
  }
  case MixingKind::Fourier:
  case MixingKind::Hartley: {
    bool hartley = lc.mixing == MixingKind::Hartley;
    auto op = SpectralMixOp::create(
        builder,
        loc(std::string(hartley ? "encoder/hartley_" : "encoder/fourier_") + l),
        h.getType(), h, hartley ? builder.getUnitAttr() : UnitAttr(),
        algorithmAttr);
    return op;
  }
  case MixingKind::Circulant:
  case MixingKind::Toeplitz: {
    bool toeplitz = lc.mixing == MixingKind::Toeplitz;
    const std::string scope = (toeplitz ? "encoder/toeplitz_transform_"
                                        : "encoder/circulant_transform_") +
                              l;
    int64_t hiddenLength = toeplitz ? 2 * d - 1 : d;
    int64_t inputLength = toeplitz ? 2 * seq - 1 : seq;
    Value hidden = kernel(scope + "/hidden_kernel", {hiddenLength});
    Value input = kernel(scope + "/input_kernel", {inputLength});
    return StructuredMixOp::create(
        builder, loc(scope), h.getType(), h, input, hidden,
        toeplitz ? builder.getUnitAttr() : UnitAttr(), algorithmAttr);
  }
  }
  llvm_unreachable("unknown mixing kind");
}

Value ModelEmitter::emitFeedForward(int64_t layer, Value h) {
  if (config.layers[layer].feedForward == FeedForwardKind::Moe)
    return emitMoe(layer, h);
  const std::string scope = "encoder/feed_forward_" + std::to_string(layer);
  int64_t d = config.dModel, f = config.dFf;
  Value w1 = kernel(scope + "/intermediate/kernel", {d, f});
  Value b1 = bias(scope + "/intermediate/bias", f);
  Value w2 = kernel(scope + "/output/kernel", {f, d});
  Value b2 = param(scope + "/output/bias", {d}, Init::zeros());
  Value hidden = activation(loc(scope + "/intermediate"), gelu(),
                            dense(loc(scope + "/intermediate"), h, w1, b1));
  Location at = loc(scope + "/output");
  return dropout(at, dense(at, hidden, w2, b2), config.training.dropoutRate);
}

Value ModelEmitter::emitMoe(int64_t layer, Value h) {
  const MoeConfig &moe = config.moe;
  std::string l = std::to_string(layer);
  const std::string expert = "encoder/expert_" + l;
  const std::string router = "encoder/router_weights_" + l;
  int64_t d = config.dModel, e = moe.numExperts, f = moe.expertDff;
  auto scalar = RankedTensorType::get({}, builder.getF32Type());
  // The sublayer's output, with the dropout before the residual add.
  auto output = [&](Value result) {
    return dropout(loc(expert), result, config.training.moeOutputDropoutRate);
  };
  if (moe.routing == RoutingKind::SigmoidTopK) {
    double scale = moe.initScale;
    Value keys = param(expert + "/keys", {e, d, f},
                       Init::normal(scale / std::sqrt(double(d))));
    Value values = param(expert + "/values", {e, f, d},
                         Init::normal(scale / std::sqrt(double(e * f))));
    Value sel = param(router + "/expert_sel", {e, d},
                      {"normal_row_renorm", scale / std::sqrt(double(d))});
    auto [dropRate, dropStream] = noise(config.training.sigmaMoeExpertDropout);
    SmallVector<Type> lossTypes(options.training ? 1 : 0, scalar);
    auto op = SigmaMoeOp::create(
        builder, loc(expert), h.getType(), lossTypes, h, sel, keys, values,
        dropRate ? seed : Value(), dropRate ? step : Value(),
        builder.getI64IntegerAttr(moe.k), dropRate, dropStream);
    entropyLosses.append(op.getLosses().begin(), op.getLosses().end());
    return output(op.getResult());
  }
  Value w1 = kernel(expert + "/intermediate/kernel", {e, d, f});
  Value b1 = bias(expert + "/intermediate/bias", {e, f});
  Value w2 = kernel(expert + "/output/kernel", {e, f, d});
  Value b2 = param(expert + "/output/bias", {e, d}, Init::zeros());
  Value rk = kernel(router + "/kernel", {d, e});
  Value rb = param(router + "/bias", {e}, Init::zeros());
  MoeGrouping grouping = computeMoeGrouping(moe, batch * seq, options.training);
  bool tokensChoose = moe.routing == RoutingKind::TokensChoose;
  auto [jitter, jitterStream] = noise(config.training.jitterNoise);
  auto [expertDropout, expertDropoutStream] =
      noise(config.training.expertDropoutRate);
  bool noisy = jitter || expertDropout;
  // A training step's router losses: the z-loss, and for tokens-choose the
  // load balance.
  SmallVector<Type> lossTypes(options.training ? (tokensChoose ? 2 : 1) : 0,
                              scalar);
  auto op = MoeOp::create(
      builder, loc(expert), h.getType(), lossTypes, h, rk, rb, w1, b1, w2, b2,
      noisy ? seed : Value(), noisy ? step : Value(),
      RoutingAttr::get(builder.getContext(), tokensChoose
                                                 ? Routing::tokens_choose
                                                 : Routing::experts_choose),
      builder.getI64IntegerAttr(grouping.groups),
      builder.getI64IntegerAttr(grouping.capacity),
      builder.getI64IntegerAttr(tokensChoose ? moe.k : 1),
      tokensChoose && moe.batchPrioritized ? builder.getUnitAttr() : UnitAttr(),
      moe.routerBf16 ? builder.getUnitAttr() : UnitAttr(), jitter, jitterStream,
      expertDropout, expertDropoutStream);
  if (options.training) {
    zLosses.push_back(op.getLosses()[0]);
    if (tokensChoose)
      balanceLosses.push_back(op.getLosses()[1]);
  }
  return output(op.getResult());
}

Value ModelEmitter::emitMlmLogits(Value rows) {
  const EmbeddingConfig &emb = config.embeddings;
  int64_t d = config.dModel;
  Location at = loc("predictions_dense");
  Value transformed = activation(
      at, gelu(),
      dense(at, rows, kernel("predictions_dense/kernel", {d, emb.dEmb}),
            bias("predictions_dense/bias", emb.dEmb)));
  transformed = layerNorm("predictions_layer_norm", transformed, emb.dEmb);
  // Tied output embedding: the word table [V, De] used transposed.
  Value outputBias =
      param("predictions_output/output_bias", {emb.vocabSize}, Init::zeros());
  return dense(loc("predictions_output"), transformed, wordEmbedding,
               outputBias, /*transposeWeight=*/true);
}

Value ModelEmitter::emitClassifierLogits(Value pooled, int64_t classes) {
  Value k = kernel("classification/output_kernel", {classes, config.dModel});
  Value b = param("classification/output_bias", {classes}, Init::zeros());
  return dense(loc("classification"), pooled, k, b, true);
}

Value ModelEmitter::emitCausalLmLogits(Value h) {
  int64_t d = config.dModel, vocab = config.embeddings.vocabSize;
  Value k = kernel("causal_lm/kernel", {d, vocab});
  Value b = param("causal_lm/bias", {vocab}, Init::zeros());
  return dense(loc("causal_lm"), h, k, b);
}

Value ModelEmitter::emitTrainingLoss(
    Value h, Value pooled,
    llvm::function_ref<void(const char *, Value)> addOutput) {
  const HeadsConfig &heads = config.heads;
  if (heads.causalLm && heads.classificationClasses > 0) {
    emitError(fileLoc) << "training '" << config.name
                       << "' is not supported: its causal_lm and "
                          "classification heads would both take the "
                          "'labels' input";
    return Value();
  }
  auto i32 = [&](ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, builder.getI32Type());
  };
  auto input = [&](const char *name, ArrayRef<int64_t> shape) {
    return addInput(i32(shape), name);
  };
  auto scalar = RankedTensorType::get({}, builder.getF32Type());
  Value total;
  auto addTerm = [&](Value term) {
    total = total
                ? AddOp::create(builder, term.getLoc(), total, term).getResult()
                : term;
  };
  auto addLoss = [&](const char *name, Value loss) {
    addOutput(name, loss);
    addTerm(loss);
  };
  /// Σ weight · CE of `logits` [R, C] against `labels` [R] (−1 = ignored)
  /// over Σ weight: the mean over the counted rows.
  auto meanCrossEntropy = [&](Location at, Value logits, Value labels) {
    Value weights = LabelMaskOp::create(
        builder, at, f32(cast<RankedTensorType>(labels.getType()).getShape()),
        labels);
    Value sum = SoftmaxCrossEntropyOp::create(builder, at, scalar, logits,
                                              labels, weights);
    Value norm = ReduceSumOp::create(builder, at, scalar, weights);
    // On a mesh each rank's sum counts its own rows; the mean is over the
    // counted rows of the whole batch.
    if (options.world > 1)
      norm = AllReduceOp::create(builder, at, norm,
                                 builder.getStringAttr(kWorldGroup));
    return DivideOp::create(builder, at, sum, norm).getResult();
  };
  if (heads.mlm) {
    Location at = loc("masked_lm_loss");
    int64_t predictions = std::min(options.maxPredictions, seq);
    Value positions = input("masked_lm_positions", {batch, predictions});
    // Unused prediction slots hold label -1: their weight is 0.
    Value labels =
        ReshapeOp::create(builder, at, i32({batch * predictions}),
                          input("masked_lm_ids", {batch, predictions}));
    Value rows = GatherPositionsOp::create(
        builder, at, f32({batch * predictions, config.dModel}), h, positions);
    Value logits = emitMlmLogits(rows);
    addLoss("masked_lm_loss", meanCrossEntropy(at, logits, labels));
    // The predicted ids, for the masked-LM accuracy of evaluations.
    addOutput(
        "masked_lm_predictions",
        ArgmaxOp::create(builder, at, i32({batch * predictions}), logits));
  }
  int64_t classes = heads.nsp ? 2 : heads.classificationClasses;
  if (classes == 1) {
    // Regression (spec section 9): the sum of squared errors over the batch,
    // divided by the (global) batch.
    Location at = loc("regression_loss");
    Value targets = addInput(f32({batch}), "labels");
    Value logits = emitClassifierLogits(pooled, 1);
    Value predictions = reshape(at, logits, {batch});
    Value sum =
        SquaredErrorOp::create(builder, at, scalar, predictions, targets);
    addOutput("classification_logits", logits);
    addLoss(
        "regression_loss",
        ScaleOp::create(builder, at, sum,
                        builder.getF64FloatAttr(1.0 / double(options.batch))));
  } else if (classes > 0) {
    const char *name = heads.nsp ? "next_sentence_labels" : "labels";
    Location at = loc(heads.nsp ? "next_sentence_loss" : "classification_loss");
    Value labels = input(name, {batch});
    Value logits = emitClassifierLogits(pooled, classes);
    Value sum = SoftmaxCrossEntropyOp::create(builder, at, scalar, logits,
                                              labels, Value());
    addOutput(heads.nsp ? "nsp_logits" : "classification_logits", logits);
    addLoss(
        heads.nsp ? "next_sentence_loss" : "classification_loss",
        ScaleOp::create(builder, at, sum,
                        builder.getF64FloatAttr(1.0 / double(options.batch))));
  }
  if (heads.causalLm) {
    // `labels` holds the next token of every position (the data shifts, as
    // runtime/data/LmStream does); -1 marks positions without a target.
    Location at = loc("causal_lm_loss");
    int64_t vocab = config.embeddings.vocabSize;
    Value labels = input("labels", {batch, seq});
    Value logits = emitCausalLmLogits(h);
    addLoss("causal_lm_loss",
            meanCrossEntropy(
                at, reshape(at, logits, {batch * seq, vocab}),
                ReshapeOp::create(builder, at, i32({batch * seq}), labels)));
    addOutput("causal_lm_predictions",
              ArgmaxOp::create(builder, at, i32({batch, seq}), logits));
  }
  if (!total) {
    emitError(fileLoc) << "model '" << config.name
                       << "' has no head with a training loss";
    return Value();
  }
  // The MoE layers' losses (spec section 9): their sums over the layers as
  // metrics, scaled into the loss. Each is a mean over its routing groups or
  // the rank's tokens; on a mesh every rank contributes its share of the
  // mean over the ranks.
  const TrainingConfig &t = config.training;
  auto addRouterLoss = [&](const char *name, ArrayRef<Value> layers,
                           double factor) {
    if (layers.empty())
      return;
    Location at = loc(name);
    Value sum = layers.front();
    for (Value layer : layers.drop_front())
      sum = AddOp::create(builder, at, sum, layer);
    if (options.world > 1)
      sum =
          ScaleOp::create(builder, at, sum,
                          builder.getF64FloatAttr(1.0 / double(options.world)));
    addOutput(name, sum);
    if (factor > 0)
      addTerm(
          ScaleOp::create(builder, at, sum, builder.getF64FloatAttr(factor)));
  };
  addRouterLoss("router_z_loss", zLosses, t.routerZLossFactor);
  addRouterLoss("auxiliary_loss", balanceLosses, t.auxiliaryLossFactor);
  addRouterLoss("entropy_regularization_loss", entropyLosses,
                t.entropyRegularizationFactor);
  return total;
}

OwningOpRef<ModuleOp> ModelEmitter::emit() {
  MLIRContext *context = builder.getContext();
  context->loadDialect<MixerDialect, func::FuncDialect>();
  batch = options.batch / options.world;
  seq = options.seq ? options.seq : config.embeddings.maxSeqLength;

  bool needsFullLength = llvm::any_of(config.layers, [](const LayerConfig &l) {
    return l.mixing == MixingKind::Linear ||
           l.mixing == MixingKind::Circulant ||
           l.mixing == MixingKind::Toeplitz;
  });
  if (seq > config.embeddings.maxSeqLength ||
      (needsFullLength && seq != config.embeddings.maxSeqLength)) {
    InFlightDiagnostic diag = emitError(fileLoc);
    diag << "sequence length " << seq << " does not fit model '" << config.name
         << "': it must be " << (needsFullLength ? "exactly" : "at most")
         << " max_seq_length = " << config.embeddings.maxSeqLength;
    if (needsFullLength)
      diag << " (its mixing kernels are sized by the sequence length; a copy "
              "of the model with \"max_seq_length\": "
           << seq << " compiles at " << seq << ")";
    return nullptr;
  }
  bool hasMoe = llvm::any_of(config.layers, [](const LayerConfig &l) {
    return l.feedForward == FeedForwardKind::Moe;
  });
  if (hasMoe) {
    Status status = checkMoeGrouping(config.moe, batch * seq, options.training);
    if (!status.ok()) {
      emitError(fileLoc) << status.message();
      return nullptr;
    }
  }

  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc);
  builder.setInsertionPointToEnd(module->getBody());
  func = func::FuncOp::create(builder, fileLoc, "forward",
                              builder.getFunctionType({}, {}));
  Block *body = func.addEntryBlock();
  builder.setInsertionPointToStart(body);
  auto ids = RankedTensorType::get({batch, seq}, builder.getI32Type());
  inputIds = addInput(ids, "input_ids");
  typeIds = addInput(ids, "type_ids", /*optional=*/true);
  if (options.training && (options.trainingStep || options.noise)) {
    auto scalar = RankedTensorType::get({}, builder.getI32Type());
    seed = addInput(scalar, "seed");
    step = addInput(scalar, "step");
    int64_t microSteps = config.training.gradientAccumulationSteps;
    if (options.trainingStep && microSteps > 1)
      step = NoiseCounterOp::create(builder, fileLoc, step,
                                    addInput(scalar, "micro_step"),
                                    builder.getI64IntegerAttr(microSteps));
  }

  Value h = emitEmbeddings();
  int64_t d = config.dModel;
  bool pre = config.norm == NormPlacement::Pre;
  for (int64_t layer = 0; layer < config.numLayers(); ++layer) {
    const std::string block = "encoder/encoder_" + std::to_string(layer);
    auto sublayer = [&](const std::string &normName, auto emitSublayer) {
      Location at = loc(block + "/" + normName);
      if (pre) {
        Value normed = layerNorm(block + "/" + normName, h, d);
        h = AddOp::create(builder, at, h, emitSublayer(normed));
      } else {
        Value sum = AddOp::create(builder, at, h, emitSublayer(h));
        h = layerNorm(block + "/" + normName, sum, d);
      }
    };
    sublayer("mixing_layer_norm",
             [&](Value x) { return emitMixing(layer, x); });
    sublayer("output_layer_norm",
             [&](Value x) { return emitFeedForward(layer, x); });
  }
  if (pre)
    h = layerNorm("encoder/final_layer_norm", h, d);

  SmallVector<Value> results = {h};
  SmallVector<Attribute> names = {builder.getStringAttr("sequence_output")};
  auto addOutput = [&](const char *name, Value value) {
    results.push_back(value);
    names.push_back(builder.getStringAttr(name));
  };
  const HeadsConfig &heads = config.heads;
  Value pooled;
  if (heads.pooler) {
    Location at = loc("encoder/pooler");
    Value first = TakePositionOp::create(builder, at, f32({batch, d}), h,
                                         builder.getI64IntegerAttr(0));
    pooled =
        activation(at, Activation::tanh,
                   dense(at, first, kernel("encoder/pooler/kernel", {d, d}),
                         bias("encoder/pooler/bias", d)));
    addOutput("pooled_output", pooled);
  }
  const EmbeddingConfig &emb = config.embeddings;
  int64_t classes = heads.nsp ? 2 : heads.classificationClasses;
  if (options.training) {
    results.clear();
    names.clear();
    Value loss = emitTrainingLoss(h, pooled, addOutput);
    if (!loss)
      return nullptr;
    results.insert(results.begin(), loss);
    names.insert(names.begin(), builder.getStringAttr("loss"));
  } else {
    if (heads.sentencePooling) {
      auto op = PoolOp::create(
          builder, loc("sentence_embedding"), f32({batch, d}), h, inputIds,
          PoolModeAttr::get(builder.getContext(),
                            *heads.sentencePooling == SentencePooling::Mean
                                ? PoolMode::mean
                                : PoolMode::cls),
          heads.sentenceNormalize ? builder.getUnitAttr() : UnitAttr(),
          builder.getI64IntegerAttr(emb.padId));
      addOutput("sentence_embedding", op);
    }
    if (heads.mlm)
      addOutput("mlm_logits", emitMlmLogits(h));
    if (classes > 0)
      addOutput(heads.nsp ? "nsp_logits" : "classification_logits",
                emitClassifierLogits(pooled, classes));
    if (heads.causalLm)
      addOutput("causal_lm_logits", emitCausalLmLogits(h));
  }
  func::ReturnOp::create(builder, fileLoc, results);
  func.setType(builder.getFunctionType(body->getArgumentTypes(),
                                       ValueRange(results).getTypes()));
  func.setAllArgAttrs(argumentAttrs);
  func->setAttr(mixer::graph::kOutputsAttr, builder.getArrayAttr(names));
  func->setAttr(mixer::graph::kModelAttr, builder.getStringAttr(config.name));
  func->setAttr(mixer::graph::kPadIdAttr, builder.getI64IntegerAttr(emb.padId));
  func->setAttr(mixer::graph::kVocabSizeAttr,
                builder.getI64IntegerAttr(emb.vocabSize));
  func->setAttr(mixer::graph::kBatchAttr,
                builder.getI64IntegerAttr(options.batch));
  func->setAttr(mixer::graph::kSeqAttr, builder.getI64IntegerAttr(seq));
  func->setAttr(
      mixer::graph::kHeadsAttr,
      builder.getDictionaryAttr(
          {builder.getNamedAttr("masked_lm", builder.getBoolAttr(heads.mlm)),
           builder.getNamedAttr("next_sentence",
                                builder.getBoolAttr(heads.nsp)),
           builder.getNamedAttr("causal_lm",
                                builder.getBoolAttr(heads.causalLm)),
           builder.getNamedAttr("classes",
                                builder.getI64IntegerAttr(classes))}));
  if (options.training && options.trainingStep) {
    const TrainingConfig &t = config.training;
    auto f64 = [&](const char *name, double value) {
      return builder.getNamedAttr(name, builder.getF64FloatAttr(value));
    };
    auto i64 = [&](const char *name, int64_t value) {
      return builder.getNamedAttr(name, builder.getI64IntegerAttr(value));
    };
    func->setAttr(
        mixer::graph::kTrainingAttr,
        builder.getDictionaryAttr(
            {f64("learning_rate", t.learningRate),
             i64("warmup_steps", t.warmupSteps),
             i64("total_steps", t.totalSteps), f64("b1", t.b1), f64("b2", t.b2),
             f64("eps", t.eps), f64("weight_decay", t.weightDecay),
             f64("clip_grad_norm", t.clipGradNorm),
             i64("gradient_accumulation_steps", t.gradientAccumulationSteps)}));
  }
  return module;
}

} // namespace

OwningOpRef<ModuleOp> buildModelModule(MLIRContext &context,
                                       const ModelConfig &config,
                                       const BuildOptions &options) {
  return ModelEmitter(context, config, options).emit();
}

} // namespace mixer
