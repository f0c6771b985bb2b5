//===- ModelConfig.h - Validated model description --------------*- C++ -*-===//
//
// The in-memory form of a model JSON file (docs/dsl.md) after parsing and
// validation: layouts are expanded to one entry per layer and every default is
// filled in, so consumers never look at the JSON again.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_FRONTEND_MODELCONFIG_H
#define MIXER_FRONTEND_MODELCONFIG_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mixer {

/// Token-mixing sublayer of one encoder layer.
enum class MixingKind {
  Linear,
  Fourier,
  Hartley,
  Circulant,
  Toeplitz,
  Identity,
  Attention
};

/// Feed-forward sublayer of one encoder layer.
enum class FeedForwardKind { Dense, Moe };

enum class RoutingKind { ExpertsChoose, TokensChoose, SigmoidTopK };

/// Where the LayerNorms of a block sit.
enum class NormPlacement { Post, Pre };

enum class BiasInit { Zeros, Normal };

/// The GELU of the feed-forward layers and the masked-LM head.
enum class GeluKind { Tanh, Erf };

/// How the sentence embedding reduces the sequence output.
enum class SentencePooling { Cls, Mean };

struct EmbeddingConfig {
  int64_t vocabSize = 0;
  int64_t typeVocabSize = 4;
  int64_t dEmb = 0;
  int64_t maxSeqLength = 0;
  int32_t padId = 0;
  /// Whether the embedding is projected to d_model (hidden_mapping_in);
  /// without it d_emb equals d_model.
  bool hiddenMappingIn = true;
};

struct AttentionConfig {
  int64_t numHeads = 0;
  int64_t headDim = 0; ///< d_model / num_heads unless given explicitly
  bool causal = false;
};

struct MoeConfig {
  int64_t numExperts = 0;
  int64_t expertDff = 0; ///< expert width (sigma-MoE: G)
  RoutingKind routing = RoutingKind::ExpertsChoose;
  int64_t k = 1; ///< experts per token (tokens_choose, sigmoid_topk)
  bool batchPrioritized = true;
  double trainCapacityFactor = 1.0;
  double evalCapacityFactor = 1.0;
  int64_t minExpertCapacity = 4;
  int64_t maxGroupSize = 4096;
  bool routerBf16 = false; ///< router_dtype == "bfloat16"
  /// Factor on the initial standard deviation of the sigma-MoE keys, values
  /// and expert_sel.
  double initScale = 1.0;
};

struct LayerConfig {
  MixingKind mixing = MixingKind::Linear;
  FeedForwardKind feedForward = FeedForwardKind::Dense;
  bool useFft = false; ///< fourier, hartley, circulant, toeplitz only
};

struct HeadsConfig {
  bool pooler = false;
  bool mlm = false;
  bool nsp = false;
  /// Sequence classification classes; 1 = regression; 0 = no head.
  int64_t classificationClasses = 0;
  bool causalLm = false;
  /// The sentence embedding output: absent, or its pooling and whether it
  /// is L2-normalised.
  std::optional<SentencePooling> sentencePooling;
  bool sentenceNormalize = false;
};

/// The training recipe: optimizer, learning-rate schedule and regularisation
/// (spec §11.1, §11.3). Consumed by `mixc --train` only.
struct TrainingConfig {
  double learningRate = 1e-4;     ///< peak learning rate, reached after warm-up
  int64_t warmupSteps = 10000;    ///< steps of linear warm-up from 0
  int64_t totalSteps = 1000000;   ///< warm-up plus linear decay
  double b1 = 0.9;                ///< AdamW first-moment decay
  double b2 = 0.999;              ///< AdamW second-moment decay
  double eps = 1e-6;              ///< AdamW epsilon, outside the root
  double weightDecay = 0.01;      ///< decoupled, on every parameter
  double clipGradNorm = 0;        ///< global-norm clipping bound; 0 = none
  double dropoutRate = 0.1;       ///< embeddings and dense feed-forward outputs
  double expertDropoutRate = 0.1; ///< expert outputs of capacity MoE layers
  double jitterNoise = 0;         ///< multiplicative noise on router inputs
  /// Weight of the router z-losses (capacity MoE layers) in the loss.
  double routerZLossFactor = 1e-4;
  /// Weight of the load-balancing losses (tokens-choose layers).
  double auxiliaryLossFactor = 0.01;
  /// Weight of the sigma-MoE entropy regularisers.
  double entropyRegularizationFactor = 1e-4;
  /// Probability of removing an expert from a token's sigma-MoE selection.
  double sigmaMoeExpertDropout = 0.05;
  /// Dropout on the attention probabilities.
  double attentionDropoutRate = 0.1;
  /// Dropout on the output of every attention sublayer, before the
  /// residual add.
  double attentionOutputDropoutRate = 0;
  /// Dropout on the output of every MoE sublayer, before the residual add.
  double moeOutputDropoutRate = 0;
  /// Micro-batches whose mean gradient makes one update.
  int64_t gradientAccumulationSteps = 1;
};

/// A fully validated and expanded model description.
struct ModelConfig {
  std::string name;
  std::string dtype = "float32";
  EmbeddingConfig embeddings;
  int64_t dModel = 0;
  int64_t dFf = 0;
  double layerNormEpsilon = 1e-12;
  NormPlacement norm = NormPlacement::Post;
  BiasInit biasInit = BiasInit::Zeros;
  GeluKind activation = GeluKind::Tanh;
  AttentionConfig attention; ///< meaningful when any layer uses attention
  MoeConfig moe;             ///< meaningful when any layer is MoE
  std::vector<LayerConfig> layers;
  HeadsConfig heads;
  TrainingConfig training;

  int64_t numLayers() const { return static_cast<int64_t>(layers.size()); }
};

} // namespace mixer

#endif // MIXER_FRONTEND_MODELCONFIG_H
