//===- ModelParserTest.cpp - Model parser and validator tests -------------===//

#include "frontend/ModelParser.h"

#include "test/unit/frontend/ModelCases.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mixer {
namespace {

using test::InvalidCase;
using test::ValidCase;

ModelConfig parseOk(const std::string &text) {
  Expected<ModelConfig> model = parseModelText(text, "m.json");
  EXPECT_TRUE(model.ok()) << model.message();
  return model.ok() ? *model : ModelConfig();
}

std::vector<MixingKind> mixingOf(const ModelConfig &m) {
  std::vector<MixingKind> out;
  for (const LayerConfig &l : m.layers)
    out.push_back(l.mixing);
  return out;
}

std::vector<FeedForwardKind> feedForwardOf(const ModelConfig &m) {
  std::vector<FeedForwardKind> out;
  for (const LayerConfig &l : m.layers)
    out.push_back(l.feedForward);
  return out;
}

class InvalidModelTest : public testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidModelTest, ReportsExactMessage) {
  Expected<ModelConfig> model = parseModelText(GetParam().text, "m.json");
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.message(), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(Cases, InvalidModelTest,
                         testing::ValuesIn(test::kInvalidCases),
                         [](const testing::TestParamInfo<InvalidCase> &info) {
                           return std::string(info.param.name);
                         });

class ValidModelTest : public testing::TestWithParam<ValidCase> {};

TEST_P(ValidModelTest, Parses) { parseOk(GetParam().text); }

INSTANTIATE_TEST_SUITE_P(Cases, ValidModelTest,
                         testing::ValuesIn(test::kValidCases),
                         [](const testing::TestParamInfo<ValidCase> &info) {
                           return std::string(info.param.name);
                         });

TEST(ModelParserTest, RefusesWhatTheJsonParserWouldSkip) {
  // A byte order mark, a NUL byte after the document, and a control
  // character in the name, which would reach the artifact.
  const std::string model = R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 2, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json";
  parseOk(model);
  Expected<ModelConfig> bom = parseModelText("\xEF\xBB\xBF" + model, "m.json");
  ASSERT_FALSE(bom.ok());
  EXPECT_EQ(bom.message(), "m.json:1:1: the file starts with a UTF-8 byte "
                           "order mark, which JSON does not allow; save it "
                           "without");
  Expected<ModelConfig> nul =
      parseModelText(model + std::string("\n\0", 2), "m.json");
  ASSERT_FALSE(nul.ok());
  EXPECT_EQ(nul.message(),
            "m.json:7:1: a NUL byte, which JSON text cannot contain");
  std::string controlName = model;
  controlName.replace(controlName.find("\"m\""), 3, "\"m\\u0000\"");
  Expected<ModelConfig> control = parseModelText(controlName, "m.json");
  ASSERT_FALSE(control.ok());
  EXPECT_EQ(control.message(),
            "m.json:2:11: /name: must not contain control characters");
}

TEST(ModelParserTest, FillsDefaults) {
  ModelConfig m = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 3, "d_ff": 32,
    "mixing": {"kind": "linear"}
  })json");
  EXPECT_EQ(m.name, "m");
  EXPECT_EQ(m.dtype, "float32");
  EXPECT_EQ(m.embeddings.vocabSize, 64);
  EXPECT_EQ(m.embeddings.typeVocabSize, 4);
  EXPECT_EQ(m.embeddings.dEmb, 16);
  EXPECT_EQ(m.embeddings.maxSeqLength, 8);
  EXPECT_EQ(m.embeddings.padId, 0);
  EXPECT_EQ(m.dModel, 16);
  EXPECT_EQ(m.dFf, 32);
  EXPECT_EQ(m.layerNormEpsilon, 1e-12);
  EXPECT_EQ(m.norm, NormPlacement::Post);
  EXPECT_EQ(m.biasInit, BiasInit::Zeros);
  EXPECT_FALSE(m.heads.pooler || m.heads.mlm || m.heads.nsp ||
               m.heads.causalLm);
  EXPECT_EQ(m.heads.classificationClasses, 0);
  ASSERT_EQ(m.numLayers(), 3);
  for (const LayerConfig &l : m.layers) {
    EXPECT_EQ(l.mixing, MixingKind::Linear);
    EXPECT_EQ(l.feedForward, FeedForwardKind::Dense);
    EXPECT_FALSE(l.useFft);
  }
}

