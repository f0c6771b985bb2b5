//===- ModelParser.cpp - Model JSON parser and validator ------------------===//
//
// Validation runs in two phases. The first checks every value on its own
// (type, range, known keys, required keys, rules inside one object) and
// collects all such errors; the second, run only when the first found none,
// checks rules that relate values of different objects and expands the layer
// placements.
//
//===----------------------------------------------------------------------===//

#include "frontend/ModelParser.h"

#include "frontend/JsonLocator.h"
#include "frontend/MoeGrouping.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

namespace mixer {

bool isLayoutLayer(LayerLayout layout, int64_t count, int64_t layer,
                   int64_t numLayers) {
  switch (layout) {
  case LayerLayout::Bottom:
    return layer < count;
  case LayerLayout::Middle:
    return numLayers - count <= 2 * layer && 2 * layer < numLayers + count;
  case LayerLayout::Mixed:
    return count > 0 && layer % (numLayers / count) == 0;
  case LayerLayout::Top:
    return layer >= numLayers - count;
  }
  return false;
}

namespace {

using json = nlohmann::json;

/// Upper bound of every integer in a model: sizes beyond it are meaningless
/// and products of them would overflow.
constexpr int64_t kMaxInteger = 2147483647;

/// Upper bound of num_layers: what mixc compiles in about half a minute and
/// 2 GiB (docs/fuzzing.md, "Deep models").
constexpr int64_t kMaxLayers = 4096;

//===----------------------------------------------------------------------===//
// Diagnostics
//===----------------------------------------------------------------------===//

std::string displayPointer(const std::string &pointer) {
  return pointer.empty() ? "/" : pointer;
}

/// Collects errors and renders them in document order.
class Diagnostics {
public:
  Diagnostics(std::string fileName, const JsonLocator &locator)
      : fileName(std::move(fileName)), locator(locator) {}

  void at(const SourceLocation &loc, const std::string &pointer,
          const std::string &reason) {
    std::ostringstream os;
    os << fileName << ':' << loc.line << ':' << loc.column << ": "
       << displayPointer(pointer) << ": " << reason;
    errors.push_back({loc.offset, os.str()});
  }

  /// An error about the value at `pointer`.
  void atValue(const std::string &pointer, const std::string &reason) {
    at(locator.valueLocation(pointer), pointer, reason);
  }

  /// An error about the key of the member at `pointer`.
  void atKey(const std::string &pointer, const std::string &reason) {
    at(locator.keyLocation(pointer), pointer, reason);
  }

  bool empty() const { return errors.empty(); }

