//===- HuggingFaceBert.cpp - Hugging Face BERT checkpoints ----------------===//

#include "runtime/convert/HuggingFaceBert.h"

#include "runtime/data/Tokenizer.h"
#include "runtime/io/TensorFiles.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

namespace mixer::convert {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

/// config.json keys that do not change the computation (training
/// hyper-parameters, bookkeeping), read and ignored.
const std::set<std::string> kIgnoredKeys = {"_name_or_path",
                                            "architectures",
                                            "attention_probs_dropout_prob",
                                            "hidden_dropout_prob",
                                            "classifier_dropout",
                                            "initializer_range",
                                            "gradient_checkpointing",
                                            "transformers_version",
                                            "torch_dtype",
                                            "use_cache",
                                            "chunk_size_feed_forward",
                                            "output_past",
                                            "bos_token_id",
                                            "eos_token_id",
                                            "id2label",
                                            "label2id",
                                            "problem_type",
                                            "tokenizer_class",
                                            "output_hidden_states",
                                            "output_attentions",
                                            "return_dict",
                                            "pruned_heads",
                                            "tie_word_embeddings"};

/// The architectures of config.json whose tensors we map.
const std::set<std::string> kArchitectures = {"BertModel", "BertForMaskedLM",
                                              "BertForPreTraining"};

/// What config.json says about the model.
struct BertConfig {
  int64_t vocab = 0, hidden = 0, layers = 0, heads = 0, intermediate = 0,
          positions = 0, typeVocab = 2, padId = 0;
  double epsilon = 1e-12;
  std::string activation = "gelu_erf";
};

/// Reads an int key of `config`; `fail` reports a wrong or missing value.
template <typename Fail>
bool readInt(const json &config, const char *key, int64_t &out, bool required,
             Fail &&fail) {
  auto it = config.find(key);
  if (it == config.end()) {
    if (required)
      fail(std::string("missing key '") + key + "'");
    return !required;
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    fail(std::string("key '") + key + "' must be a non-negative integer, got " +
         it->dump());
    return false;
  }
  out = it->get<int64_t>();
  return true;
}

Expected<json> readJson(const std::string &path) {
  Expected<std::string> text = io::readFile(path);
  if (!text.ok())
    return text.takeStatus();
  json value = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_object())
    return Status::error(path + ": not a JSON object");
  return value;
}