TEST(ModelParserTest, ReadsEveryKey) {
  ModelConfig m = parseOk(R"json({
    "name": "full", "dtype": "float32",
    "embeddings": {"vocab_size": 90, "type_vocab_size": 2, "d_emb": 12,
                   "max_seq_length": 10, "pad_id": 7},
    "d_model": 24, "num_layers": 4, "d_ff": 40,
    "layer_norm_epsilon": 1e-6, "norm": "pre", "bias_init": "normal",
    "mixing": {"kind": "toeplitz", "use_fft": true, "attention_layers": [0]},
    "attention": {"num_heads": 4, "head_dim": 5, "causal": true},
    "moe_layers": [3],
    "moe": {"num_experts": 6, "expert_d_ff": 9,
            "routing": {"type": "tokens_choose", "k": 2, "batch_prioritized": false},
            "train_capacity_factor": 1.25, "eval_capacity_factor": 2,
            "min_expert_capacity": 3, "max_group_size": 20,
            "router_dtype": "bfloat16"},
    "heads": {"pooler": true, "mlm": true, "classification": {"num_classes": 5},
              "causal_lm": true}
  })json");
  EXPECT_EQ(m.name, "full");
  EXPECT_EQ(m.embeddings.vocabSize, 90);
  EXPECT_EQ(m.embeddings.typeVocabSize, 2);
  EXPECT_EQ(m.embeddings.dEmb, 12);
  EXPECT_EQ(m.embeddings.maxSeqLength, 10);
  EXPECT_EQ(m.embeddings.padId, 7);
  EXPECT_EQ(m.dModel, 24);
  EXPECT_EQ(m.dFf, 40);
  EXPECT_EQ(m.layerNormEpsilon, 1e-6);
  EXPECT_EQ(m.norm, NormPlacement::Pre);
  EXPECT_EQ(m.biasInit, BiasInit::Normal);
  EXPECT_EQ(m.attention.numHeads, 4);
  EXPECT_EQ(m.attention.headDim, 5);
  EXPECT_TRUE(m.attention.causal);
  EXPECT_EQ(m.moe.numExperts, 6);
  EXPECT_EQ(m.moe.expertDff, 9);
  EXPECT_EQ(m.moe.routing, RoutingKind::TokensChoose);
  EXPECT_EQ(m.moe.k, 2);
  EXPECT_FALSE(m.moe.batchPrioritized);
  EXPECT_EQ(m.moe.trainCapacityFactor, 1.25);
  EXPECT_EQ(m.moe.evalCapacityFactor, 2.0);
  EXPECT_EQ(m.moe.minExpertCapacity, 3);
  EXPECT_EQ(m.moe.maxGroupSize, 20);
  EXPECT_TRUE(m.moe.routerBf16);
  EXPECT_TRUE(m.heads.pooler);
  EXPECT_TRUE(m.heads.mlm);
  EXPECT_FALSE(m.heads.nsp);
  EXPECT_EQ(m.heads.classificationClasses, 5);
  EXPECT_TRUE(m.heads.causalLm);
  EXPECT_EQ(mixingOf(m), (std::vector<MixingKind>{
                             MixingKind::Attention, MixingKind::Toeplitz,
                             MixingKind::Toeplitz, MixingKind::Toeplitz}));
  EXPECT_EQ(feedForwardOf(m),
            (std::vector<FeedForwardKind>{
                FeedForwardKind::Dense, FeedForwardKind::Dense,
                FeedForwardKind::Dense, FeedForwardKind::Moe}));
  // use_fft applies to the structured mixing layers, not the attention one.
  EXPECT_FALSE(m.layers[0].useFft);
  EXPECT_TRUE(m.layers[1].useFft && m.layers[2].useFft && m.layers[3].useFft);
}