  Status status() {
    std::stable_sort(
        errors.begin(), errors.end(),
        [](const auto &a, const auto &b) { return a.first < b.first; });
    std::string message;
    for (const auto &e : errors) {
      if (!message.empty())
        message += '\n';
      message += e.second;
    }
    return Status::error(message);
  }

private:
  std::string fileName;
  const JsonLocator &locator;
  std::vector<std::pair<size_t, std::string>> errors;
};

/// A short description of a value for "got ..." in diagnostics.
std::string describe(const json &v) {
  if (v.is_array())
    return "an array";
  if (v.is_object())
    return "an object";
  return v.dump();
}

//===----------------------------------------------------------------------===//
// Suggestions
//===----------------------------------------------------------------------===//

std::string toLower(std::string s) {
  for (char &c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Levenshtein distance, ignoring case.
size_t editDistance(const std::string &a, const std::string &b) {
  std::string x = toLower(a), y = toLower(b);
  std::vector<size_t> row(y.size() + 1);
  for (size_t j = 0; j <= y.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= x.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= y.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (x[i - 1] == y[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[y.size()];
}

/// The candidate closest to `word`, when it is close enough to be a likely
/// misspelling.
std::optional<std::string> closestName(const std::string &word,
                                       const std::vector<std::string> &names) {
  size_t limit = std::max<size_t>(1, word.size() / 3);
  std::optional<std::string> best;
  size_t bestDistance = limit + 1;
  for (const std::string &name : names) {
    size_t d = editDistance(word, name);
    if (d < bestDistance) {
      bestDistance = d;
      best = name;
    }
  }
  return best;
}

std::string joinQuoted(const std::vector<std::string> &names,
                       const char *quote) {
  std::string out;
  for (const std::string &n : names) {
    if (!out.empty())
      out += ", ";
    out += quote + n + quote;
  }
  return out;
}

//===----------------------------------------------------------------------===//
// Scalar readers: each reports its own type and range errors.
//===----------------------------------------------------------------------===//

template <typename E> using EnumTable = std::vector<std::pair<std::string, E>>;

/// The allowed values of a number: a lower bound and an optional upper
/// bound, each included or not.
struct NumberRange {
  double low;
  bool lowIncluded;
  std::optional<double> high;
  bool highIncluded = false;

  /// (low, inf)
  static NumberRange above(double low) { return {low, false, std::nullopt}; }
  /// [low, inf)
  static NumberRange atLeast(double low) { return {low, true, std::nullopt}; }
  /// [low, high)
  static NumberRange halfOpen(double low, double high) {
    return {low, true, high, false};
  }

  bool contains(double d) const {
    bool aboveLow = lowIncluded ? d >= low : d > low;
    bool belowHigh = !high || (highIncluded ? d <= *high : d < *high);
    return aboveLow && belowHigh;
  }

  /// "> 0", ">= 0" or "in [0, 1)".
  std::string describe() const {
    std::ostringstream os;
    if (!high)
      os << (lowIncluded ? ">= " : "> ") << low;
    else
      os << "in " << (lowIncluded ? '[' : '(') << low << ", " << *high
         << (highIncluded ? ']' : ')');
    return os.str();
  }
};

class ValueReader {
public:
  explicit ValueReader(Diagnostics &diags) : diags(diags) {}

  /// An integral number in [min, kMaxInteger]; 8.0 counts as integral.
  std::optional<int64_t> integer(const std::string &ptr, const json &v,
                                 int64_t min) {
    if (v.is_number_float()) {
      double f = v.get<double>();
      if (f != std::floor(f))
        return typeError(ptr, "an integer", v);
      if (f < static_cast<double>(min))
        return rangeError(ptr, ">= " + std::to_string(min), v);
      if (f > static_cast<double>(kMaxInteger))
        return rangeError(ptr, "<= " + std::to_string(kMaxInteger), v);
      return static_cast<int64_t>(f);
    }
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(kMaxInteger))
        return rangeError(ptr, "<= " + std::to_string(kMaxInteger), v);
    } else if (!v.is_number_integer()) {
      return typeError(ptr, "an integer", v);
    }
    int64_t i = v.get<int64_t>();
    if (i < min)
      return rangeError(ptr, ">= " + std::to_string(min), v);
    if (i > kMaxInteger)
      return rangeError(ptr, "<= " + std::to_string(kMaxInteger), v);
    return i;
  }

  /// A number inside `range`.
  std::optional<double> number(const std::string &ptr, const json &v,
                               const NumberRange &range) {
    if (!v.is_number())
      return typeError(ptr, "a number", v);
    double d = v.get<double>();
    if (!range.contains(d))
      return rangeError(ptr, range.describe(), v);
    return d;
  }

  std::optional<bool> boolean(const std::string &ptr, const json &v) {
    if (!v.is_boolean())
      return typeError(ptr, "a boolean (true or false)", v);
    return v.get<bool>();
  }

  std::optional<std::string> string(const std::string &ptr, const json &v) {
    if (!v.is_string())
      return typeError(ptr, "a string", v);
    return v.get<std::string>();
  }

  template <typename E>
  std::optional<E> enumeration(const std::string &ptr, const json &v,
                               const EnumTable<E> &table) {
    std::optional<std::string> s = string(ptr, v);
    if (!s)
      return std::nullopt;
    std::vector<std::string> names;
    for (const auto &[name, value] : table) {
      if (name == *s)
        return value;
      names.push_back(name);
    }
    std::string reason =
        "must be one of " + joinQuoted(names, "\"") + ", got " + v.dump();
    if (std::optional<std::string> guess = closestName(*s, names))
      reason += " (did you mean \"" + *guess + "\"?)";
    diags.atValue(ptr, reason);
    return std::nullopt;
  }

  Diagnostics &diagnostics() { return diags; }

private:
  std::nullopt_t typeError(const std::string &ptr, const std::string &what,
                           const json &v) {
    diags.atValue(ptr, "expected " + what + ", got " + describe(v));
    return std::nullopt;
  }
  std::nullopt_t rangeError(const std::string &ptr, const std::string &bound,
                            const json &v) {
    diags.atValue(ptr, "must be " + bound + ", got " + v.dump());
    return std::nullopt;
  }

  Diagnostics &diags;
};

/// Reads the members of one JSON object.
class ObjectReader {
public:
  /// Reads the object at `pointer`; `valid()` is false (and the error
  /// reported) when `value` is not an object.
  ObjectReader(ValueReader &reader, const json &value, std::string pointer)
      : reader(reader), object(value), pointer(std::move(pointer)) {
    if (!object.is_object())
      reader.diagnostics().atValue(this->pointer, "expected an object, got " +
                                                      describe(object));
  }

  bool valid() const { return object.is_object(); }
  std::string pathOf(const std::string &key) const {
    return pointer + "/" + escapePointerToken(key);
  }

  /// Reports every member whose key is not in `known`.
  void checkKnownKeys(std::initializer_list<const char *> known) {
    std::vector<std::string> names(known.begin(), known.end());
    for (const auto &[key, value] : object.items()) {
      if (std::find(names.begin(), names.end(), key) != names.end())
        continue;
      std::string reason = "unknown key '" + key + "'";
      if (std::optional<std::string> guess = closestName(key, names))
        reason += " (did you mean '" + *guess + "'?)";
      else
        reason += " (known keys: " + joinQuoted(names, "") + ")";
      reader.diagnostics().atKey(pathOf(key), reason);
    }
  }

  const json *find(const std::string &key) const {
    auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }
  bool has(const std::string &key) const { return find(key) != nullptr; }

  /// Reports that `key` is missing; `why` explains a conditional
  /// requirement.
  void missing(const std::string &key, const std::string &why = "") {
    Diagnostics &d = reader.diagnostics();
    std::string reason = "missing required key '" + key + "'";
    if (!why.empty())
      reason += " (" + why + ")";
    // The member does not exist: point at the object that should hold it.
    d.atValue(pathOf(key), reason);
  }

  /// Reads member `key` with `readValue(pointer, value)` into `out`; a
  /// missing member keeps `out` (its default) unless it is required. Returns
  /// whether `out` holds a usable value (read or default).
  template <typename T, typename Read>
  bool read(const std::string &key, T &out, bool required, Read readValue) {
    const json *v = find(key);
    if (!v) {
      if (required)
        missing(key);
      return !required;
    }
    std::optional<T> value = readValue(pathOf(key), *v);
    if (value)
      out = *value;
    return value.has_value();
  }

  bool integer(const std::string &key, int64_t &out, int64_t min,
               bool required = false) {
    return read(key, out, required, [&](const std::string &p, const json &v) {
      return reader.integer(p, v, min);
    });
  }
  bool number(const std::string &key, double &out, const NumberRange &range) {
    return read(key, out, false, [&](const std::string &p, const json &v) {
      return reader.number(p, v, range);
    });
  }
  bool positive(const std::string &key, double &out) {
    return number(key, out, NumberRange::above(0));
  }
  bool boolean(const std::string &key, bool &out) {
    return read(key, out, false, [&](const std::string &p, const json &v) {
      return reader.boolean(p, v);
    });
  }
  bool string(const std::string &key, std::string &out, bool required) {
    return read(key, out, required, [&](const std::string &p, const json &v) {
      return reader.string(p, v);
    });
  }
  template <typename E>
  bool enumeration(const std::string &key, E &out, const EnumTable<E> &table,
                   bool required = false) {
    return read(key, out, required, [&](const std::string &p, const json &v) {
      return reader.enumeration(p, v, table);
    });
  }

private:
  ValueReader &reader;
  const json &object;
  std::string pointer;
};

//===----------------------------------------------------------------------===//
// The model
//===----------------------------------------------------------------------===//

const EnumTable<MixingKind> kMixingKinds = {
    {"linear", MixingKind::Linear},      {"fourier", MixingKind::Fourier},
    {"hartley", MixingKind::Hartley},    {"circulant", MixingKind::Circulant},
    {"toeplitz", MixingKind::Toeplitz},  {"identity", MixingKind::Identity},
    {"attention", MixingKind::Attention}};
const EnumTable<RoutingKind> kRoutingKinds = {
    {"experts_choose", RoutingKind::ExpertsChoose},
    {"tokens_choose", RoutingKind::TokensChoose},
    {"sigmoid_topk", RoutingKind::SigmoidTopK}};
const EnumTable<NormPlacement> kNormPlacements = {{"post", NormPlacement::Post},
                                                  {"pre", NormPlacement::Pre}};
const EnumTable<BiasInit> kBiasInits = {{"zeros", BiasInit::Zeros},
                                        {"normal", BiasInit::Normal}};
const EnumTable<GeluKind> kActivations = {{"gelu", GeluKind::Tanh},
                                          {"gelu_erf", GeluKind::Erf}};
const EnumTable<SentencePooling> kPoolings = {{"cls", SentencePooling::Cls},
                                              {"mean", SentencePooling::Mean}};
const EnumTable<LayerLayout> kLayouts = {{"BOTTOM", LayerLayout::Bottom},
                                         {"MIDDLE", LayerLayout::Middle},
                                         {"MIXED", LayerLayout::Mixed},
                                         {"TOP", LayerLayout::Top}};
const EnumTable<std::string> kDtypes = {{"float32", "float32"}};
const EnumTable<bool> kRouterDtypes = {{"float32", false}, {"bfloat16", true}};

const char *routingName(RoutingKind kind) {
  for (const auto &[name, value] : kRoutingKinds)
    if (value == kind)
      return name.c_str();
  return "";
}

bool isSpectral(MixingKind kind) {
  return kind == MixingKind::Fourier || kind == MixingKind::Hartley ||
         kind == MixingKind::Circulant || kind == MixingKind::Toeplitz;
}

/// A layer placement as written: a list of indices or a layout.
struct Placement {
  std::string pointer;
  bool present = false;
  bool isLayout = false;
  LayerLayout layout = LayerLayout::Bottom;
  int64_t count = 0;
  std::vector<int64_t> indices;
};

/// Reads and validates one model.
class ModelReader {
public:
  ModelReader(const json &root, const std::string &fileName,
              const JsonLocator &locator)
      : root(root), diags(fileName, locator), values(diags) {
    for (const JsonLocator::DuplicateKey &dup : locator.duplicateKeys())
      diags.at(dup.location, dup.pointer, "duplicate key '" + dup.key + "'");
  }

  Expected<ModelConfig> run() {
    readRoot();
    if (diags.empty())
      checkAcrossObjects();
    if (!diags.empty())
      return diags.status();
    return std::move(config);
  }

private:
  void readRoot();
  void readEmbeddings(const json &v, const std::string &ptr);
  void readMixing(const json &v, const std::string &ptr);
  void readAttention(const json &v, const std::string &ptr);
  void readMoe(const json &v, const std::string &ptr);
  void readRouting(const json &v, const std::string &ptr);
  void readHeads(const json &v, const std::string &ptr);
  void readTraining(const json &v, const std::string &ptr);
  void readPlacement(const json &v, const std::string &ptr, Placement &out);

  void checkAcrossObjects();
  std::vector<bool> resolvePlacement(const Placement &p);

  /// Reads the object member `key` of `parent` with `read` when present.
  void readObject(ObjectReader &parent, const std::string &key, bool required,
                  void (ModelReader::*read)(const json &,
                                            const std::string &)) {
    if (const json *v = parent.find(key))
      (this->*read)(*v, parent.pathOf(key));
    else if (required)
      parent.missing(key);
  }

  const json &root;
  Diagnostics diags;
  ValueReader values;
  ModelConfig config;

  // What the text says, beyond what `config` records, for the second phase.
  bool hasDff = false, hasDEmb = false, hasAttention = false, hasMoe = false;
  bool hasHeadDim = false;
  MixingKind kind = MixingKind::Linear;
  bool useFft = false;
  Placement attentionLayers, moeLayers;
};

void ModelReader::readRoot() {
  ObjectReader obj(values, root, "");
  if (!obj.valid())
    return;
  obj.checkKnownKeys({"$schema", "name", "dtype", "embeddings", "d_model",
                      "num_layers", "d_ff", "layer_norm_epsilon", "norm",
                      "bias_init", "activation", "mixing", "attention",
                      "moe_layers", "moe", "heads", "training"});
  std::string schema;
  obj.string("$schema", schema, false);
  if (obj.string("name", config.name, true)) {
    if (config.name.empty())
      diags.atValue("/name", "must not be empty");
    else if (std::any_of(config.name.begin(), config.name.end(),
                         [](unsigned char c) { return c < 0x20 || c == 0x7F; }))
      diags.atValue("/name", "must not contain control characters");
  }
  obj.enumeration("dtype", config.dtype, kDtypes);
  readObject(obj, "embeddings", true, &ModelReader::readEmbeddings);
  obj.integer("d_model", config.dModel, 1, true);
  int64_t numLayers = 0;
  if (obj.integer("num_layers", numLayers, 1, true)) {
    if (numLayers > kMaxLayers)
      diags.atValue("/num_layers", "must be <= " + std::to_string(kMaxLayers) +
                                       ", got " + std::to_string(numLayers));
    else
      config.layers.resize(numLayers);
  }
  hasDff = obj.has("d_ff");
  obj.integer("d_ff", config.dFf, 1);
  obj.positive("layer_norm_epsilon", config.layerNormEpsilon);
  obj.enumeration("norm", config.norm, kNormPlacements);
  obj.enumeration("bias_init", config.biasInit, kBiasInits);
  obj.enumeration("activation", config.activation, kActivations);
  readObject(obj, "mixing", true, &ModelReader::readMixing);
  hasAttention = obj.has("attention");
  readObject(obj, "attention", false, &ModelReader::readAttention);
  if (const json *v = obj.find("moe_layers"))
    readPlacement(*v, "/moe_layers", moeLayers);
  hasMoe = obj.has("moe");
  readObject(obj, "moe", false, &ModelReader::readMoe);
  readObject(obj, "heads", false, &ModelReader::readHeads);
  readObject(obj, "training", false, &ModelReader::readTraining);
}

void ModelReader::readEmbeddings(const json &v, const std::string &ptr) {
  ObjectReader obj(values, v, ptr);
  if (!obj.valid())
    return;
  obj.checkKnownKeys({"vocab_size", "type_vocab_size", "d_emb",
                      "max_seq_length", "pad_id", "hidden_mapping_in"});
  EmbeddingConfig &e = config.embeddings;
  obj.integer("vocab_size", e.vocabSize, 1, true);
  obj.integer("type_vocab_size", e.typeVocabSize, 1);
  hasDEmb = obj.has("d_emb");
  obj.integer("d_emb", e.dEmb, 1);
  obj.integer("max_seq_length", e.maxSeqLength, 1, true);
  int64_t padId = 0;
  if (obj.integer("pad_id", padId, 0))
    e.padId = static_cast<int32_t>(padId);
  obj.boolean("hidden_mapping_in", e.hiddenMappingIn);
}

void ModelReader::readMixing(const json &v, const std::string &ptr) {
  ObjectReader obj(values, v, ptr);
  if (!obj.valid())
    return;
  obj.checkKnownKeys({"kind", "use_fft", "attention_layers"});
  bool kindOk = obj.enumeration("kind", kind, kMixingKinds, true);
  bool fftOk = obj.boolean("use_fft", useFft);
  if (const json *p = obj.find("attention_layers")) {
    readPlacement(*p, obj.pathOf("attention_layers"), attentionLayers);
    if (kindOk && kind == MixingKind::Attention)
      diags.atKey(obj.pathOf("attention_layers"),
                  "not allowed when kind is \"attention\" (every layer "
                  "attends)");
  }
  if (kindOk && fftOk && useFft && !isSpectral(kind))
    diags.atValue(obj.pathOf("use_fft"),
                  "only applies to fourier, hartley, circulant and toeplitz "
                  "mixing, not " +
                      obj.find("kind")->dump());
}

void ModelReader::readAttention(const json &v, const std::string &ptr) {
  ObjectReader obj(values, v, ptr);
  if (!obj.valid())
    return;
  obj.checkKnownKeys({"num_heads", "head_dim", "causal"});
  AttentionConfig &a = config.attention;
  obj.integer("num_heads", a.numHeads, 1, true);
  hasHeadDim = obj.has("head_dim");
  obj.integer("head_dim", a.headDim, 1);
  obj.boolean("causal", a.causal);
}

void ModelReader::readMoe(const json &v, const std::string &ptr) {
  ObjectReader obj(values, v, ptr);
  if (!obj.valid())
    return;
  obj.checkKnownKeys({"num_experts", "expert_d_ff", "routing",
                      "train_capacity_factor", "eval_capacity_factor",
                      "min_expert_capacity", "max_group_size", "router_dtype",
                      "init_scale"});
  MoeConfig &m = config.moe;
  obj.integer("num_experts", m.numExperts, 1, true);
  obj.integer("expert_d_ff", m.expertDff, 1, true);
  obj.positive("train_capacity_factor", m.trainCapacityFactor);
  obj.positive("eval_capacity_factor", m.evalCapacityFactor);
  obj.integer("min_expert_capacity", m.minExpertCapacity, 1);
  obj.integer("max_group_size", m.maxGroupSize, 1);
  obj.enumeration("router_dtype", m.routerBf16, kRouterDtypes);
  obj.positive("init_scale", m.initScale);
  readObject(obj, "routing", false, &ModelReader::readRouting);
  if (m.routing != RoutingKind::SigmoidTopK) {
    if (obj.has("init_scale"))
      diags.atKey(obj.pathOf("init_scale"),
                  "only applies to sigmoid_topk routing (the sigma-MoE keys, "
                  "values and expert_sel)");
    return;
  }
  for (const char *key : {"train_capacity_factor", "eval_capacity_factor",
                          "min_expert_capacity", "max_group_size"})
    if (obj.has(key))
      diags.atKey(obj.pathOf(key), "not allowed with sigmoid_topk routing "
                                   "(dropless: no groups, no capacity)");
}

void ModelReader::readRouting(const json &v, const std::string &ptr) {
  ObjectReader obj(values, v, ptr);
  if (!obj.valid())
    return;
  obj.checkKnownKeys({"type", "k", "batch_prioritized"});
  MoeConfig &m = config.moe;
  bool typeOk = obj.enumeration("type", m.routing, kRoutingKinds, true);
  obj.integer("k", m.k, 1);
  obj.boolean("batch_prioritized", m.batchPrioritized);
  if (!typeOk)
    return;
  auto onlyWith = [&](const char *key, bool allowed) {
    if (obj.has(key) && !allowed)
      diags.atKey(obj.pathOf(key), std::string("not allowed with ") +
                                       routingName(m.routing) + " routing");
  };
  onlyWith("k", m.routing != RoutingKind::ExpertsChoose);
  onlyWith("batch_prioritized", m.routing == RoutingKind::TokensChoose);
}

void ModelReader::readHeads(const json &v, const std::string &ptr) {
  ObjectReader obj(values, v, ptr);
  if (!obj.valid())
    return;
  obj.checkKnownKeys({"pooler", "mlm", "nsp", "classification", "causal_lm",
                      "sentence_embedding"});
  HeadsConfig &h = config.heads;
  bool poolerOk = obj.boolean("pooler", h.pooler);
  bool nspOk = obj.boolean("nsp", h.nsp);
  obj.boolean("mlm", h.mlm);
  obj.boolean("causal_lm", h.causalLm);
  bool classificationOk = false;
  if (const json *c = obj.find("classification")) {
    ObjectReader cls(values, *c, obj.pathOf("classification"));
    if (cls.valid()) {
      cls.checkKnownKeys({"num_classes"});
      classificationOk =
          cls.integer("num_classes", h.classificationClasses, 1, true);
    }
  }
  if (const json *e = obj.find("sentence_embedding")) {
    ObjectReader emb(values, *e, obj.pathOf("sentence_embedding"));
    if (emb.valid()) {
      emb.checkKnownKeys({"pooling", "normalize"});
      SentencePooling pooling = SentencePooling::Mean;
      if (emb.enumeration("pooling", pooling, kPoolings, true))
        h.sentencePooling = pooling;
      emb.boolean("normalize", h.sentenceNormalize);
    }
  }
  if (nspOk && h.nsp && poolerOk && !h.pooler)
    diags.atValue(obj.pathOf("nsp"), "requires \"pooler\": true");
  if (classificationOk && poolerOk && !h.pooler)
    diags.atValue(obj.pathOf("classification"), "requires \"pooler\": true");
  if (classificationOk && nspOk && h.nsp)
    diags.atValue(obj.pathOf("classification"),
                  "cannot be combined with \"nsp\": true (both own the "
                  "classification parameters)");
}

void ModelReader::readTraining(const json &v, const std::string &ptr) {
  ObjectReader obj(values, v, ptr);
  if (!obj.valid())
    return;
  obj.checkKnownKeys(
      {"learning_rate", "warmup_steps", "total_steps", "b1", "b2", "eps",
       "weight_decay", "clip_grad_norm", "dropout_rate",
       "attention_dropout_rate", "attention_output_dropout_rate",
       "moe_output_dropout_rate", "expert_dropout_rate", "jitter_noise",
       "gradient_accumulation_steps", "router_z_loss_factor",
       "auxiliary_loss_factor", "entropy_regularization_factor",
       "sigma_moe_expert_dropout"});
  TrainingConfig &t = config.training;
  // Moment decays and noise rates below 1: the bias corrections divide by
  // 1 - b^t, dropout scales by 1 / (1 - rate), jitter keeps the scale
  // positive.
  const NumberRange belowOne = NumberRange::halfOpen(0, 1);
  obj.number("learning_rate", t.learningRate, NumberRange::above(0));
  bool warmupOk = obj.integer("warmup_steps", t.warmupSteps, 0);
  bool totalOk = obj.integer("total_steps", t.totalSteps, 1);
  obj.number("b1", t.b1, belowOne);
  obj.number("b2", t.b2, belowOne);
  obj.number("eps", t.eps, NumberRange::above(0));
  obj.number("weight_decay", t.weightDecay, NumberRange::atLeast(0));
  obj.number("clip_grad_norm", t.clipGradNorm, NumberRange::atLeast(0));
  obj.number("dropout_rate", t.dropoutRate, belowOne);
  obj.number("attention_dropout_rate", t.attentionDropoutRate, belowOne);
  obj.number("attention_output_dropout_rate", t.attentionOutputDropoutRate,
             belowOne);
  obj.number("moe_output_dropout_rate", t.moeOutputDropoutRate, belowOne);
  obj.number("expert_dropout_rate", t.expertDropoutRate, belowOne);
  obj.number("jitter_noise", t.jitterNoise, belowOne);
  obj.number("router_z_loss_factor", t.routerZLossFactor,
             NumberRange::atLeast(0));
  obj.number("auxiliary_loss_factor", t.auxiliaryLossFactor,
             NumberRange::atLeast(0));
  obj.number("entropy_regularization_factor", t.entropyRegularizationFactor,
             NumberRange::atLeast(0));
  obj.number("sigma_moe_expert_dropout", t.sigmaMoeExpertDropout, belowOne);
  obj.integer("gradient_accumulation_steps", t.gradientAccumulationSteps, 1);
  // The linear decay needs at least one step after the warm-up.
  if (warmupOk && totalOk && t.totalSteps <= t.warmupSteps) {
    if (obj.has("total_steps"))
      diags.atValue(obj.pathOf("total_steps"),
                    "must be greater than warmup_steps (" +
                        std::to_string(t.warmupSteps) + "), got " +
                        std::to_string(t.totalSteps));
    else
      diags.atValue(obj.pathOf("warmup_steps"),
                    "must be less than total_steps (" +
                        std::to_string(t.totalSteps) + "), got " +
                        std::to_string(t.warmupSteps));
  }
}

void ModelReader::readPlacement(const json &v, const std::string &ptr,
                                Placement &out) {
  out.pointer = ptr;
  out.present = true;
  if (v.is_array()) {
    std::set<int64_t> seen;
    for (size_t i = 0; i < v.size(); ++i) {
      std::string elementPtr = ptr + "/" + std::to_string(i);
      std::optional<int64_t> index = values.integer(elementPtr, v[i], 0);
      if (!index)
        continue;
      if (!seen.insert(*index).second)
        diags.atValue(elementPtr,
                      "duplicate layer index " + std::to_string(*index));
      out.indices.push_back(*index);
    }
    return;
  }
  if (!v.is_object()) {
    diags.atValue(ptr, "expected a list of layer indices or an object "
                       "{\"layout\": ..., \"count\": ...}, got " +
                           describe(v));
    return;
  }
  out.isLayout = true;
  ObjectReader obj(values, v, ptr);
  obj.checkKnownKeys({"layout", "count"});
  obj.enumeration("layout", out.layout, kLayouts, true);
  obj.integer("count", out.count, 0, true);
}

std::vector<bool> ModelReader::resolvePlacement(const Placement &p) {
  int64_t numLayers = config.numLayers();
  std::vector<bool> selected(numLayers, false);
  if (!p.present)
    return selected;
  if (p.isLayout) {
    if (p.count > numLayers) {
      diags.atValue(p.pointer + "/count", "must be between 0 and num_layers (" +
                                              std::to_string(numLayers) +
                                              "), got " +
                                              std::to_string(p.count));
      return selected;
    }
    for (int64_t l = 0; l < numLayers; ++l)
      selected[l] = isLayoutLayer(p.layout, p.count, l, numLayers);
    return selected;
  }
  for (size_t i = 0; i < p.indices.size(); ++i) {
    int64_t index = p.indices[i];
    if (index >= numLayers)
      diags.atValue(p.pointer + "/" + std::to_string(i),
                    "layer index must be between 0 and num_layers - 1 (" +
                        std::to_string(numLayers - 1) + "), got " +
                        std::to_string(index));
    else
      selected[index] = true;
  }
  return selected;
}

void ModelReader::checkAcrossObjects() {
  EmbeddingConfig &e = config.embeddings;
  if (!hasDEmb)
    e.dEmb = config.dModel;
  if (!e.hiddenMappingIn && e.dEmb != config.dModel)
    diags.atValue("/embeddings/hidden_mapping_in",
                  "false needs d_emb equal to d_model (" +
                      std::to_string(config.dModel) + "), got d_emb " +
                      std::to_string(e.dEmb));
  if (e.padId >= e.vocabSize)
    diags.atValue("/embeddings/pad_id",
                  "must be between 0 and vocab_size - 1 (" +
                      std::to_string(e.vocabSize - 1) + "), got " +
                      std::to_string(e.padId));

  AttentionConfig &a = config.attention;
  if (hasAttention && !hasHeadDim) {
    if (config.dModel % a.numHeads != 0)
      diags.atValue("/attention/num_heads",
                    "must divide d_model (" + std::to_string(config.dModel) +
                        ") when head_dim is absent, got " +
                        std::to_string(a.numHeads));
    else
      a.headDim = config.dModel / a.numHeads;
  }

  MoeConfig &m = config.moe;
  if (hasMoe && m.routing != RoutingKind::ExpertsChoose && m.k > m.numExperts)
    diags.atValue("/moe/routing/k", "must be between 1 and num_experts (" +
                                        std::to_string(m.numExperts) +
                                        "), got " + std::to_string(m.k));

  std::vector<bool> attends = resolvePlacement(attentionLayers);
  std::vector<bool> isMoe = resolvePlacement(moeLayers);
  for (int64_t l = 0; l < config.numLayers(); ++l) {
    LayerConfig &layer = config.layers[l];
    bool attention = kind == MixingKind::Attention || attends[l];
    layer.mixing = attention ? MixingKind::Attention : kind;
    layer.useFft = useFft && isSpectral(layer.mixing);
    layer.feedForward =
        isMoe[l] ? FeedForwardKind::Moe : FeedForwardKind::Dense;
  }

  // Each missing section is reported once, naming the first layer that
  // needs it.
  auto firstLayer = [&](const std::function<bool(const LayerConfig &)> &pred)
      -> std::optional<int64_t> {
    for (int64_t l = 0; l < config.numLayers(); ++l)
      if (pred(config.layers[l]))
        return l;
    return std::nullopt;
  };
  auto requireKey = [&](bool present, const char *key,
                        std::optional<int64_t> layer, const char *what) {
    if (!present && layer)
      diags.atValue(std::string("/") + key,
                    std::string("missing required key '") + key + "' (layer " +
                        std::to_string(*layer) + " " + what + ")");
  };
  requireKey(hasAttention, "attention", firstLayer([](const LayerConfig &l) {
               return l.mixing == MixingKind::Attention;
             }),
             "uses attention");
  requireKey(hasMoe, "moe", firstLayer([](const LayerConfig &l) {
               return l.feedForward == FeedForwardKind::Moe;
             }),
             "is an MoE layer");
  if (config.activation == GeluKind::Erf)
    if (std::optional<int64_t> layer = firstLayer([](const LayerConfig &l) {
          return l.feedForward == FeedForwardKind::Moe;
        }))
      diags.atValue("/activation",
                    "\"gelu_erf\" applies to dense feed-forward layers only, "
                    "but layer " +
                        std::to_string(*layer) +
                        " is an MoE layer (its experts compute the tanh GELU)");
  requireKey(hasDff, "d_ff", firstLayer([](const LayerConfig &l) {
               return l.feedForward == FeedForwardKind::Dense;
             }),
             "has a dense feed-forward");
}

/// SAX receiver that accepts every event and keeps the parse error. The
/// parser hands errors to it as values, so no exception is involved and the
/// library works in builds without exceptions.
class ParseErrorCapture : public json::json_sax_t {
public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t &) override { return true; }
  bool string(string_t &) override { return true; }
  bool binary(binary_t &) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t &) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string &,
                   const json::exception &ex) override {
    charsRead = position;
    id = ex.id;
    what = ex.what();
    return false;
  }

  /// Characters read when the error was found, the offending one included.
  std::size_t charsRead = 0;
  int id = 0;
  std::string what;
};

/// Id of nlohmann's "number overflow" error.
constexpr int kNumberOverflowId = 406;

/// Describes why `text` is not JSON.
Status syntaxError(const std::string &text, const std::string &fileName) {
  ParseErrorCapture capture;
  json::sax_parse(text, &capture);
  if (capture.id == kNumberOverflowId) {
    // The text is well formed up to the number, so the locator finds it.
    JsonLocator locator(text);
    if (!locator.numberOverflows().empty()) {
      const JsonLocator::NumberOverflow &o = locator.numberOverflows().front();
      return Status::error(fileName + ":" + std::to_string(o.location.line) +
                           ":" + std::to_string(o.location.column) + ": " +
                           displayPointer(o.pointer) + ": number " + o.literal +
                           " is out of range");
    }
  }
  // Keep what follows nlohmann's "parse error at line L, column C: ".
  std::string reason = capture.what;
  size_t column = reason.find(", column ");
  size_t colon =
      column == std::string::npos ? column : reason.find(": ", column);
  if (colon != std::string::npos)
    reason = reason.substr(colon + 2);
  SourceLocation loc =
      locateOffset(text, capture.charsRead == 0 ? 0 : capture.charsRead - 1);
  return Status::error(fileName + ":" + std::to_string(loc.line) + ":" +
                       std::to_string(loc.column) + ": " + reason);
}

} // namespace

Expected<ModelConfig> parseModelText(const std::string &text,
                                     const std::string &fileName) {
  // The parser would skip a leading byte order mark and stop at a NUL byte,
  // accepting text that is not JSON.
  if (text.rfind("\xEF\xBB\xBF", 0) == 0)
    return Status::error(fileName +
                         ":1:1: the file starts with a UTF-8 byte order "
                         "mark, which JSON does not allow; save it without");
  if (size_t nul = text.find('\0'); nul != std::string::npos) {
    SourceLocation loc = locateOffset(text, nul);
    return Status::error(fileName + ":" + std::to_string(loc.line) + ":" +
                         std::to_string(loc.column) +
                         ": a NUL byte, which JSON text cannot contain");
  }
  json root = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded())
    return syntaxError(text, fileName);
  JsonLocator locator(text);
  return ModelReader(root, fileName, locator).run();
}

