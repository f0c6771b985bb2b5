//===- ModelZooTest.cpp - The models shipped in models/ -------------------===//

#include "frontend/ModelParser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mixer {
namespace {

namespace fs = std::filesystem;

const fs::path kModels = fs::path(MIXER_SOURCE_DIR) / "models";

ModelConfig load(const std::string &relative) {
  Expected<ModelConfig> m = parseModelFile((kModels / relative).string());
  EXPECT_TRUE(m.ok()) << m.message();
  return m.ok() ? *m : ModelConfig();
}

std::vector<int64_t> layersWhere(const ModelConfig &m,
                                 bool (*pred)(const LayerConfig &)) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < m.numLayers(); ++l)
    if (pred(m.layers[l]))
      out.push_back(l);
  return out;
}

std::vector<int64_t> attentionLayers(const ModelConfig &m) {
  return layersWhere(m, [](const LayerConfig &l) {
    return l.mixing == MixingKind::Attention;
  });
}

std::vector<int64_t> moeLayers(const ModelConfig &m) {
  return layersWhere(m, [](const LayerConfig &l) {
    return l.feedForward == FeedForwardKind::Moe;
  });
}

std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  for (int64_t i = begin; i < end; ++i)
    out.push_back(i);
  return out;
}

/// Parameter count by the table of docs/parameters.md.
int64_t countParameters(const ModelConfig &m) {
  const EmbeddingConfig &e = m.embeddings;
  int64_t d = m.dModel, de = e.dEmb, s = e.maxSeqLength, v = e.vocabSize;
  int64_t n = (v + s + e.typeVocabSize + 2) * de;
  if (e.hiddenMappingIn)
    n += de * d + d;
  for (const LayerConfig &l : m.layers) {
    switch (l.mixing) {
    case MixingKind::Attention: {
      int64_t inner = m.attention.numHeads * m.attention.headDim;
      n += 3 * (d * inner + inner) + inner * d + d;
      break;
    }
    case MixingKind::Linear:
      n += d * d + s * s;
      break;
    case MixingKind::Circulant:
      n += d + s;
      break;
    case MixingKind::Toeplitz:
      n += (2 * d - 1) + (2 * s - 1);
      break;
    case MixingKind::Fourier:
    case MixingKind::Hartley:
    case MixingKind::Identity:
      break;
    }
    const MoeConfig &moe = m.moe;
    if (l.feedForward == FeedForwardKind::Dense)
      n += 2 * d * m.dFf + m.dFf + d;
    else if (moe.routing == RoutingKind::SigmoidTopK)
      n += moe.numExperts * (2 * d * moe.expertDff + d);
    else
      n += moe.numExperts * (2 * d * moe.expertDff + moe.expertDff + d) +
           d * moe.numExperts + moe.numExperts;
    n += 4 * d; // two LayerNorms
  }
  if (m.norm == NormPlacement::Pre)
    n += 2 * d;
  if (m.heads.pooler)
    n += d * d + d;
  if (m.heads.mlm)
    n += d * de + 3 * de + v;
  int64_t classes = m.heads.nsp ? 2 : m.heads.classificationClasses;
  n += classes * (d + 1);
  if (m.heads.causalLm)
    n += d * v + v;
  return n;
}

TEST(ModelZooTest, EveryModelParsesAndIsNamedAfterItsFile) {
  int parsed = 0;
  for (const auto &entry : fs::recursive_directory_iterator(kModels)) {
    if (entry.path().extension() != ".json")
      continue;
    SCOPED_TRACE(entry.path().string());
    Expected<ModelConfig> m = parseModelFile(entry.path().string());
    ASSERT_TRUE(m.ok()) << m.message();
    EXPECT_EQ(m->name, entry.path().stem().string());
    ++parsed;
  }
  EXPECT_GE(parsed, 20);
}