Expected<BertConfig> readConfig(const std::string &path) {
  Expected<json> parsed = readJson(path);
  if (!parsed.ok())
    return parsed.takeStatus();
  const json &config = *parsed;
  std::string error;
  auto fail = [&](const std::string &text) {
    if (error.empty())
      error = path + ": " + text;
  };
  static const std::set<std::string> used = {
      "model_type",          "vocab_size",
      "hidden_size",         "num_hidden_layers",
      "num_attention_heads", "intermediate_size",
      "hidden_act",          "max_position_embeddings",
      "type_vocab_size",     "layer_norm_eps",
      "pad_token_id",        "position_embedding_type",
      "is_decoder",          "add_cross_attention"};
  for (const auto &item : config.items())
    if (!used.count(item.key()) && !kIgnoredKeys.count(item.key()))
      fail("unknown architecture key '" + item.key() +
           "' (mixer maps BERT models; this key may change the "
           "computation)");
  auto model = config.find("model_type");
  if (model == config.end() || *model != "bert")
    fail("model_type is " +
         (model == config.end() ? std::string("missing") : model->dump()) +
         ", mixer imports \"bert\" models");
  if (auto arch = config.find("architectures"); arch != config.end()) {
    if (!arch->is_array())
      fail("architectures must be a list");
    else
      for (const json &name : *arch)
        if (!name.is_string() || !kArchitectures.count(name.get<std::string>()))
          fail("architecture " + name.dump() +
               " is not one of BertModel, BertForMaskedLM, "
               "BertForPreTraining");
  }
  BertConfig c;
  readInt(config, "vocab_size", c.vocab, true, fail);
  readInt(config, "hidden_size", c.hidden, true, fail);
  readInt(config, "num_hidden_layers", c.layers, true, fail);
  readInt(config, "num_attention_heads", c.heads, true, fail);
  readInt(config, "intermediate_size", c.intermediate, true, fail);
  readInt(config, "max_position_embeddings", c.positions, true, fail);
  readInt(config, "type_vocab_size", c.typeVocab, false, fail);
  readInt(config, "pad_token_id", c.padId, false, fail);
  if (auto eps = config.find("layer_norm_eps"); eps != config.end()) {
    if (!eps->is_number() || !(eps->get<double>() > 0))
      fail("layer_norm_eps must be a positive number, got " + eps->dump());
    else
      c.epsilon = eps->get<double>();
  }
  auto act = config.find("hidden_act");
  std::string hiddenAct = act != config.end() && act->is_string()
                              ? act->get<std::string>()
                              : "gelu";
  if (hiddenAct == "gelu_new" || hiddenAct == "gelu_pytorch_tanh")
    c.activation = "gelu";
  else if (hiddenAct != "gelu")
    fail("hidden_act " + (act != config.end() ? act->dump() : "") +
         " is not one of \"gelu\" (exact), \"gelu_new\", "
         "\"gelu_pytorch_tanh\" (tanh approximation)");
  if (auto pos = config.find("position_embedding_type");
      pos != config.end() && *pos != "absolute")
    fail("position_embedding_type " + pos->dump() + " is not \"absolute\"");
  for (const char *flag : {"is_decoder", "add_cross_attention"})
    if (auto it = config.find(flag); it != config.end() && *it != false)
      fail(std::string(flag) + " must be false (mixer imports encoders)");
  if (error.empty() && (c.heads == 0 || c.hidden % c.heads != 0))
    fail("num_attention_heads " + std::to_string(c.heads) +
         " does not divide hidden_size " + std::to_string(c.hidden));
  if (error.empty() && c.padId >= c.vocab)
    fail("pad_token_id " + std::to_string(c.padId) +
         " is not below vocab_size " + std::to_string(c.vocab));
  if (error.empty() &&
      (c.vocab == 0 || c.hidden == 0 || c.layers == 0 || c.intermediate == 0 ||
       c.positions == 0 || c.typeVocab == 0))
    fail("vocab_size, hidden_size, num_hidden_layers, intermediate_size, "
         "max_position_embeddings and type_vocab_size must be positive");
  if (!error.empty())
    return Status::error(error);
  return c;
}

/// The sentence-transformers pooling of `dir` (modules.json), if any.
struct SentencePooling {
  std::string mode; ///< "mean" or "cls"
  bool normalize = false;
};

Expected<std::optional<SentencePooling>>
readSentencePooling(const std::string &dir, int64_t hidden) {
  fs::path modules = fs::path(dir) / "modules.json";
  if (!fs::exists(modules))
    return std::optional<SentencePooling>();
  Expected<std::string> text = io::readFile(modules.string());
  if (!text.ok())
    return text.takeStatus();
  json list = json::parse(*text, nullptr, false);
  if (list.is_discarded() || !list.is_array())
    return Status::error(modules.string() + ": not a JSON list of modules");
  std::optional<SentencePooling> pooling;
  bool normalize = false;
  for (const json &module : list) {
    std::string type = module.is_object() && module.contains("type") &&
                               module["type"].is_string()
                           ? module["type"].get<std::string>()
                           : "";
    if (type == "sentence_transformers.models.Transformer")
      continue;
    if (type == "sentence_transformers.models.Normalize") {
      normalize = true;
      continue;
    }
    if (type != "sentence_transformers.models.Pooling")
      return Status::error(modules.string() + ": module " + module.dump() +
                           " has no counterpart in mixer");
    std::string path = module.value("path", "");
    fs::path file = fs::path(dir) / path / "config.json";
    Expected<json> config = readJson(file.string());
    if (!config.ok())
      return config.takeStatus();
    SentencePooling p;
    for (const auto &item : config->items()) {
      if (item.key() == "word_embedding_dimension") {
        if (item.value() != hidden)
          return Status::error(file.string() + ": word_embedding_dimension " +
                               item.value().dump() +
                               " contradicts config.json's hidden_size " +
                               std::to_string(hidden));
        continue;
      }
      if (item.value() != true)
        continue;
      if (item.key() == "pooling_mode_mean_tokens")
        p.mode = p.mode.empty() ? "mean" : "several";
      else if (item.key() == "pooling_mode_cls_token")
        p.mode = p.mode.empty() ? "cls" : "several";
      else
        return Status::error(file.string() + ": " + item.key() +
                             " is not supported (mixer pools the mean of "
                             "the tokens or the first token)");
    }
    if (p.mode != "mean" && p.mode != "cls")
      return Status::error(file.string() +
                           ": exactly one of pooling_mode_mean_tokens and "
                           "pooling_mode_cls_token must be true");
    pooling = p;
  }
  if (pooling)
    pooling->normalize = normalize;
  else if (normalize)
    return Status::error(modules.string() + ": Normalize without Pooling");
  return pooling;
}