Expected<ModelConfig> parseModelFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad())
    return Status::error(path + ": cannot read: " + std::strerror(errno));
  return parseModelText(contents.str(), path);
}

Status checkMesh(const std::string &path, const ModelConfig &config,
                 const MeshRequest &mesh) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  std::string text = contents.str();
  JsonLocator locator(text);
  Diagnostics diags(path, locator);
  bool hasMoe = std::any_of(config.layers.begin(), config.layers.end(),
                            [](const LayerConfig &l) {
                              return l.feedForward == FeedForwardKind::Moe;
                            });
  const MoeConfig &moe = config.moe;
  if (mesh.ep > 1 && !hasMoe) {
    diags.atKey("/moe_layers", "--ep " + std::to_string(mesh.ep) +
                                   " shards MoE experts, but model '" +
                                   config.name +
                                   "' has no MoE layer (it compiles with --ep "
                                   "1 and --dp for data parallelism)");
  } else if (hasMoe && moe.numExperts % mesh.ep != 0) {
    std::string valid;
    for (int64_t ep = 1; ep <= moe.numExperts; ++ep)
      if (moe.numExperts % ep == 0)
        valid += (valid.empty() ? "" : ", ") + std::to_string(ep);
    diags.atValue("/moe/num_experts", "the " + std::to_string(moe.numExperts) +
                                          " experts do not divide into --ep " +
                                          std::to_string(mesh.ep) +
                                          " shards (valid --ep: " + valid +
                                          ")");
  } else if (hasMoe && moe.routing != RoutingKind::SigmoidTopK) {
    int64_t seq = mesh.seq ? mesh.seq : config.embeddings.maxSeqLength;
    int64_t tokens = mesh.batch / (mesh.dp * mesh.ep) * seq;
    MoeGrouping g = computeMoeGrouping(moe, tokens, mesh.training);
    if (g.capacity > g.tokensPerGroup) {
      bool floor = moe.minExpertCapacity >= g.capacity;
      diags.atValue(floor ? "/moe/min_expert_capacity"
                          : (mesh.training ? "/moe/train_capacity_factor"
                                           : "/moe/eval_capacity_factor"),
                    "expert capacity " + std::to_string(g.capacity) +
                        " exceeds the " + std::to_string(g.tokensPerGroup) +
                        " tokens per group of each rank's " +
                        std::to_string(tokens) + " tokens (--batch " +
                        std::to_string(mesh.batch) + " over " +
                        std::to_string(mesh.dp * mesh.ep) +
                        " ranks); lower it or use a larger batch");
    }
  }
  return diags.empty() ? Status::success() : diags.status();
}

} // namespace mixer
