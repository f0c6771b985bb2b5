//===- FlaxCheckpoint.cpp - The original Sparse Mixer's checkpoints -------===//

#include "runtime/convert/FlaxCheckpoint.h"

#include "frontend/ModelParser.h"
#include "runtime/io/Msgpack.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/io/Zip.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>

namespace mixer::convert {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using io::MsgpackValue;

namespace {

//===----------------------------------------------------------------------===//
// Names
//===----------------------------------------------------------------------===//

/// How a parameter of the original's tree differs from mixer's.
enum class Role {
  Same,   ///< the same name and layout
  Router, ///< mixer's `router_weights_<l>/X` is
          ///< `router_weights_<l>/DenseGeneral_0/X`
  Expert, ///< the expert axis is second in the original, first in mixer
};

/// The parameters the original's models have, in mixer's spelling.
std::optional<Role> roleOf(const std::string &name) {
  static const std::regex same(
      "encoder/embedder/(word|position|type)/embedding|"
      "encoder/embedder/layer_norm/(scale|bias)|"
      "encoder/embedder/hidden_mapping_in/(kernel|bias)|"
      "encoder/(linear|circulant|toeplitz)_transform_[0-9]+/"
      "(hidden|input)_kernel|"
      "encoder/attention_[0-9]+/self/(query|key|value|out)/(kernel|bias)|"
      "encoder/feed_forward_[0-9]+/(intermediate|output)/(kernel|bias)|"
      "encoder/encoder_[0-9]+/(mixing|output)_layer_norm/(scale|bias)|"
      "encoder/pooler/(kernel|bias)|predictions_dense/(kernel|bias)|"
      "predictions_layer_norm/(scale|bias)|predictions_output/output_bias|"
      "classification/output_(kernel|bias)");
  static const std::regex router("encoder/router_weights_[0-9]+/(kernel|bias)");
  static const std::regex expert(
      "encoder/expert_[0-9]+/(intermediate|output)/(kernel|bias)");
  if (std::regex_match(name, same))
    return Role::Same;
  if (std::regex_match(name, router))
    return Role::Router;
  if (std::regex_match(name, expert))
    return Role::Expert;
  return std::nullopt;
}

/// The original's name of mixer's parameter `name` (whose role is `role`).
std::string originalName(const std::string &name, Role role) {
  if (role != Role::Router)
    return name;
  size_t slash = name.rfind('/');
  return name.substr(0, slash) + "/DenseGeneral_0" + name.substr(slash);
}

/// Mixer's name of the original's parameter `name`: the router's dense
/// layer drops its module name, every other name is kept.
std::string mixerName(const std::string &name) {
  static const std::regex router(
      "(encoder/router_weights_[0-9]+)/DenseGeneral_0/(kernel|bias)");
  return std::regex_replace(name, router, "$1/$2");
}

/// `t` with its first two axes exchanged (the expert axis moved between
/// first and second place; the same operation both ways).
io::HostTensor swapLeadingAxes(const io::HostTensor &t) {
  io::HostTensor out;
  out.name = t.name;
  out.dtype = t.dtype;
  out.shape = t.shape;
  std::swap(out.shape[0], out.shape[1]);
  out.data.resize(t.data.size());
  int64_t a = t.shape[0], b = t.shape[1];
  size_t inner = a * b ? t.data.size() / static_cast<size_t>(a * b) : 0;
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      std::memcpy(out.data.data() + (j * a + i) * inner,
                  t.data.data() + (i * b + j) * inner, inner);
  return out;
}

//===----------------------------------------------------------------------===//
// State dicts
//===----------------------------------------------------------------------===//

/// One ndarray leaf of a state dict.
struct Array {
  std::vector<int64_t> shape;
  std::string dtype; ///< numpy's name; bfloat16 also for raw 2-byte values
  const uint8_t *data = nullptr;
  size_t bytes = 0;
  std::vector<uint8_t> owned; ///< a chunked array's joined bytes
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  /// np.array([]): what the original leaves where another file holds the
  /// parameter.
  bool empty() const { return numel() == 0; }
};

/// numpy's dtype names as Flax writes them and their item sizes. A void
/// item of two bytes is a bfloat16 that numpy could not name (the original
/// reads it back as bfloat16).
int64_t itemSize(std::string &dtype) {
  if (dtype == "void16" || dtype == "V2")
    dtype = "bfloat16";
  static const std::map<std::string, int64_t> sizes = {
      {"float32", 4}, {"bfloat16", 2}, {"float64", 8}, {"float16", 2},
      {"int32", 4},   {"int64", 8},    {"uint32", 4},  {"uint8", 1},
      {"int8", 1},    {"bool", 1},     {"uint64", 8},  {"int16", 2}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

/// Decodes the payload of an ndarray extension: msgpack (shape, dtype name,
/// bytes). `where` names the leaf.
Expected<Array> decodeArray(const MsgpackValue &ext, const std::string &where) {
  Expected<MsgpackValue> parsed =
      io::parseMsgpack(where + " (ndarray payload)", ext.bytes, ext.size);
  if (!parsed.ok())
    return parsed.takeStatus();
  const MsgpackValue &v = *parsed;
  using Kind = MsgpackValue::Kind;
  auto corrupt = [&](const std::string &what) {
    return Status::error(where + ": corrupt ndarray (" + what + ")");
  };
  if (v.kind != Kind::Array || v.items.size() != 3)
    return corrupt("not a (shape, dtype, bytes) triple");
  const MsgpackValue &shape = v.items[0], &dtype = v.items[1],
                     &data = v.items[2];
  if (shape.kind != Kind::Array || shape.items.size() > 8)
    return corrupt("the shape is not a list of at most 8 sizes");
  if ((dtype.kind != Kind::Str && dtype.kind != Kind::Bin) ||
      (data.kind != Kind::Bin && data.kind != Kind::Str))
    return corrupt("the dtype name or the data is not a string");
  Array array;
  uint64_t numel = 1;
  for (const MsgpackValue &d : shape.items) {
    if (d.kind != Kind::Int || d.isUnsigned || d.integer < 0 ||
        d.integer > (int64_t(1) << 40))
      return corrupt("a size is not an integer in [0, 2^40]");
    array.shape.push_back(d.integer);
    numel = numel * static_cast<uint64_t>(d.integer);
    if (numel > (uint64_t(1) << 40))
      return corrupt("more than 2^40 elements");
  }
  array.dtype = std::string(dtype.text());
  int64_t size = itemSize(array.dtype);
  if (!size)
    return Status::error(where + ": dtype '" + array.dtype +
                         "' is not one mixer reads");
  if (data.size != numel * static_cast<uint64_t>(size))
    return corrupt(std::to_string(data.size) + " bytes of data, the shape " +
                   io::formatShape(array.shape) + " and dtype " + array.dtype +
                   " need " + std::to_string(numel * size));
  array.data = data.bytes;
  array.bytes = data.size;
  return array;
}

/// Joins the chunks of an array Flax split because of msgpack's 2 GiB limit
/// ({"__msgpack_chunked_array__": true, "shape": {...}, "chunks": {...}}).
Expected<Array> decodeChunked(const MsgpackValue &map,
                              const std::string &where) {
  const MsgpackValue *shape = map.find("shape");
  const MsgpackValue *chunks = map.find("chunks");
  using Kind = MsgpackValue::Kind;
  if (!shape || !chunks || shape->kind != Kind::Map ||
      chunks->kind != Kind::Map || map.entries.size() != 3)
    return Status::error(where + ": corrupt chunked array (it needs shape "
                                 "and chunks)");
  Array joined;
  uint64_t numel = 1;
  for (size_t i = 0; i < shape->entries.size(); ++i) {
    const MsgpackValue *d = shape->find(std::to_string(i));
    if (!d || d->kind != Kind::Int || d->integer < 0 ||
        d->integer > (int64_t(1) << 40))
      return Status::error(where + ": corrupt chunked array (size " +
                           std::to_string(i) + ")");
    joined.shape.push_back(d->integer);
    numel *= static_cast<uint64_t>(d->integer);
    if (numel > (uint64_t(1) << 40))
      return Status::error(where + ": corrupt chunked array (too large)");
  }
  for (size_t i = 0; i < chunks->entries.size(); ++i) {
    const MsgpackValue *c = chunks->find(std::to_string(i));
    if (!c || c->kind != Kind::Ext || c->extType != 1)
      return Status::error(where + ": corrupt chunked array (chunk " +
                           std::to_string(i) + ")");
    Expected<Array> chunk = decodeArray(*c, where);
    if (!chunk.ok())
      return chunk.takeStatus();
    if (i == 0)
      joined.dtype = chunk->dtype;
    else if (chunk->dtype != joined.dtype)
      return Status::error(where + ": chunks of different dtypes");
    joined.owned.insert(joined.owned.end(), chunk->data,
                        chunk->data + chunk->bytes);
  }
  std::string dtype = joined.dtype;
  if (joined.owned.size() != numel * static_cast<uint64_t>(itemSize(dtype)))
    return Status::error(where +
                         ": corrupt chunked array (the chunks do not "
                         "fill the shape " +
                         io::formatShape(joined.shape) + ")");
  joined.data = joined.owned.data();
  joined.bytes = joined.owned.size();
  return joined;
}

/// The parameters of one state dict, by their names in the original's tree
/// (keys joined with '/').
struct StateDict {
  std::string file;
  std::map<std::string, Array> params;
  std::optional<int64_t> step;
  bool optimizerState = false;
};

Status flatten(const MsgpackValue &node, const std::string &prefix,
               const std::string &file, std::map<std::string, Array> &out) {
  using Kind = MsgpackValue::Kind;
  for (const auto &[key, value] : node.entries) {
    if (key.kind != Kind::Str)
      return Status::error(file + ": byte " + std::to_string(key.offset) +
                           ": a key under '" + prefix + "' is not a string");
    std::string name = prefix.empty() ? std::string(key.text())
                                      : prefix + "/" + std::string(key.text());
    std::string where = file + ": " + name;
    if (value.kind == Kind::Map && value.find("__msgpack_chunked_array__")) {
      Expected<Array> array = decodeChunked(value, where);
      if (!array.ok())
        return array.takeStatus();
      out[name] = std::move(*array);
    } else if (value.kind == Kind::Map) {
      if (Status s = flatten(value, name, file, out); !s.ok())
        return s;
    } else if (value.kind == Kind::Ext && value.extType == 1) {
      Expected<Array> array = decodeArray(value, where);
      if (!array.ok())
        return array.takeStatus();
      out[name] = std::move(*array);
    } else {
      return Status::error(where + ": byte " + std::to_string(value.offset) +
                           ": not an ndarray or a subtree");
    }
  }
  return Status::success();
}

/// The training step of a state dict: an integer or a numpy scalar.
Expected<int64_t> readStep(const MsgpackValue &v, const std::string &where) {
  if (v.kind == MsgpackValue::Kind::Int && !v.isUnsigned)
    return v.integer;
  if (v.kind == MsgpackValue::Kind::Ext && (v.extType == 1 || v.extType == 3)) {
    Expected<Array> a = decodeArray(v, where);
    if (!a.ok())
      return a.takeStatus();
    if (a->numel() == 1 && (a->dtype == "int32" || a->dtype == "int64")) {
      int64_t step = 0;
      if (a->dtype == "int32") {
        int32_t s32;
        std::memcpy(&s32, a->data, 4);
        step = s32;
      } else {
        std::memcpy(&step, a->data, 8);
      }
      return step;
    }
  }
  return Status::error(where + ": not an integer step");
}

/// Parses a state dict: a train state ({"step", "params", "opt_state"}),
/// variables ({"params"}) or a bare parameter tree ({"encoder", ...}).
Expected<StateDict> readStateDict(const std::string &file,
                                  const std::vector<uint8_t> &bytes) {
  Expected<MsgpackValue> root =
      io::parseMsgpack(file, bytes.data(), bytes.size());
  if (!root.ok())
    return root.takeStatus();
  if (root->kind != MsgpackValue::Kind::Map)
    return Status::error(file + ": not a Flax state dict (the top level is "
                                "not a map)");
  StateDict dict;
  dict.file = file;
  const MsgpackValue *params = root->find("params");
  if (!params) {
    if (!root->find("encoder"))
      return Status::error(file + ": not a Flax state dict of the original's "
                                  "models (no 'params' and no 'encoder' key)");
    params = &*root;
  } else {
    for (const auto &[key, value] : root->entries) {
      std::string k(key.kind == MsgpackValue::Kind::Str ? key.text() : "");
      if (k == "params")
        continue;
      if (k == "opt_state") {
        dict.optimizerState = true;
        continue;
      }
      if (k == "step") {
        Expected<int64_t> step = readStep(value, file + ": step");
        if (!step.ok())
          return step.takeStatus();
        dict.step = *step;
        continue;
      }
      return Status::error(file + ": unknown key '" + k +
                           "' beside params (a train state holds step, "
                           "params and opt_state)");
    }
    if (params->kind != MsgpackValue::Kind::Map)
      return Status::error(file + ": params is not a map");
  }
  if (Status s = flatten(*params, "", file, dict.params); !s.ok())
    return s;
  return dict;
}

//===----------------------------------------------------------------------===//
// Files
//===----------------------------------------------------------------------===//

/// The files of one checkpoint: the replicated one, then the shards by
/// process index.
struct CheckpointFiles {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  std::optional<int64_t> step;
  int64_t shards = 0;
};

Expected<CheckpointFiles> readCheckpointFiles(const std::string &path) {
  std::error_code ec;
  bool directory = fs::is_directory(path, ec);
  std::string archive;
  std::vector<std::string> names;
  if (directory) {
    for (const auto &entry : fs::directory_iterator(path, ec))
      if (entry.is_regular_file(ec))
        names.push_back(entry.path().filename().string());
    if (ec)
      return Status::error(path +
                           ": cannot list the directory: " + ec.message());
  } else {
    Expected<std::string> bytes = io::readFile(path);
    if (!bytes.ok())
      return bytes.takeStatus();
    archive = std::move(*bytes);
    if (archive.rfind("PK\x03\x04", 0) != 0) {
      // One state dict.
      CheckpointFiles one;
      one.files.push_back(
          {path, std::vector<uint8_t>(archive.begin(), archive.end())});
      return one;
    }
    Status listed = io::detail::forEachZipMember(
        path, reinterpret_cast<const uint8_t *>(archive.data()), archive.size(),
        [&](const io::detail::ZipMember &m) {
          if (!m.name.empty() && m.name.back() != '/')
            names.push_back(m.name);
          return Status::success();
        });
    if (!listed.ok())
      return listed;
  }
  static const std::regex replicated("replicated_checkpoint_([0-9]+)");
  static const std::regex shard(
      "shard-([0-9]+)-of-([0-9]+)_checkpoint_([0-9]+)");
  auto base = [](const std::string &name) {
    return fs::path(name).filename().string();
  };
  // The newest step, as the original restores it.
  std::optional<int64_t> step;
  std::string replicatedName;
  std::smatch m;
  for (const std::string &name : names) {
    std::string b = base(name);
    if (std::regex_match(b, m, replicated)) {
      int64_t s = std::stoll(m[1].str().substr(0, 18));
      if (!step || s > *step) {
        step = s;
        replicatedName = name;
      }
    }
  }
  if (!step)
    return Status::error(path + ": no replicated_checkpoint_<step> file (the "
                                "original's checkpoints hold one)");
  std::map<int64_t, std::string> shardNames;
  int64_t count = -1;
  for (const std::string &name : names) {
    std::string b = base(name);
    if (!std::regex_match(b, m, shard) ||
        std::stoll(m[3].str().substr(0, 18)) != *step)
      continue;
    int64_t index = std::stoll(m[1].str().substr(0, 9));
    int64_t of = std::stoll(m[2].str().substr(0, 9));
    if (count >= 0 && of != count)
      return Status::error(
          path + ": shard files of step " + std::to_string(*step) +
          " disagree on the number "
          "of shards (" +
          std::to_string(count) + " and " + std::to_string(of) + ")");
    count = of;
    if (index >= of)
      return Status::error(path + ": " + name + ": shard index " +
                           std::to_string(index) + " is not below " +
                           std::to_string(of));
    shardNames[index] = name;
  }
  CheckpointFiles result;
  result.step = step;
  result.shards = std::max<int64_t>(count, 0);
  char buffer[64];
  for (int64_t i = 0; i < result.shards; ++i)
    if (!shardNames.count(i)) {
      std::snprintf(
          buffer, sizeof(buffer), "shard-%05lld-of-%05lld_checkpoint_%lld",
          static_cast<long long>(i), static_cast<long long>(result.shards),
          static_cast<long long>(*step));
      return Status::error(path + ": missing shard file " + buffer);
    }
  std::vector<std::string> wanted = {replicatedName};
  for (const auto &[index, name] : shardNames)
    wanted.push_back(name);
  result.files.resize(wanted.size());
  if (directory) {
    for (size_t i = 0; i < wanted.size(); ++i) {
      std::string file = (fs::path(path) / wanted[i]).string();
      Expected<std::string> bytes = io::readFile(file);
      if (!bytes.ok())
        return bytes.takeStatus();
      result.files[i] = {file,
                         std::vector<uint8_t>(bytes->begin(), bytes->end())};
    }
    return result;
  }
  Status read = io::detail::forEachZipMember(
      path, reinterpret_cast<const uint8_t *>(archive.data()), archive.size(),
      [&](const io::detail::ZipMember &member) {
        auto it = std::find(wanted.begin(), wanted.end(), member.name);
        if (it == wanted.end())
          return Status::success();
        auto &slot = result.files[it - wanted.begin()];
        slot.first = path + ":" + member.name;
        return member.read(member.size, slot.second);
      });
  if (!read.ok())
    return read;
  return result;
}

/// A parameter of the original's tree read into float32, with how it was
/// stored.
struct Parameter {
  io::HostTensor tensor; ///< the original's name and layout
  std::string file;
  bool bf16 = false;
  int64_t shards = 0; ///< shard files it was joined from (0: replicated)
};

/// Widens an array of float32 or bfloat16 values to float32.
Expected<io::HostTensor> toFloat32(const Array &a, const std::string &name,
                                   const std::string &file) {
  io::HostTensor t;
  t.name = name;
  t.dtype = io::DType::F32;
  t.shape = a.shape;
  t.data.resize(static_cast<size_t>(a.numel()) * 4);
  if (a.dtype == "float32") {
    std::memcpy(t.data.data(), a.data, a.bytes);
  } else if (a.dtype == "bfloat16") {
    float *out = t.as<float>();
    for (int64_t i = 0; i < a.numel(); ++i) {
      uint16_t half;
      std::memcpy(&half, a.data + 2 * i, 2);
      uint32_t bits = static_cast<uint32_t>(half) << 16;
      std::memcpy(out + i, &bits, 4);
    }
  } else {
    return Status::error(file + ": " + name + ": dtype " + a.dtype +
                         "; mixer imports float32 and bfloat16 parameters");
  }
  return t;
}

/// Joins the replicated checkpoint and the shard files into the original's
/// full parameter tree. A shard holds its host's experts as [L, A, J, ...]
/// (L local devices, J experts each): expert (p·L + l)·J + j of the full
/// [A, E, ...] tensor.
Expected<std::vector<Parameter>>
joinShards(const std::vector<StateDict> &dicts) {
  static const std::regex expert(
      "encoder/expert_[0-9]+/(intermediate|output)/(kernel|bias)");
  const StateDict &replicated = dicts[0];
  std::vector<Parameter> out;
  for (size_t s = 1; s < dicts.size(); ++s)
    for (const auto &[name, array] : dicts[s].params)
      if (!replicated.params.count(name))
        return Status::error(dicts[s].file + ": " + name +
                             ": not in the replicated checkpoint " +
                             replicated.file);
  for (const auto &[name, array] : replicated.params) {
    Parameter p;
    p.file = replicated.file;
    if (!array.empty()) {
      for (size_t s = 1; s < dicts.size(); ++s) {
        auto it = dicts[s].params.find(name);
        if (it != dicts[s].params.end() && !it->second.empty())
          return Status::error(dicts[s].file + ": " + name +
                               ": also stored in the replicated checkpoint");
      }
      Expected<io::HostTensor> t = toFloat32(array, name, replicated.file);
      if (!t.ok())
        return t.takeStatus();
      p.tensor = std::move(*t);
      p.bf16 = array.dtype == "bfloat16";
      out.push_back(std::move(p));
      continue;
    }
    if (dicts.size() == 1)
      return Status::error(replicated.file + ": " + name +
                           ": empty here and there are no shard files "
                           "(shard-<p>-of-<n>_checkpoint_<step>) to take it "
                           "from");
    if (!std::regex_match(name, expert))
      return Status::error(replicated.file + ": " + name +
                           ": left to the shard files, but only expert "
                           "parameters are sharded");
    std::vector<const Array *> pieces;
    for (size_t s = 1; s < dicts.size(); ++s) {
      auto it = dicts[s].params.find(name);
      if (it == dicts[s].params.end() || it->second.empty())
        return Status::error(dicts[s].file + ": " + name +
                             ": missing (the replicated checkpoint leaves it "
                             "to the shard files)");
      const Array &a = it->second;
      if (a.shape.size() < 3)
        return Status::error(
            dicts[s].file + ": " + name + ": is " + io::formatShape(a.shape) +
            "; a shard holds [devices, ..., experts per device, ...]");
      if (!pieces.empty() &&
          (a.shape != pieces[0]->shape || a.dtype != pieces[0]->dtype))
        return Status::error(
            dicts[s].file + ": " + name + ": is " + io::formatShape(a.shape) +
            " " + a.dtype + ", the first shard's " +
            io::formatShape(pieces[0]->shape) + " " + pieces[0]->dtype);
      pieces.push_back(&a);
    }
    const std::vector<int64_t> &ps = pieces[0]->shape;
    int64_t devices = ps[0], rows = ps[1], perDevice = ps[2];
    int64_t inner = 1;
    for (size_t i = 3; i < ps.size(); ++i)
      inner *= ps[i];
    int64_t experts = static_cast<int64_t>(pieces.size()) * devices * perDevice;
    io::HostTensor full;
    full.name = name;
    full.dtype = io::DType::F32;
    full.shape = {rows, experts};
    full.shape.insert(full.shape.end(), ps.begin() + 3, ps.end());
    full.data.resize(static_cast<size_t>(rows * experts * inner) * 4);
    float *dst = full.as<float>();
    for (size_t s = 0; s < pieces.size(); ++s) {
      Expected<io::HostTensor> piece =
          toFloat32(*pieces[s], name, dicts[s + 1].file);
      if (!piece.ok())
        return piece.takeStatus();
      const float *src = piece->as<float>();
      for (int64_t l = 0; l < devices; ++l)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < perDevice; ++j) {
            int64_t e = (static_cast<int64_t>(s) * devices + l) * perDevice + j;
            std::memcpy(dst + (r * experts + e) * inner,
                        src + ((l * rows + r) * perDevice + j) * inner,
                        static_cast<size_t>(inner) * 4);
          }
    }
    p.tensor = std::move(full);
    p.bf16 = pieces[0]->dtype == "bfloat16";
    p.shards = static_cast<int64_t>(pieces.size());
    out.push_back(std::move(p));
  }
  return out;
}

//===----------------------------------------------------------------------===//
// The model
//===----------------------------------------------------------------------===//

/// mixer's parameters of `c` (docs/parameters.md) with their shapes, in
/// mixer's order, restricted to what the original's models have.
std::vector<std::pair<std::string, std::vector<int64_t>>>
expectedParameters(const ModelConfig &c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> list;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    list.push_back({std::move(name), std::move(shape)});
  };
  auto norm = [&](const std::string &prefix, int64_t width) {
    add(prefix + "/scale", {width});
    add(prefix + "/bias", {width});
  };
  const EmbeddingConfig &e = c.embeddings;
  int64_t d = c.dModel, s = e.maxSeqLength, de = e.dEmb;
  add("encoder/embedder/word/embedding", {e.vocabSize, de});
  add("encoder/embedder/position/embedding", {1, s, de});
  add("encoder/embedder/type/embedding", {e.typeVocabSize, de});
  norm("encoder/embedder/layer_norm", de);
  if (e.hiddenMappingIn) {
    add("encoder/embedder/hidden_mapping_in/kernel", {de, d});
    add("encoder/embedder/hidden_mapping_in/bias", {d});
  }
  for (int64_t l = 0; l < c.numLayers(); ++l) {
    std::string n = std::to_string(l);
    const LayerConfig &layer = c.layers[l];
    auto mixing = [&](const char *kind, int64_t hidden, int64_t input) {
      add("encoder/" + std::string(kind) + "_transform_" + n + "/hidden_kernel",
          hidden < 0 ? std::vector<int64_t>{d, d}
                     : std::vector<int64_t>{hidden});
      add("encoder/" + std::string(kind) + "_transform_" + n + "/input_kernel",
          input < 0 ? std::vector<int64_t>{s, s} : std::vector<int64_t>{input});
    };
    if (layer.mixing == MixingKind::Linear)
      mixing("linear", -1, -1);
    else if (layer.mixing == MixingKind::Circulant)
      mixing("circulant", d, s);
    else if (layer.mixing == MixingKind::Toeplitz)
      mixing("toeplitz", 2 * d - 1, 2 * s - 1);
    else if (layer.mixing == MixingKind::Attention) {
      int64_t h = c.attention.numHeads, hd = c.attention.headDim;
      std::string a = "encoder/attention_" + n + "/self/";
      for (const char *p : {"query", "key", "value"}) {
        add(a + p + "/kernel", {d, h, hd});
        add(a + p + "/bias", {h, hd});
      }
      add(a + "out/kernel", {h, hd, d});
      add(a + "out/bias", {d});
    }
    if (layer.feedForward == FeedForwardKind::Dense) {
      std::string f = "encoder/feed_forward_" + n + "/";
      add(f + "intermediate/kernel", {d, c.dFf});
      add(f + "intermediate/bias", {c.dFf});
      add(f + "output/kernel", {c.dFf, d});
      add(f + "output/bias", {d});
    } else {
      int64_t x = c.moe.numExperts, fe = c.moe.expertDff;
      std::string f = "encoder/expert_" + n + "/";
      add(f + "intermediate/kernel", {x, d, fe});
      add(f + "intermediate/bias", {x, fe});
      add(f + "output/kernel", {x, fe, d});
      add(f + "output/bias", {x, d});
      add("encoder/router_weights_" + n + "/kernel", {d, x});
      add("encoder/router_weights_" + n + "/bias", {x});
    }
    norm("encoder/encoder_" + n + "/mixing_layer_norm", d);
    norm("encoder/encoder_" + n + "/output_layer_norm", d);
  }
  if (c.heads.pooler) {
    add("encoder/pooler/kernel", {d, d});
    add("encoder/pooler/bias", {d});
  }
  if (c.heads.mlm) {
    add("predictions_dense/kernel", {d, de});
    add("predictions_dense/bias", {de});
    norm("predictions_layer_norm", de);
    add("predictions_output/output_bias", {e.vocabSize});
  }
  int64_t classes = c.heads.nsp ? 2 : c.heads.classificationClasses;
  if (classes) {
    add("classification/output_kernel", {classes, d});
    add("classification/output_bias", {classes});
  }
  return list;
}

/// The original's configuration values that the checkpoint's shapes settle.
const std::set<std::string> kInferredKeys = {
    "vocab_size",  "type_vocab_size", "d_emb",     "d_model",
    "d_ff",        "max_seq_length",  "num_heads", "num_layers",
    "num_experts", "expert_d_ff"};
/// The original's training values and their counterparts in mixer's
/// `training` section.
const std::map<std::string, std::string> kTrainingKeys = {
    {"learning_rate", "learning_rate"},
    {"num_warmup_steps", "warmup_steps"},
    {"num_train_steps", "total_steps"},
    {"clipped_grad_norm", "clip_grad_norm"},
    {"dropout_rate", "dropout_rate"},
    {"mixing_dropout_rate", "attention_dropout_rate"},
    {"expert_dropout_rate", "expert_dropout_rate"},
    {"jitter_noise", "jitter_noise"},
    {"auxiliary_loss_factor", "auxiliary_loss_factor"},
    {"router_z_loss_factor", "router_z_loss_factor"}};
/// The original's configuration values that do not change the model
/// (bookkeeping, data, evaluation), read and ignored.
const std::set<std::string> kIgnoredKeys = {"mode",
                                            "save_checkpoints_steps",
                                            "checkpoints_to_keep",
                                            "eval_frequency",
                                            "train_batch_size",
                                            "eval_batch_size",
                                            "gradient_accum_steps",
                                            "init_checkpoint_dir",
                                            "seed",
                                            "trial",
                                            "max_num_eval_steps",
                                            "max_predictions_per_seq",
                                            "masking_rate",
                                            "mask_token_proportion",
                                            "random_token_proportion",
                                            "measure_step_speed",
                                            "dataset_name",
                                            "eval_proportion",
                                            "num_train_epochs",
                                            "warmup_proportion",
                                            "dtype"};
/// The original's configuration values the model description takes.
const std::set<std::string> kModelKeys = {"model_arch",
                                          "use_fft",
                                          "attention_layout",
                                          "num_attention_layers",
                                          "moe_layout",
                                          "num_moe_layers",
                                          "pad_id",
                                          "dispatch_algorithm",
                                          "train_capacity_factor",
                                          "eval_capacity_factor",
                                          "min_expert_capacity",
                                          "max_group_size",
                                          "num_selected_experts",
                                          "batch_prioritized_routing"};

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  return s;
}

/// Builds the model description from the checkpoint's parameters (mixer's
/// names and layouts) and the original's configuration values.
Expected<ojson> describeModel(const std::map<std::string, io::HostTensor> &p,
                              const json &config, const std::string &configPath,
                              const std::string &source,
                              const std::string &name) {
  std::string error;
  auto fail = [&](const std::string &text) {
    if (error.empty())
      error = text;
  };
  // A value the configuration gives or the original's default; the model
  // parser checks its type.
  auto valueOr = [&](const char *key, json fallback) {
    auto it = config.find(key);
    return it != config.end() ? *it : fallback;
  };
  auto cfgFail = [&](const std::string &text) {
    fail(configPath + ": " + text);
  };
  for (const auto &item : config.items())
    if (!kInferredKeys.count(item.key()) && !kModelKeys.count(item.key()) &&
        !kTrainingKeys.count(item.key()) && !kIgnoredKeys.count(item.key()))
      cfgFail("unknown configuration key '" + item.key() + "'");
  // A tensor that settles a size, checked for its rank first.
  auto dims = [&](const std::string &tensor,
                  size_t rank) -> std::optional<std::vector<int64_t>> {
    auto it = p.find(tensor);
    if (it == p.end()) {
      fail(source + ": missing tensor '" + tensor + "'");
      return std::nullopt;
    }
    if (it->second.shape.size() != rank) {
      fail(source + ": tensor '" + tensor + "' is " +
           io::formatShape(it->second.shape) + "; it should have " +
           std::to_string(rank) + " dimensions");
      return std::nullopt;
    }
    return it->second.shape;
  };
  auto has = [&](const std::string &prefix) {
    auto it = p.lower_bound(prefix);
    return it != p.end() && it->first.rfind(prefix, 0) == 0;
  };
  // An inferred size the configuration may repeat but not contradict.
  auto settle = [&](const char *key, int64_t value, const std::string &from) {
    if (auto it = config.find(key); it != config.end() && *it != value)
      cfgFail(std::string(key) + " is " + it->dump() +
              " but the checkpoint's " + from + " makes it " +
              std::to_string(value));
  };
  auto word = dims("encoder/embedder/word/embedding", 2);
  auto position = dims("encoder/embedder/position/embedding", 3);
  auto type = dims("encoder/embedder/type/embedding", 2);
  if (!error.empty())
    return Status::error(error);
  int64_t vocab = (*word)[0], dEmb = (*word)[1], seq = (*position)[1];
  bool mappingIn = p.count("encoder/embedder/hidden_mapping_in/kernel");
  int64_t dModel = dEmb;
  if (mappingIn)
    if (auto k = dims("encoder/embedder/hidden_mapping_in/kernel", 2))
      dModel = (*k)[1];
  settle("vocab_size", vocab, "encoder/embedder/word/embedding");
  settle("d_emb", dEmb, "encoder/embedder/word/embedding");
  settle("max_seq_length", seq, "encoder/embedder/position/embedding");
  settle("type_vocab_size", (*type)[0], "encoder/embedder/type/embedding");
  settle("d_model", dModel, "encoder/embedder/hidden_mapping_in/kernel");

  int64_t layers = 0;
  static const std::regex block("encoder/encoder_([0-9]+)/.*");
  std::smatch m;
  for (const auto &[tensor, value] : p)
    if (std::regex_match(tensor, m, block))
      layers =
          std::max<int64_t>(layers, std::stoll(m[1].str().substr(0, 6)) + 1);
  if (layers == 0)
    fail(source + ": no encoder block (encoder/encoder_<l>/...)");
  settle("num_layers", layers, "encoder/encoder_<l> blocks");
  std::set<int64_t> attention, moe;
  std::map<std::string, std::set<int64_t>> kinds; // mixing kind -> layers
  std::vector<int64_t> parameterless;
  for (int64_t l = 0; l < layers; ++l) {
    std::string n = std::to_string(l);
    if (has("encoder/attention_" + n + "/"))
      attention.insert(l);
    else if (has("encoder/linear_transform_" + n + "/"))
      kinds["linear"].insert(l);
    else if (has("encoder/circulant_transform_" + n + "/"))
      kinds["circulant"].insert(l);
    else if (has("encoder/toeplitz_transform_" + n + "/"))
      kinds["toeplitz"].insert(l);
    else
      parameterless.push_back(l);
    if (has("encoder/expert_" + n + "/"))
      moe.insert(l);
  }
  std::string arch;
  if (auto it = config.find("model_arch"); it != config.end()) {
    arch = it->is_string() ? upper(it->get<std::string>()) : "";
    static const std::map<std::string, std::string> archKinds = {
        {"BERT", "attention"}, {"F_NET", "fourier"},   {"H_NET", "hartley"},
        {"LINEAR", "linear"},  {"C_NET", "circulant"}, {"T_NET", "toeplitz"}};
    if (!archKinds.count(arch))
      cfgFail("model_arch " + it->dump() +
              " is not one of BERT, F_NET, H_NET, LINEAR, C_NET, T_NET");
    else
      arch = archKinds.at(arch);
  }
  std::string kind;
  if (kinds.size() > 1)
    fail(source + ": the mixing layers mix kinds (" + kinds.begin()->first +
         " and " + std::next(kinds.begin())->first + ")");
  else if (kinds.size() == 1) {
    kind = kinds.begin()->first;
    if (!parameterless.empty())
      fail(source + ": layer " + std::to_string(parameterless[0]) +
           " has neither attention nor " + kind + " mixing parameters");
  } else if (!parameterless.empty()) {
    if (arch != "fourier" && arch != "hartley")
      fail(source + ": layer " + std::to_string(parameterless[0]) +
           " has no mixing parameters (Fourier or Hartley mixing): give "
           "model_arch F_NET or H_NET with --config");
    kind = arch;
  } else {
    kind = "attention";
  }
  if (!arch.empty() && error.empty() && arch != kind &&
      !(arch == "attention" && attention.size() == size_t(layers)))
    cfgFail("model_arch " + config["model_arch"].dump() +
            " contradicts the checkpoint's " + kind + " mixing layers");

  // A placement: a layout the original's configuration names when one
  // selects exactly these layers, else the list.
  auto placement = [&](const std::set<int64_t> &chosen, const char *layoutKey,
                       const char *countKey, const char *defaultLayout,
                       int64_t defaultCount) -> ojson {
    static const std::vector<std::pair<std::string, LayerLayout>> layouts = {
        {"TOP", LayerLayout::Top},
        {"BOTTOM", LayerLayout::Bottom},
        {"MIDDLE", LayerLayout::Middle},
        {"MIXED", LayerLayout::Mixed}};
    auto selects = [&](LayerLayout layout, int64_t count) {
      for (int64_t l = 0; l < layers; ++l)
        if (isLayoutLayer(layout, count, l, layers) != bool(chosen.count(l)))
          return false;
      return true;
    };
    auto layoutIt = config.find(layoutKey), countIt = config.find(countKey);
    if (layoutIt != config.end() || countIt != config.end()) {
      std::string given = layoutIt != config.end() && layoutIt->is_string()
                              ? upper(layoutIt->get<std::string>())
                              : defaultLayout;
      int64_t count = countIt != config.end() && countIt->is_number_integer()
                          ? countIt->get<int64_t>()
                          : defaultCount;
      auto found =
          std::find_if(layouts.begin(), layouts.end(),
                       [&](const auto &l) { return l.first == given; });
      if (found == layouts.end() || count < 0 || count > layers ||
          !selects(found->second, count))
        cfgFail(std::string(layoutKey) + " " + given + " with " + countKey +
                " " + std::to_string(count) +
                " contradicts the checkpoint's layers");
    }
    for (const auto &[layoutName, layout] : layouts)
      if (selects(layout, static_cast<int64_t>(chosen.size())))
        return {{"layout", layoutName},
                {"count", static_cast<int64_t>(chosen.size())}};
    return ojson(std::vector<int64_t>(chosen.begin(), chosen.end()));
  };

  ojson model;
  model["name"] = name;
  int64_t padId = 3;
  if (auto it = config.find("pad_id"); it != config.end()) {
    if (!it->is_number_integer())
      cfgFail("pad_id must be an integer, got " + it->dump());
    else
      padId = it->get<int64_t>();
  }
  model["embeddings"] = {{"vocab_size", vocab},
                         {"type_vocab_size", (*type)[0]},
                         {"d_emb", dEmb},
                         {"max_seq_length", seq},
                         {"pad_id", padId}};
  if (!mappingIn)
    model["embeddings"]["hidden_mapping_in"] = false;
  model["d_model"] = dModel;
  model["num_layers"] = layers;
  for (int64_t l = 0; l < layers && error.empty(); ++l)
    if (!moe.count(l)) {
      if (auto k = dims("encoder/feed_forward_" + std::to_string(l) +
                            "/intermediate/kernel",
                        2)) {
        model["d_ff"] = (*k)[1];
        settle("d_ff", (*k)[1],
               "encoder/feed_forward_" + std::to_string(l) +
                   "/intermediate/kernel");
      }
      break;
    }
  model["mixing"] = {{"kind", kind}};
  bool fft = false;
  if (auto it = config.find("use_fft"); it != config.end()) {
    if (!it->is_boolean())
      cfgFail("use_fft must be true or false");
    else
      fft = it->get<bool>();
  }
  if (fft && kind != "attention" && kind != "linear")
    model["mixing"]["use_fft"] = true;
  if (kind != "attention" && !attention.empty())
    model["mixing"]["attention_layers"] = placement(
        attention, "attention_layout", "num_attention_layers", "TOP", 4);
  if (!attention.empty() && error.empty()) {
    if (auto q =
            dims("encoder/attention_" + std::to_string(*attention.begin()) +
                     "/self/query/kernel",
                 3)) {
      model["attention"] = {{"num_heads", (*q)[1]}};
      if ((*q)[1] * (*q)[2] != dModel)
        model["attention"]["head_dim"] = (*q)[2];
      settle("num_heads", (*q)[1], "query kernel");
    }
  }
  if (!moe.empty() && error.empty()) {
    model["moe_layers"] =
        placement(moe, "moe_layout", "num_moe_layers", "MIDDLE", 4);
    if (auto k = dims("encoder/expert_" + std::to_string(*moe.begin()) +
                          "/intermediate/kernel",
                      3)) {
      settle("num_experts", (*k)[0], "expert kernels");
      settle("expert_d_ff", (*k)[2], "expert kernels");
      ojson routing = {{"type", "experts_choose"}};
      std::string dispatch = "MASK_EXPERTS_CHOOSE";
      if (auto it = config.find("dispatch_algorithm"); it != config.end())
        dispatch = it->is_string() ? upper(it->get<std::string>()) : "";
      if (dispatch == "MASK_TOKENS_CHOOSE" ||
          dispatch == "SCATTER_TOKENS_CHOOSE") {
        routing = {
            {"type", "tokens_choose"},
            {"k", valueOr("num_selected_experts", 1)},
            {"batch_prioritized", valueOr("batch_prioritized_routing", true)}};
      } else if (dispatch != "MASK_EXPERTS_CHOOSE") {
        cfgFail("dispatch_algorithm " + config["dispatch_algorithm"].dump() +
                " is not one of MASK_EXPERTS_CHOOSE, MASK_TOKENS_CHOOSE, "
                "SCATTER_TOKENS_CHOOSE");
      }
      ojson moeJson = {{"num_experts", (*k)[0]},
                       {"expert_d_ff", (*k)[2]},
                       {"routing", routing}};
      for (const char *key : {"train_capacity_factor", "eval_capacity_factor"})
        moeJson[key] = valueOr(key, 1.0);
      moeJson["min_expert_capacity"] = valueOr("min_expert_capacity", 4);
      moeJson["max_group_size"] = valueOr("max_group_size", 4096);
      // The original's router weights compute in bfloat16 on every platform.
      moeJson["router_dtype"] = "bfloat16";
      model["moe"] = moeJson;
    }
  }
  ojson heads = ojson::object();
  if (p.count("encoder/pooler/kernel"))
    heads["pooler"] = true;
  bool mlm = p.count("predictions_dense/kernel");
  if (mlm)
    heads["mlm"] = true;
  if (p.count("classification/output_kernel") && error.empty())
    if (auto k = dims("classification/output_kernel", 2)) {
      if (mlm && (*k)[0] == 2)
        heads["nsp"] = true;
      else
        heads["classification"] = {{"num_classes", (*k)[0]}};
    }
  model["heads"] = heads;
  ojson training = ojson::object();
  for (const auto &[from, to] : kTrainingKeys)
    if (auto it = config.find(from); it != config.end() && !it->is_null())
      training[to] = *it;
  if (!training.empty())
    model["training"] = training;
  if (!error.empty())
    return Status::error(error);
  return model;
}

} // namespace