/// How a source tensor becomes a mixer parameter.
enum class Layout {
  Same,      ///< the same values, reshaped to the target shape
  Transpose, ///< a [out, in] nn.Linear weight transposed to [in, out]
};

/// One mapped tensor: its source name and shape and its mixer counterpart.
struct Mapping {
  std::string source;
  std::vector<int64_t> sourceShape;
  std::string target;
  std::vector<int64_t> targetShape;
  Layout layout = Layout::Same;
  bool required = true;
};

std::vector<Mapping> mappings(const BertConfig &c, const std::string &prefix) {
  int64_t d = c.hidden, f = c.intermediate, h = c.heads, hd = d / h;
  std::vector<Mapping> list;
  auto add = [&](std::string source, std::vector<int64_t> sourceShape,
                 std::string target, std::vector<int64_t> targetShape,
                 Layout layout = Layout::Same, bool required = true) {
    list.push_back({prefix + source, std::move(sourceShape), std::move(target),
                    std::move(targetShape), layout, required});
  };
  auto layerNorm = [&](const std::string &source, const std::string &target) {
    add(source + ".weight", {d}, target + "/scale", {d});
    add(source + ".bias", {d}, target + "/bias", {d});
  };
  const std::string emb = "encoder/embedder";
  add("embeddings.word_embeddings.weight", {c.vocab, d},
      emb + "/word/embedding", {c.vocab, d});
  add("embeddings.position_embeddings.weight", {c.positions, d},
      emb + "/position/embedding", {1, c.positions, d});
  add("embeddings.token_type_embeddings.weight", {c.typeVocab, d},
      emb + "/type/embedding", {c.typeVocab, d});
  layerNorm("embeddings.LayerNorm", emb + "/layer_norm");
  for (int64_t l = 0; l < c.layers; ++l) {
    std::string src = "encoder.layer." + std::to_string(l) + ".";
    std::string attn = "encoder/attention_" + std::to_string(l) + "/self/";
    std::string block = "encoder/encoder_" + std::to_string(l) + "/";
    std::string ff = "encoder/feed_forward_" + std::to_string(l) + "/";
    for (const char *name : {"query", "key", "value"}) {
      add(src + "attention.self." + name + ".weight", {d, d},
          attn + name + "/kernel", {d, h, hd}, Layout::Transpose);
      add(src + "attention.self." + name + ".bias", {d}, attn + name + "/bias",
          {h, hd});
    }
    add(src + "attention.output.dense.weight", {d, d}, attn + "out/kernel",
        {h, hd, d}, Layout::Transpose);
    add(src + "attention.output.dense.bias", {d}, attn + "out/bias", {d});
    layerNorm(src + "attention.output.LayerNorm", block + "mixing_layer_norm");
    add(src + "intermediate.dense.weight", {f, d}, ff + "intermediate/kernel",
        {d, f}, Layout::Transpose);
    add(src + "intermediate.dense.bias", {f}, ff + "intermediate/bias", {f});
    add(src + "output.dense.weight", {d, f}, ff + "output/kernel", {f, d},
        Layout::Transpose);
    add(src + "output.dense.bias", {d}, ff + "output/bias", {d});
    layerNorm(src + "output.LayerNorm", block + "output_layer_norm");
  }
  add("pooler.dense.weight", {d, d}, "encoder/pooler/kernel", {d, d},
      Layout::Transpose, /*required=*/false);
  add("pooler.dense.bias", {d}, "encoder/pooler/bias", {d}, Layout::Same,
      false);
  return list;
}