TEST(ModelZooTest, ParameterCounts) {
  // The first two are independent references (spec §12); the rest were
  // computed from the JSON files with a separate script.
  const std::map<std::string, int64_t> expected = {
      {"sparse_mixer_base.json", 182356802},
      {"bert_base.json", 111835138},
      {"fast_sparse_mixer_base.json", 182356802},
      {"sparse_mixer_small.json", 166600514},
      {"fast_sparse_mixer_small.json", 166600514},
      {"sparse_mixer_base_tokens_choose.json", 182356802},
      {"fnet_base.json", 83486722},
      {"hartley_base.json", 172911426},
      {"circulant_base.json", 172925762},
      {"toeplitz_base.json", 172940070},
      {"sigma_moe_wt103_small.json", 44847512},
      {"sparse_mixer_mini.json", 13664338},
      {"tiny/sparse_mixer_tiny.json", 16122},
      {"tiny/fast_sparse_mixer_tiny.json", 13766},
      {"tiny/bert_tiny.json", 24270},
      {"tiny/fnet_tiny.json", 7414},
      {"tiny/hartley_tiny.json", 13338},
      {"tiny/circulant_tiny.json", 16886},
      {"tiny/toeplitz_tiny.json", 13586},
      {"tiny/tokens_choose_tiny.json", 16122},
      {"tiny/sigma_moe_tiny.json", 17132},
      {"tiny/minilm_tiny.json", 22972},
  };
  for (const auto &[file, count] : expected) {
    SCOPED_TRACE(file);
    EXPECT_EQ(countParameters(load(file)), count);
  }
}

TEST(ModelZooTest, SparseMixerFamilyLayouts) {
  for (const char *file :
       {"sparse_mixer_base.json", "fast_sparse_mixer_base.json",
        "sparse_mixer_base_tokens_choose.json"}) {
    SCOPED_TRACE(file);
    ModelConfig m = load(file);
    ASSERT_EQ(m.numLayers(), 14);
    EXPECT_EQ(attentionLayers(m), range(10, 14));
    EXPECT_EQ(moeLayers(m), range(5, 9));
    for (int64_t l = 0; l < 10; ++l)
      EXPECT_EQ(m.layers[l].mixing, MixingKind::Linear);
  }
  for (const char *file :
       {"sparse_mixer_small.json", "fast_sparse_mixer_small.json"}) {
    SCOPED_TRACE(file);
    ModelConfig m = load(file);
    ASSERT_EQ(m.numLayers(), 8);
    EXPECT_EQ(attentionLayers(m), range(4, 8));
    EXPECT_EQ(moeLayers(m), range(2, 6));
  }
}

TEST(ModelZooTest, SparseMixerBaseSettings) {
  ModelConfig m = load("sparse_mixer_base.json");
  EXPECT_EQ(m.embeddings.vocabSize, 32000);
  EXPECT_EQ(m.embeddings.maxSeqLength, 512);
  EXPECT_EQ(m.embeddings.padId, 3);
  EXPECT_EQ(m.embeddings.typeVocabSize, 4);
  EXPECT_EQ(m.dModel, 512);
  EXPECT_EQ(m.dFf, 2048);
  EXPECT_EQ(m.attention.numHeads, 8);
  EXPECT_EQ(m.attention.headDim, 64);
  EXPECT_EQ(m.moe.numExperts, 16);
  EXPECT_EQ(m.moe.routing, RoutingKind::ExpertsChoose);
  EXPECT_EQ(m.moe.evalCapacityFactor, 1.0);
  EXPECT_TRUE(m.heads.pooler && m.heads.mlm && m.heads.nsp);

  for (const char *file :
       {"fast_sparse_mixer_base.json", "fast_sparse_mixer_small.json"}) {
    ModelConfig fast = load(file);
    EXPECT_EQ(fast.moe.trainCapacityFactor, 0.5) << file;
    EXPECT_EQ(fast.moe.evalCapacityFactor, 0.5) << file;
  }
  ModelConfig tc = load("sparse_mixer_base_tokens_choose.json");
  EXPECT_EQ(tc.moe.routing, RoutingKind::TokensChoose);
  EXPECT_EQ(tc.moe.k, 1);
  EXPECT_TRUE(tc.moe.batchPrioritized);
}