// Spec §11.1 and §11.3: the pre-training recipe.
TEST(ModelParserTest, TrainingDefaults) {
  ModelConfig m = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 2, "d_ff": 32,
    "mixing": {"kind": "linear"}
  })json");
  const TrainingConfig &t = m.training;
  EXPECT_EQ(t.learningRate, 1e-4);
  EXPECT_EQ(t.warmupSteps, 10000);
  EXPECT_EQ(t.totalSteps, 1000000);
  EXPECT_EQ(t.b1, 0.9);
  EXPECT_EQ(t.b2, 0.999);
  EXPECT_EQ(t.eps, 1e-6);
  EXPECT_EQ(t.weightDecay, 0.01);
  EXPECT_EQ(t.clipGradNorm, 0.0);
  EXPECT_EQ(t.dropoutRate, 0.1);
  EXPECT_EQ(t.attentionDropoutRate, 0.1);
  EXPECT_EQ(t.attentionOutputDropoutRate, 0.0);
  EXPECT_EQ(t.moeOutputDropoutRate, 0.0);
  EXPECT_EQ(t.expertDropoutRate, 0.1);
  EXPECT_EQ(t.jitterNoise, 0.0);
  // Spec 11.1 and the sigma-MoE WikiText-103 small recipe.
  EXPECT_EQ(t.routerZLossFactor, 1e-4);
  EXPECT_EQ(t.auxiliaryLossFactor, 0.01);
  EXPECT_EQ(t.entropyRegularizationFactor, 1e-4);
  EXPECT_EQ(t.sigmaMoeExpertDropout, 0.05);
  EXPECT_EQ(t.gradientAccumulationSteps, 1);
}

TEST(ModelParserTest, TrainingReadsEveryKey) {
  ModelConfig m = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 2, "d_ff": 32,
    "mixing": {"kind": "linear"},
    "training": {"learning_rate": 1e-5, "warmup_steps": 50,
                 "total_steps": 500, "b1": 0.8, "b2": 0.99, "eps": 1e-8,
                 "weight_decay": 0.1, "clip_grad_norm": 1.5,
                 "dropout_rate": 0.2, "attention_dropout_rate": 0.15,
                 "attention_output_dropout_rate": 0.3,
                 "moe_output_dropout_rate": 0.35,
                 "expert_dropout_rate": 0.25, "jitter_noise": 0.05,
                 "gradient_accumulation_steps": 4,
                 "router_z_loss_factor": 0.001,
                 "auxiliary_loss_factor": 0.5,
                 "entropy_regularization_factor": 0.002,
                 "sigma_moe_expert_dropout": 0.125}
  })json");
  const TrainingConfig &t = m.training;
  EXPECT_EQ(t.learningRate, 1e-5);
  EXPECT_EQ(t.warmupSteps, 50);
  EXPECT_EQ(t.totalSteps, 500);
  EXPECT_EQ(t.b1, 0.8);
  EXPECT_EQ(t.b2, 0.99);
  EXPECT_EQ(t.eps, 1e-8);
  EXPECT_EQ(t.weightDecay, 0.1);
  EXPECT_EQ(t.clipGradNorm, 1.5);
  EXPECT_EQ(t.dropoutRate, 0.2);
  EXPECT_EQ(t.attentionDropoutRate, 0.15);
  EXPECT_EQ(t.attentionOutputDropoutRate, 0.3);
  EXPECT_EQ(t.moeOutputDropoutRate, 0.35);
  EXPECT_EQ(t.expertDropoutRate, 0.25);
  EXPECT_EQ(t.jitterNoise, 0.05);
  EXPECT_EQ(t.routerZLossFactor, 0.001);
  EXPECT_EQ(t.auxiliaryLossFactor, 0.5);
  EXPECT_EQ(t.entropyRegularizationFactor, 0.002);
  EXPECT_EQ(t.sigmaMoeExpertDropout, 0.125);
  EXPECT_EQ(t.gradientAccumulationSteps, 4);
}