/// The masked-LM and next-sentence tensors of BertForPreTraining and
/// BertForMaskedLM (no "bert." prefix).
std::vector<Mapping> headMappings(const BertConfig &c) {
  int64_t d = c.hidden;
  return {
      {"cls.predictions.transform.dense.weight",
       {d, d},
       "predictions_dense/kernel",
       {d, d},
       Layout::Transpose,
       false},
      {"cls.predictions.transform.dense.bias",
       {d},
       "predictions_dense/bias",
       {d},
       Layout::Same,
       false},
      {"cls.predictions.transform.LayerNorm.weight",
       {d},
       "predictions_layer_norm/scale",
       {d},
       Layout::Same,
       false},
      {"cls.predictions.transform.LayerNorm.bias",
       {d},
       "predictions_layer_norm/bias",
       {d},
       Layout::Same,
       false},
      {"cls.predictions.bias",
       {c.vocab},
       "predictions_output/output_bias",
       {c.vocab},
       Layout::Same,
       false},
      {"cls.seq_relationship.weight",
       {2, d},
       "classification/output_kernel",
       {2, d},
       Layout::Same,
       false},
      {"cls.seq_relationship.bias",
       {2},
       "classification/output_bias",
       {2},
       Layout::Same,
       false},
  };
}

io::HostTensor mapped(const io::HostTensor &source, const Mapping &m) {
  io::HostTensor out;
  out.name = m.target;
  out.dtype = io::DType::F32;
  out.shape = m.targetShape;
  out.data.resize(source.data.size());
  if (m.layout == Layout::Same) {
    out.data = source.data;
    return out;
  }
  int64_t rows = m.sourceShape[0], cols = m.sourceShape[1];
  const float *in = source.as<float>();
  float *o = out.as<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      o[c * rows + r] = in[r * cols + c];
  return out;
}

} // namespace

bool isHuggingFaceDirectory(const std::string &dir) {
  std::error_code ignored;
  return fs::is_directory(dir, ignored) &&
         fs::exists(fs::path(dir) / "config.json", ignored);
}