Expected<ImportedModel> importFlaxCheckpoint(const std::string &path,
                                             const json &config,
                                             const std::string &configPath) {
  if (!config.is_object())
    return Status::error(configPath + ": not a JSON object");
  Expected<CheckpointFiles> files = readCheckpointFiles(path);
  if (!files.ok())
    return files.takeStatus();
  std::vector<StateDict> dicts;
  for (const auto &[file, bytes] : files->files) {
    Expected<StateDict> dict = readStateDict(file, bytes);
    if (!dict.ok())
      return dict.takeStatus();
    dicts.push_back(std::move(*dict));
  }
  Expected<std::vector<Parameter>> joined = joinShards(dicts);
  if (!joined.ok())
    return joined.takeStatus();

  ImportedModel result;
  std::map<std::string, io::HostTensor> params;
  std::map<std::string, const Parameter *> origin;
  for (const Parameter &p : *joined) {
    std::string name = mixerName(p.tensor.name);
    std::optional<Role> role = roleOf(name);
    if (!role)
      return Status::error(p.file + ": " + p.tensor.name +
                           ": unknown key (no counterpart in mixer's models)");
    if (role == Role::Expert && p.tensor.shape.size() < 2)
      return Status::error(p.file + ": " + p.tensor.name + ": is " +
                           io::formatShape(p.tensor.shape) +
                           "; an expert parameter has the expert axis second");
    io::HostTensor t =
        role == Role::Expert ? swapLeadingAxes(p.tensor) : p.tensor;
    t.name = name;
    origin[name] = &p;
    params[name] = std::move(t);
  }
  std::string name = fs::path(path).lexically_normal().filename().string();
  if (name.empty())
    name = fs::path(path).lexically_normal().parent_path().filename().string();
  name = fs::path(name).stem().string();
  const std::string &source = dicts[0].file;
  Expected<ojson> model = describeModel(params, config, configPath, source,
                                        name.empty() ? "imported" : name);
  if (!model.ok())
    return model.takeStatus();
  Expected<ModelConfig> parsed =
      parseModelText(model->dump(), path + " (the model it describes)");
  if (!parsed.ok())
    return parsed.takeStatus();
  std::set<std::string> expected;
  for (const auto &[target, shape] : expectedParameters(*parsed)) {
    expected.insert(target);
    std::string original = originalName(target, *roleOf(target));
    auto it = params.find(target);
    if (it == params.end())
      return Status::error(source + ": missing tensor '" + original +
                           "' (mixer's " + target + ")");
    const Parameter &p = *origin[target];
    if (it->second.shape != shape) {
      io::HostTensor expectedOriginal;
      expectedOriginal.shape = shape;
      if (*roleOf(target) == Role::Expert)
        std::swap(expectedOriginal.shape[0], expectedOriginal.shape[1]);
      return Status::error(p.file + ": tensor '" + original + "' is " +
                           io::formatShape(p.tensor.shape) +
                           " but the model makes it " +
                           io::formatShape(expectedOriginal.shape));
    }
    std::string how;
    if (p.bf16)
      how += ", bfloat16 widened";
    if (p.shards)
      how += ", joined from " + std::to_string(p.shards) + " shard files";
    if (*roleOf(target) == Role::Expert)
      how += ", expert axis moved first";
    result.mapped.push_back(original + " " + io::formatShape(p.tensor.shape) +
                            " -> " + target + " " + io::formatShape(shape) +
                            (how.empty() ? "" : " (" + how.substr(2) + ")"));
    result.weights.push_back(std::move(it->second));
  }
  for (const auto &[target, p] : origin)
    if (!expected.count(target))
      return Status::error(p->file + ": tensor '" + p->tensor.name +
                           "' has no counterpart in the model it describes");
  if (dicts[0].step)
    result.mapped.push_back("step " + std::to_string(*dicts[0].step) +
                            " of the checkpoint (not imported)");
  if (dicts[0].optimizerState)
    result.mapped.push_back("opt_state skipped (the optimizer state is not "
                            "imported)");
  result.model = std::move(*model);
  return result;
}