TEST(ModelParserTest, MoeDefaults) {
  ModelConfig m = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 2, "d_ff": 32,
    "mixing": {"kind": "identity"},
    "moe_layers": [1],
    "moe": {"num_experts": 4, "expert_d_ff": 8}
  })json");
  EXPECT_EQ(m.moe.routing, RoutingKind::ExpertsChoose);
  EXPECT_EQ(m.moe.k, 1);
  EXPECT_TRUE(m.moe.batchPrioritized);
  EXPECT_EQ(m.moe.trainCapacityFactor, 1.0);
  EXPECT_EQ(m.moe.evalCapacityFactor, 1.0);
  EXPECT_EQ(m.moe.minExpertCapacity, 4);
  EXPECT_EQ(m.moe.maxGroupSize, 4096);
  EXPECT_FALSE(m.moe.routerBf16);
  EXPECT_EQ(m.moe.initScale, 1.0);
  EXPECT_EQ(mixingOf(m), (std::vector<MixingKind>{MixingKind::Identity,
                                                  MixingKind::Identity}));
}

TEST(ModelParserTest, SigmaMoeReadsItsInitScale) {
  ModelConfig m = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 2, "d_ff": 32,
    "mixing": {"kind": "identity"},
    "moe_layers": [1],
    "moe": {"num_experts": 4, "expert_d_ff": 8, "init_scale": 0.25,
            "routing": {"type": "sigmoid_topk", "k": 2}}
  })json");
  EXPECT_EQ(m.moe.initScale, 0.25);
}

TEST(ModelParserTest, RoutingDefaultsPerType) {
  const char *tokensChoose = R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 2, "d_ff": 32,
    "mixing": {"kind": "linear"},
    "moe_layers": [0],
    "moe": {"num_experts": 4, "expert_d_ff": 8, "routing": {"type": "tokens_choose"}}
  })json";
  ModelConfig tc = parseOk(tokensChoose);
  EXPECT_EQ(tc.moe.routing, RoutingKind::TokensChoose);
  EXPECT_EQ(tc.moe.k, 1);
  EXPECT_TRUE(tc.moe.batchPrioritized);

  ModelConfig sigmoid = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 2, "d_ff": 32,
    "mixing": {"kind": "linear"},
    "moe_layers": [0],
    "moe": {"num_experts": 4, "expert_d_ff": 8, "routing": {"type": "sigmoid_topk", "k": 3}}
  })json");
  EXPECT_EQ(sigmoid.moe.routing, RoutingKind::SigmoidTopK);
  EXPECT_EQ(sigmoid.moe.k, 3);
}

TEST(ModelParserTest, HeadDimDefaultsToQuotient) {
  ModelConfig m = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 24, "num_layers": 2, "d_ff": 32,
    "mixing": {"kind": "attention"},
    "attention": {"num_heads": 3}
  })json");
  EXPECT_EQ(m.attention.headDim, 8);
  EXPECT_FALSE(m.attention.causal);
  EXPECT_EQ(mixingOf(m), (std::vector<MixingKind>{MixingKind::Attention,
                                                  MixingKind::Attention}));
}

TEST(ModelParserTest, IntegralNumberReadsAsInteger) {
  ModelConfig m = parseOk(R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64.0, "max_seq_length": 8},
    "d_model": 16.0, "num_layers": 4e0, "d_ff": 32,
    "mixing": {"kind": "linear"}
  })json");
  EXPECT_EQ(m.embeddings.vocabSize, 64);
  EXPECT_EQ(m.dModel, 16);
  EXPECT_EQ(m.numLayers(), 4);
}

TEST(ModelParserTest, ExplicitListsMatchLayouts) {
  const char *lists = R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 6, "d_ff": 32,
    "mixing": {"kind": "hartley", "attention_layers": [5, 4]},
    "attention": {"num_heads": 2},
    "moe_layers": [3, 2],
    "moe": {"num_experts": 4, "expert_d_ff": 8}
  })json";
  const char *layouts = R"json({
    "name": "m",
    "embeddings": {"vocab_size": 64, "max_seq_length": 8},
    "d_model": 16, "num_layers": 6, "d_ff": 32,
    "mixing": {"kind": "hartley", "attention_layers": {"layout": "TOP", "count": 2}},
    "attention": {"num_heads": 2},
    "moe_layers": {"layout": "MIDDLE", "count": 2},
    "moe": {"num_experts": 4, "expert_d_ff": 8}
  })json";
  ModelConfig a = parseOk(lists), b = parseOk(layouts);
  std::vector<MixingKind> mixing = {
      MixingKind::Hartley, MixingKind::Hartley,   MixingKind::Hartley,
      MixingKind::Hartley, MixingKind::Attention, MixingKind::Attention};
  std::vector<FeedForwardKind> ff = {
      FeedForwardKind::Dense, FeedForwardKind::Dense, FeedForwardKind::Moe,
      FeedForwardKind::Moe,   FeedForwardKind::Dense, FeedForwardKind::Dense};
  EXPECT_EQ(mixingOf(a), mixing);
  EXPECT_EQ(mixingOf(b), mixing);
  EXPECT_EQ(feedForwardOf(a), ff);
  EXPECT_EQ(feedForwardOf(b), ff);
}

