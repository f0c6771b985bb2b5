//===- KernelVocabularyTest.cpp - Kernels.def and its documentation -------===//
//
// The vocabulary's table is consistent (one entry per enumerator, in order;
// marks only where they mean something), answers the queries the op
// definitions' compile-time checks use, and docs/runtime.md documents every
// kernel with its operands, results and typed attributes.
//
//===----------------------------------------------------------------------===//

#include "runtime/support/KernelVocabulary.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace mixer;

namespace {

TEST(KernelVocabularyTest, ListsEachKernelOnceInEnumerationOrder) {
  std::set<std::string_view> names;
  for (size_t i = 0; i < std::size(kKernelTable); ++i) {
    const KernelInfo &info = kKernelTable[i];
    EXPECT_EQ(static_cast<size_t>(info.kernel), i) << info.name;
    EXPECT_TRUE(names.insert(info.name).second) << info.name;
    EXPECT_EQ(findKernel(info.name), &info);
    EXPECT_EQ(kernelName(info.kernel), info.name);
  }
  EXPECT_EQ(findKernel("conv2d"), nullptr);
}

TEST(KernelVocabularyTest, MarksOnlyWhatTheyApplyTo) {
  for (const KernelInfo &info : kKernelTable) {
    SCOPED_TRACE(std::string(info.name));
    for (const KernelValue &operand : info.operands) {
      EXPECT_TRUE(!operand.variadic || info.operands.size() == 1);
      EXPECT_FALSE(operand.state);
      EXPECT_EQ(operand.aliases, 0u);
      EXPECT_EQ(operand.precision, ResultPrecision::Fp32);
    }
    for (const KernelValue &result : info.results) {
      EXPECT_FALSE(result.optional || result.variadic || result.fp32);
      EXPECT_EQ(result.aliases >> info.operands.size(), 0u);
    }
    std::set<std::string_view> attributes;
    for (const KernelAttribute &attribute : info.attributes) {
      EXPECT_TRUE(attributes.insert(attribute.name).second) << attribute.name;
      EXPECT_EQ(attribute.values != nullptr, attribute.type == AttrType::String)
          << attribute.name;
    }
  }
}

TEST(KernelVocabularyTest, AnswersTheChecksOfTheOpDefinitions) {
  const KernelInfo &dense = kernelInfo(Kernel::Dense);
  EXPECT_TRUE(dense.hasAttribute("transpose_w", AttrType::Bool));
  EXPECT_FALSE(dense.hasAttribute("transpose_w", AttrType::Int));
  EXPECT_FALSE(dense.hasAttribute("transpose_weight", AttrType::Bool));
  EXPECT_TRUE(dense.requiresOnly({"activation", "transpose_w"}));
  EXPECT_FALSE(dense.requiresOnly({"activation"}));
  // `gather` is optional, `layout` is not.
  EXPECT_TRUE(
      kernelInfo(Kernel::Experts).requiresOnly({"activation", "layout"}));
  EXPECT_FALSE(kernelInfo(Kernel::Experts).requiresOnly({"activation"}));
  EXPECT_TRUE(dense.findAttribute("activation")->allows("relu"));
  EXPECT_FALSE(dense.findAttribute("activation")->allows("swish"));
}

TEST(KernelVocabularyTest, AliasesAndStateWhereTheKernelsSaySo) {
  const KernelInfo &norm = kernelInfo(Kernel::LayerNorm);
  EXPECT_TRUE(norm.mayAlias(0, 0));
  EXPECT_TRUE(norm.mayAlias(0, 1));
  EXPECT_FALSE(norm.mayAlias(0, 2));
  EXPECT_FALSE(kernelInfo(Kernel::Dense).mayAlias(0, 0));
  EXPECT_TRUE(kernelInfo(Kernel::AdamW).updatesState());
  EXPECT_TRUE(kernelInfo(Kernel::AccumulateGradient).result(0).state);
  EXPECT_FALSE(kernelInfo(Kernel::AccumulateGradient).result(1).state);
  EXPECT_FALSE(kernelInfo(Kernel::Dense).updatesState());
  EXPECT_TRUE(kernelInfo(Kernel::GlobalNorm).isVariadic());
  EXPECT_EQ(&kernelInfo(Kernel::GlobalNorm).operand(3),
            &kernelInfo(Kernel::GlobalNorm).operand(0));
}

//===----------------------------------------------------------------------===//
// docs/runtime.md
//===----------------------------------------------------------------------===//

std::string trim(const std::string &text) {
  size_t begin = text.find_first_not_of(' ');
  size_t end = text.find_last_not_of(' ');
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

/// `text` split at the commas outside brackets, parentheses and code spans.
std::vector<std::string> splitItems(const std::string &text) {
  std::vector<std::string> items;
  std::string item;
  int depth = 0;
  bool code = false;
  for (char c : text) {
    if (c == '`')
      code = !code;
    else if (!code && (c == '[' || c == '('))
      ++depth;
    else if (!code && (c == ']' || c == ')'))
      --depth;
    if (c == ',' && depth == 0 && !code) {
      items.push_back(trim(item));
      item.clear();
    } else {
      item += c;
    }
  }
  if (!trim(item).empty())
    items.push_back(trim(item));
  return items;
}

/// The leading identifier of `item`.
std::string leadingName(const std::string &item) {
  size_t end = 0;
  while (end < item.size() && (std::isalnum(item[end]) || item[end] == '_'))
    ++end;
  return item.substr(0, end);
}

/// The operands and results of a "operands → results" cell, with their
/// marks and without shapes or remarks: "x, bias? → y (state)".
std::string signatureOf(const std::string &cell) {
  const std::string arrow = "→";
  size_t at = cell.find(arrow);
  if (at == std::string::npos)
    return "no arrow in '" + cell + "'";
  std::string text;
  for (const std::string &item : splitItems(cell.substr(0, at))) {
    std::string name = leadingName(item);
    std::string rest = item.substr(name.size());
    text += (text.empty() ? "" : ", ") + name;
    if (rest.rfind("?", 0) == 0)
      text += "?";
    else if (rest.rfind("…", 0) == 0)
      text += "…";
  }
  text += text.empty() ? arrow : " " + arrow;
  bool first = true;
  for (const std::string &item : splitItems(cell.substr(at + arrow.size()))) {
    text += (first ? " " : ", ") + leadingName(item);
    if (item.find("(state)") != std::string::npos)
      text += " (state)";
    first = false;
  }
  return text;
}

/// The attributes of an "attrs" cell without remarks: "`k` (int), optional
/// `gather` (bool)", or "–".
std::string attributesOf(const std::string &cell) {
  std::string text;
  for (const std::string &item : splitItems(cell)) {
    size_t open = item.find('`'), close = item.find('`', open + 1);
    size_t typeOpen = item.find('(', close), typeClose = item.rfind(')');
    if (open == std::string::npos || close == std::string::npos ||
        typeOpen == std::string::npos || typeClose == std::string::npos)
      return item;
    text += (text.empty() ? "" : ", ") + item.substr(0, close + 1) + " " +
            item.substr(typeOpen, typeClose - typeOpen + 1);
  }
  return text.empty() ? "–" : text;
}

std::string typeOf(const KernelAttribute &attribute) {
  switch (attribute.type) {
  case AttrType::Bool:
    return "bool";
  case AttrType::Int:
    return "int";
  case AttrType::Real:
    return "float";
  case AttrType::String:
    break;
  }
  std::string values;
  for (std::string_view value : *attribute.values)
    values += (values.empty() ? "" : ", ") + std::string(value);
  return values;
}

/// What docs/runtime.md should say of `info`, in the forms of signatureOf
/// and attributesOf.
std::pair<std::string, std::string> documentation(const KernelInfo &info) {
  std::string signature;
  for (const KernelValue &operand : info.operands)
    signature += (signature.empty() ? "" : ", ") + std::string(operand.name) +
                 (operand.optional   ? "?"
                  : operand.variadic ? "…"
                                     : "");
  signature += signature.empty() ? "→" : " →";
  bool first = true;
  for (const KernelValue &result : info.results) {
    signature += (first ? " " : ", ") + std::string(result.name) +
                 (result.state ? " (state)" : "");
    first = false;
  }
  std::string attributes;
  for (const KernelAttribute &attribute : info.attributes)
    attributes += (attributes.empty() ? "" : ", ") +
                  std::string(attribute.optional ? "optional " : "") + "`" +
                  std::string(attribute.name) + "` (" + typeOf(attribute) + ")";
  return {signature, attributes.empty() ? "–" : attributes};
}

/// One documented kernel: its row's operands → results and attributes.
struct DocumentedKernel {
  std::string signature, attributes;
  int line = 0;
};

/// The kernels of the tables headed "| kernel | operands → results | attrs
/// |", by name; a name documented twice gets the line 0.
std::map<std::string, DocumentedKernel> documentedKernels(std::istream &in) {
  std::map<std::string, DocumentedKernel> kernels;
  bool inTable = false;
  std::string row;
  for (int line = 1; std::getline(in, row); ++line) {
    if (row.rfind("| kernel | operands → results | attrs |", 0) == 0) {
      inTable = true;
      continue;
    }
    if (row.rfind("|", 0) != 0) {
      inTable = false;
      continue;
    }
    if (!inTable || row.rfind("|---", 0) == 0)
      continue;
    std::vector<std::string> cells;
    std::stringstream cellStream(row.substr(1));
    for (std::string cell; std::getline(cellStream, cell, '|');)
      cells.push_back(trim(cell));
    if (cells.size() < 3)
      continue;
    DocumentedKernel documented{signatureOf(cells[1]), attributesOf(cells[2]),
                                line};
    for (const std::string &item : splitItems(cells[0])) {
      std::string name = item.substr(1, item.size() - 2);
      auto [entry, added] = kernels.emplace(name, documented);
      if (!added)
        entry->second.line = 0;
    }
  }
  return kernels;
}

TEST(KernelVocabularyTest, DocumentsEveryKernel) {
  std::ifstream doc(MIXER_RUNTIME_DOC);
  ASSERT_TRUE(doc) << "cannot read " << MIXER_RUNTIME_DOC;
  std::map<std::string, DocumentedKernel> documented = documentedKernels(doc);
  for (const KernelInfo &info : kKernelTable) {
    auto it = documented.find(std::string(info.name));
    if (it == documented.end()) {
      ADD_FAILURE() << MIXER_RUNTIME_DOC << " does not document kernel '"
                    << info.name << "'";
      continue;
    }
    std::string where = std::string(MIXER_RUNTIME_DOC) + ":" +
                        std::to_string(it->second.line) + ": kernel '" +
                        std::string(info.name) + "'";
    EXPECT_NE(it->second.line, 0) << where << " is documented twice";
    auto [signature, attributes] = documentation(info);
    EXPECT_EQ(it->second.signature, signature) << where;
    EXPECT_EQ(it->second.attributes, attributes) << where;
    documented.erase(it);
  }
  for (const auto &[name, kernel] : documented)
    ADD_FAILURE() << MIXER_RUNTIME_DOC << ":" << kernel.line << ": documents '"
                  << name << "', which is no plan kernel";
}

} // namespace