Expected<ImportedModel> importHuggingFaceBert(const std::string &dir) {
  fs::path root(dir);
  Expected<BertConfig> config = readConfig((root / "config.json").string());
  if (!config.ok())
    return config.takeStatus();
  const BertConfig &c = *config;
  std::string weightsPath = (root / "model.safetensors").string();
  if (!fs::exists(weightsPath)) {
    fs::path bin = root / "pytorch_model.bin";
    if (fs::exists(bin))
      return Status::error(
          bin.string() +
          ": PyTorch pickles are not read (unpickling runs code); convert "
          "the checkpoint to model.safetensors first");
    return Status::error(weightsPath + ": missing (the weights of " + dir +
                         ")");
  }
  fs::path vocabPath = root / "vocab.txt";
  Expected<data::Tokenizer> vocab = data::Tokenizer::load(vocabPath.string());
  if (!vocab.ok())
    return vocab.takeStatus();
  if (Status s = vocab->checkMatches(c.vocab, c.padId); !s.ok())
    return Status::error(s.message() + " (config.json)");

  Expected<std::optional<SentencePooling>> pooling =
      readSentencePooling(dir, c.hidden);
  if (!pooling.ok())
    return pooling.takeStatus();

  Expected<std::vector<io::HostTensor>> read = io::readSafetensors(weightsPath);
  if (!read.ok())
    return read.takeStatus();
  std::vector<io::HostTensor> all = std::move(*read);
  std::map<std::string, const io::HostTensor *> present;
  for (const io::HostTensor &t : all)
    present[t.name] = &t;
  std::string prefix =
      present.count("bert.embeddings.word_embeddings.weight") ? "bert." : "";
  std::vector<Mapping> table = mappings(c, prefix);
  std::vector<Mapping> heads = headMappings(c);
  table.insert(table.end(), heads.begin(), heads.end());

  ImportedModel result;
  std::set<std::string> used;
  std::map<std::string, bool> found;
  for (const Mapping &m : table) {
    auto it = present.find(m.source);
    found[m.target] = it != present.end();
    if (it == present.end()) {
      if (m.required)
        return Status::error(weightsPath + ": missing tensor '" + m.source +
                             "' (mixer's " + m.target + ")");
      continue;
    }
    const io::HostTensor &t = *it->second;
    if (t.dtype != io::DType::F32)
      return Status::error(weightsPath + ": tensor '" + m.source + "' is " +
                           io::dtypeName(t.dtype) +
                           "; mixer imports F32 checkpoints");
    if (t.shape != m.sourceShape)
      return Status::error(weightsPath + ": tensor '" + m.source + "' is " +
                           io::formatShape(t.shape) +
                           " but config.json makes it " +
                           io::formatShape(m.sourceShape));
    used.insert(m.source);
    result.weights.push_back(mapped(t, m));
    result.mapped.push_back(
        m.source + " " + io::formatShape(t.shape) + " -> " + m.target + " " +
        io::formatShape(m.targetShape) +
        (m.layout == Layout::Transpose ? " (transposed)" : ""));
  }
  // The decoder of the masked-LM head is the word embedding (tied); its bias
  // is cls.predictions.bias again.
  auto tied = [&](const std::string &name, const std::string &same) {
    auto it = present.find(name), other = present.find(same);
    if (it == present.end())
      return Status::success();
    if (other == present.end() || it->second->shape != other->second->shape ||
        it->second->data != other->second->data)
      return Status::error(weightsPath + ": tensor '" + name +
                           "' differs from '" + same +
                           "'; mixer ties them (one parameter)");
    used.insert(name);
    result.mapped.push_back(name + " " + io::formatShape(it->second->shape) +
                            " = " + same + " (tied)");
    return Status::success();
  };
  if (Status s = tied("cls.predictions.decoder.weight",
                      prefix + "embeddings.word_embeddings.weight");
      !s.ok())
    return s;
  if (Status s = tied("cls.predictions.decoder.bias", "cls.predictions.bias");
      !s.ok())
    return s;
  for (const io::HostTensor &t : all) {
    if (used.count(t.name))
      continue;
    // A buffer of position indices, not a parameter.
    if (t.name == prefix + "embeddings.position_ids")
      continue;
    return Status::error(weightsPath + ": tensor '" + t.name +
                         "' has no counterpart in mixer's BERT model");
  }
  auto groupFound = [&](std::initializer_list<const char *> names) {
    int count = 0;
    for (const char *n : names)
      count += found[n];
    return count;
  };
  bool pooler = found["encoder/pooler/kernel"] && found["encoder/pooler/bias"];
  int mlm =
      groupFound({"predictions_dense/kernel", "predictions_dense/bias",
                  "predictions_layer_norm/scale", "predictions_layer_norm/bias",
                  "predictions_output/output_bias"});
  int nsp = groupFound(
      {"classification/output_kernel", "classification/output_bias"});
  if (found["encoder/pooler/kernel"] != found["encoder/pooler/bias"] ||
      (mlm != 0 && mlm != 5) || (nsp != 0 && nsp != 2))
    return Status::error(weightsPath + ": a head is incomplete (the pooler, "
                                       "masked-LM or next-sentence tensors "
                                       "are only partly present)");
  if (nsp && !pooler)
    return Status::error(weightsPath + ": next-sentence tensors without the "
                                       "pooler they read");

  nlohmann::ordered_json model;
  std::string name = fs::absolute(root).lexically_normal().filename().string();
  if (name.empty())
    name =
        fs::absolute(root).lexically_normal().parent_path().filename().string();
  model["name"] = name.empty() ? "bert" : name;
  model["embeddings"] = {{"vocab_size", c.vocab},
                         {"type_vocab_size", c.typeVocab},
                         {"max_seq_length", c.positions},
                         {"pad_id", c.padId},
                         {"hidden_mapping_in", false}};
  model["d_model"] = c.hidden;
  model["num_layers"] = c.layers;
  model["d_ff"] = c.intermediate;
  model["layer_norm_epsilon"] = c.epsilon;
  model["activation"] = c.activation;
  model["mixing"] = {{"kind", "attention"}};
  model["attention"] = {{"num_heads", c.heads}};
  nlohmann::ordered_json headsJson = nlohmann::ordered_json::object();
  if (pooler)
    headsJson["pooler"] = true;
  if (mlm)
    headsJson["mlm"] = true;
  if (nsp)
    headsJson["nsp"] = true;
  if (*pooling)
    headsJson["sentence_embedding"] = {{"pooling", (*pooling)->mode},
                                       {"normalize", (*pooling)->normalize}};
  model["heads"] = headsJson;
  result.model = std::move(model);
  result.copied.push_back({vocabPath.string(), "vocab.txt"});
  return result;
}

} // namespace mixer::convert