TEST(ModelZooTest, BertAndFnet) {
  ModelConfig bert = load("bert_base.json");
  EXPECT_EQ(attentionLayers(bert), range(0, 12));
  EXPECT_TRUE(moeLayers(bert).empty());
  EXPECT_EQ(bert.attention.headDim, 64);
  EXPECT_EQ(bert.embeddings.dEmb, 768);

  ModelConfig fnet = load("fnet_base.json");
  EXPECT_EQ(fnet.biasInit, BiasInit::Normal);
  EXPECT_EQ(fnet.numLayers(), 12);
  for (const LayerConfig &l : fnet.layers) {
    EXPECT_EQ(l.mixing, MixingKind::Fourier);
    EXPECT_TRUE(l.useFft);
    EXPECT_EQ(l.feedForward, FeedForwardKind::Dense);
  }
}

TEST(ModelZooTest, StructuredMixingAblations) {
  const std::map<std::string, MixingKind> kinds = {
      {"hartley_base.json", MixingKind::Hartley},
      {"circulant_base.json", MixingKind::Circulant},
      {"toeplitz_base.json", MixingKind::Toeplitz}};
  for (const auto &[file, kind] : kinds) {
    SCOPED_TRACE(file);
    ModelConfig m = load(file);
    ASSERT_EQ(m.numLayers(), 14);
    for (const LayerConfig &l : m.layers)
      EXPECT_EQ(l.mixing, kind);
    EXPECT_EQ(moeLayers(m), range(5, 9));
    EXPECT_EQ(m.moe.numExperts, 16);
  }
}

TEST(ModelZooTest, SigmaMoe) {
  ModelConfig m = load("sigma_moe_wt103_small.json");
  EXPECT_EQ(m.dModel, 412);
  EXPECT_EQ(m.embeddings.dEmb, 412);
  EXPECT_EQ(m.embeddings.vocabSize, 8000);
  EXPECT_EQ(m.embeddings.maxSeqLength, 256);
  EXPECT_EQ(m.embeddings.typeVocabSize, 1);
  EXPECT_EQ(m.embeddings.padId, 0);
  EXPECT_EQ(m.norm, NormPlacement::Pre);
  EXPECT_EQ(m.attention.numHeads, 10);
  EXPECT_EQ(m.attention.headDim, 41);
  EXPECT_TRUE(m.attention.causal);
  EXPECT_EQ(attentionLayers(m), range(0, 16));
  EXPECT_EQ(moeLayers(m), range(0, 16));
  EXPECT_EQ(m.moe.routing, RoutingKind::SigmoidTopK);
  EXPECT_EQ(m.moe.numExperts, 16);
  EXPECT_EQ(m.moe.expertDff, 128);
  EXPECT_EQ(m.moe.k, 4);
  EXPECT_TRUE(m.heads.causalLm);
  EXPECT_FALSE(m.heads.pooler || m.heads.mlm || m.heads.nsp);
  // The paper's pre-LN recipe: sqrt(2 / 16) init scale, dropout on the
  // attention and sigma-MoE outputs, none on the attention probabilities.
  EXPECT_DOUBLE_EQ(m.moe.initScale, std::sqrt(2.0 / 16));
  EXPECT_EQ(m.training.attentionDropoutRate, 0.0);
  EXPECT_EQ(m.training.attentionOutputDropoutRate, 0.1);
  EXPECT_EQ(m.training.moeOutputDropoutRate, 0.1);
}