Expected<std::string>
exportFlaxParams(const std::vector<io::HostTensor> &weights,
                 const std::string &source) {
  // The tree, keys in the order the parameters come.
  struct Node {
    std::vector<std::pair<std::string, std::unique_ptr<Node>>> children;
    const io::HostTensor *leaf = nullptr;
    io::HostTensor swapped;
  };
  Node root;
  for (const io::HostTensor &t : weights) {
    std::optional<Role> role = roleOf(t.name);
    if (!role)
      return Status::error(source + ": tensor '" + t.name +
                           "' has no counterpart in the original's models");
    if (t.dtype != io::DType::F32)
      return Status::error(source + ": tensor '" + t.name + "' is " +
                           io::dtypeName(t.dtype) +
                           "; mixer's parameters "
                           "are F32");
    if (role == Role::Expert && t.shape.size() < 2)
      return Status::error(source + ": tensor '" + t.name + "' is " +
                           io::formatShape(t.shape) +
                           "; an expert parameter is [E, ...]");
    std::string path = originalName(t.name, *role);
    Node *node = &root;
    size_t start = 0;
    while (true) {
      size_t slash = path.find('/', start);
      std::string key = path.substr(start, slash - start);
      auto it = std::find_if(node->children.begin(), node->children.end(),
                             [&](const auto &c) { return c.first == key; });
      if (it == node->children.end()) {
        node->children.push_back({key, std::make_unique<Node>()});
        it = std::prev(node->children.end());
      }
      node = it->second.get();
      if (slash == std::string::npos)
        break;
      start = slash + 1;
    }
    if (role == Role::Expert) {
      node->swapped = swapLeadingAxes(t);
      node->leaf = &node->swapped;
    } else {
      node->leaf = &t;
    }
  }
  io::MsgpackWriter out;
  auto write = [&](auto &self, const Node &node) -> void {
    if (node.leaf) {
      io::MsgpackWriter array;
      array.array(3);
      array.array(node.leaf->shape.size());
      for (int64_t d : node.leaf->shape)
        array.integer(d);
      array.str("float32");
      array.bin(node.leaf->data.data(), node.leaf->data.size());
      out.ext(1, array.bytes());
      return;
    }
    out.map(node.children.size());
    for (const auto &[key, child] : node.children) {
      out.str(key);
      self(self, *child);
    }
  };
  out.map(1);
  out.str("params");
  write(write, root);
  return out.take();
}

} // namespace mixer::convert