TEST(ModelParserTest, MissingFileNamesPath) {
  Expected<ModelConfig> m = parseModelFile("/nonexistent/dir/model.json");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.message(),
            "/nonexistent/dir/model.json: cannot open: No such file or "
            "directory");
}

/// Layers a layout selects, by the rules of docs/dsl.md.
std::vector<int64_t> selected(LayerLayout layout, int64_t count,
                              int64_t numLayers) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < numLayers; ++l)
    if (isLayoutLayer(layout, count, l, numLayers))
      out.push_back(l);
  return out;
}

using Layers = std::vector<int64_t>;

TEST(LayoutTest, SparseMixerTables) {
  // Spec §2: base (14 layers) and small (8 layers).
  EXPECT_EQ(selected(LayerLayout::Top, 4, 14), (Layers{10, 11, 12, 13}));
  EXPECT_EQ(selected(LayerLayout::Middle, 4, 14), (Layers{5, 6, 7, 8}));
  EXPECT_EQ(selected(LayerLayout::Top, 4, 8), (Layers{4, 5, 6, 7}));
  EXPECT_EQ(selected(LayerLayout::Middle, 4, 8), (Layers{2, 3, 4, 5}));
}

TEST(LayoutTest, Bottom) {
  EXPECT_EQ(selected(LayerLayout::Bottom, 3, 12), (Layers{0, 1, 2}));
  EXPECT_EQ(selected(LayerLayout::Bottom, 0, 5), Layers{});
  EXPECT_EQ(selected(LayerLayout::Bottom, 4, 4), (Layers{0, 1, 2, 3}));
}

TEST(LayoutTest, Middle) {
  // 12 - 3 <= 2l < 12 + 3.
  EXPECT_EQ(selected(LayerLayout::Middle, 3, 12), (Layers{5, 6, 7}));
  // 7 - 2 <= 2l < 9.
  EXPECT_EQ(selected(LayerLayout::Middle, 2, 7), (Layers{3, 4}));
  // 5 <= 2l < 7.
  EXPECT_EQ(selected(LayerLayout::Middle, 1, 6), (Layers{3}));
  EXPECT_EQ(selected(LayerLayout::Middle, 2, 5), (Layers{2, 3}));
  EXPECT_EQ(selected(LayerLayout::Middle, 0, 6), Layers{});
}

TEST(LayoutTest, Mixed) {
  // Every (L / n)-th layer, which can select more than n layers.
  EXPECT_EQ(selected(LayerLayout::Mixed, 3, 12), (Layers{0, 4, 8}));
  EXPECT_EQ(selected(LayerLayout::Mixed, 2, 7), (Layers{0, 3, 6}));
  EXPECT_EQ(selected(LayerLayout::Mixed, 4, 14), (Layers{0, 3, 6, 9, 12}));
  EXPECT_EQ(selected(LayerLayout::Mixed, 4, 8), (Layers{0, 2, 4, 6}));
  EXPECT_EQ(selected(LayerLayout::Mixed, 1, 6), (Layers{0}));
  EXPECT_EQ(selected(LayerLayout::Mixed, 0, 6), Layers{});
}

TEST(LayoutTest, Top) {
  EXPECT_EQ(selected(LayerLayout::Top, 3, 12), (Layers{9, 10, 11}));
  EXPECT_EQ(selected(LayerLayout::Top, 2, 7), (Layers{5, 6}));
  EXPECT_EQ(selected(LayerLayout::Top, 5, 5), (Layers{0, 1, 2, 3, 4}));
  EXPECT_EQ(selected(LayerLayout::Top, 0, 5), Layers{});
}

} // namespace
} // namespace mixer