TEST(ModelZooTest, TinyModelsAreToySized) {
  bool someSequenceNotPowerOfTwo = false;
  for (const auto &entry : fs::directory_iterator(kModels / "tiny")) {
    SCOPED_TRACE(entry.path().string());
    Expected<ModelConfig> m = parseModelFile(entry.path().string());
    ASSERT_TRUE(m.ok()) << m.message();
    EXPECT_EQ(m->numLayers(), 4);
    EXPECT_GE(m->embeddings.vocabSize, 64);
    EXPECT_LE(m->embeddings.vocabSize, 100);
    int64_t s = m->embeddings.maxSeqLength;
    EXPECT_GE(s, 8);
    EXPECT_LE(s, 12);
    someSequenceNotPowerOfTwo |= (s & (s - 1)) != 0;
    EXPECT_GE(m->dModel, 16);
    EXPECT_LE(m->dModel, 24);
    if (!moeLayers(*m).empty()) {
      EXPECT_EQ(m->moe.numExperts, 4);
    }
  }
  EXPECT_TRUE(someSequenceNotPowerOfTwo);
}

TEST(ModelZooTest, TinyModelsFollowTheirFamilies) {
  ModelConfig sm = load("tiny/sparse_mixer_tiny.json");
  EXPECT_EQ(attentionLayers(sm), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(moeLayers(sm), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(sm.layers[0].mixing, MixingKind::Linear);

  ModelConfig fsm = load("tiny/fast_sparse_mixer_tiny.json");
  EXPECT_EQ(fsm.moe.evalCapacityFactor, 0.5);
  EXPECT_EQ(attentionLayers(fsm), (std::vector<int64_t>{2, 3}));

  ModelConfig tc = load("tiny/tokens_choose_tiny.json");
  EXPECT_EQ(tc.moe.routing, RoutingKind::TokensChoose);
  EXPECT_EQ(attentionLayers(tc), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(moeLayers(tc), (std::vector<int64_t>{1, 2}));

  ModelConfig bert = load("tiny/bert_tiny.json");
  EXPECT_EQ(attentionLayers(bert), range(0, 4));
  EXPECT_TRUE(moeLayers(bert).empty());

  ModelConfig minilm = load("tiny/minilm_tiny.json");
  EXPECT_EQ(attentionLayers(minilm), range(0, 4));
  EXPECT_EQ(minilm.activation, GeluKind::Erf);
  EXPECT_FALSE(minilm.embeddings.hiddenMappingIn);
  EXPECT_EQ(minilm.embeddings.typeVocabSize, 2);
  EXPECT_EQ(minilm.heads.sentencePooling, SentencePooling::Mean);
  EXPECT_TRUE(minilm.heads.sentenceNormalize);

  ModelConfig fnet = load("tiny/fnet_tiny.json");
  EXPECT_EQ(fnet.biasInit, BiasInit::Normal);
  EXPECT_TRUE(fnet.layers[0].useFft);

  const std::map<std::string, MixingKind> kinds = {
      {"tiny/hartley_tiny.json", MixingKind::Hartley},
      {"tiny/circulant_tiny.json", MixingKind::Circulant},
      {"tiny/toeplitz_tiny.json", MixingKind::Toeplitz}};
  for (const auto &[file, kind] : kinds) {
    ModelConfig m = load(file);
    EXPECT_TRUE(attentionLayers(m).empty()) << file;
    EXPECT_EQ(m.layers[0].mixing, kind) << file;
    EXPECT_EQ(moeLayers(m), (std::vector<int64_t>{1, 2})) << file;
  }

  ModelConfig sigma = load("tiny/sigma_moe_tiny.json");
  EXPECT_EQ(sigma.norm, NormPlacement::Pre);
  EXPECT_TRUE(sigma.attention.causal);
  EXPECT_EQ(moeLayers(sigma), range(0, 4));
  EXPECT_EQ(sigma.moe.routing, RoutingKind::SigmoidTopK);
  EXPECT_TRUE(sigma.heads.causalLm);
}

} // namespace
} // namespace mixer
