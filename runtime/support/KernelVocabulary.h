//===- KernelVocabulary.h - The plan kernels ---------------------*- C++
//-*-===//
//
// The kernel vocabulary shared by the compiler (which emits plan steps) and
// the runtime (which executes them), derived from Kernels.def: the Kernel
// enumeration and, per kernel, its name, family, operands, results and
// attributes with their types, as documented in docs/runtime.md.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_KERNELVOCABULARY_H
#define MIXER_RUNTIME_SUPPORT_KERNELVOCABULARY_H

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string_view>

namespace mixer {

/// A plan kernel.
enum class Kernel : uint8_t {
#define MIXER_KERNEL(Id, name, Family, operands, results, attributes) Id,
#include "runtime/support/Kernels.def"
};

/// Kernels grouped as the dialect's op families and the kernel sources are.
enum class KernelFamily : uint8_t {
  DenseNorm,
  Mixing,
  Attention,
  Moe,
  HeadsLosses,
  Training,
  Collective
};

/// Where AssignPrecision stores a result.
enum class ResultPrecision : uint8_t {
  /// Always fp32 (losses, parameter gradients, routing, ...).
  Fp32,
  /// An activation or activation gradient: the plan's precision.
  Activation,
  /// Elementwise: the precision of the kernel's floating operands.
  FollowsOperands,
};

/// One operand or result of a kernel.
struct KernelValue {
  std::string_view name;
  /// Operands: absent (-1 in a plan, mixrt.none in IR) is allowed.
  bool optional = false;
  /// Operands: the kernel's only operand, standing for one or more values.
  bool variadic = false;
  /// Operands: kept fp32 in a bf16 plan.
  bool fp32 = false;
  /// Results: a parameter or optimizer state, read and written in place.
  bool state = false;
  /// Results: the operands (a bit per index) the result may share bytes with.
  uint32_t aliases = 0;
  ResultPrecision precision = ResultPrecision::Fp32;

  constexpr KernelValue(const char *name) : name(name) {}
};

/// The type of a step attribute.
enum class AttrType : uint8_t { Bool, Int, Real, String };

/// The strings a string attribute may take.
struct KernelEnum {
  std::string_view name;
  const std::string_view *values;
  size_t size;

  constexpr const std::string_view *begin() const { return values; }
  constexpr const std::string_view *end() const { return values + size; }
};

/// One attribute of a kernel.
struct KernelAttribute {
  std::string_view name;
  AttrType type;
  /// The allowed values of a String attribute.
  const KernelEnum *values = nullptr;
  /// May be left out (a Bool then reads as false).
  bool optional = false;

  /// Whether `value` is one of the allowed strings.
  constexpr bool allows(std::string_view value) const {
    for (std::string_view allowed : *values)
      if (allowed == value)
        return true;
    return false;
  }
};

struct KernelInfo {
  Kernel kernel;
  std::string_view name;
  KernelFamily family;
  std::initializer_list<KernelValue> operands;
  std::initializer_list<KernelValue> results;
  std::initializer_list<KernelAttribute> attributes;

  /// Whether the kernel takes one or more operands (its only operand is
  /// variadic) rather than a fixed number.
  constexpr bool isVariadic() const {
    return operands.size() == 1 && operands.begin()->variadic;
  }
  /// The operand a step's operand `index` binds to (the variadic operand
  /// stands for all of them).
  constexpr const KernelValue &operand(size_t index) const {
    return operands.begin()[isVariadic() ? 0 : index];
  }
  constexpr const KernelValue &result(size_t index) const {
    return results.begin()[index];
  }
  /// The attribute `name`, or null.
  constexpr const KernelAttribute *findAttribute(std::string_view name) const {
    for (const KernelAttribute &attribute : attributes)
      if (attribute.name == name)
        return &attribute;
    return nullptr;
  }
  /// Whether the kernel has the attribute `name` of `type`.
  constexpr bool hasAttribute(std::string_view name, AttrType type) const {
    const KernelAttribute *attribute = findAttribute(name);
    return attribute && attribute->type == type;
  }
  /// Whether `names` holds every attribute the kernel requires.
  constexpr bool
  requiresOnly(std::initializer_list<std::string_view> names) const {
    for (const KernelAttribute &attribute : attributes) {
      bool given = attribute.optional;
      for (std::string_view name : names)
        given = given || name == attribute.name;
      if (!given)
        return false;
    }
    return true;
  }
  /// Whether the kernel writes parameters or optimizer state.
  constexpr bool updatesState() const {
    for (const KernelValue &value : results)
      if (value.state)
        return true;
    return false;
  }
  /// Whether result `result` may share bytes with operand `operand`.
  constexpr bool mayAlias(size_t result, size_t operand) const {
    return operand < 32 && (this->result(result).aliases >> operand) & 1;
  }
};

namespace kernel_def {

// The builders Kernels.def spells its entries with.

constexpr KernelValue optional(KernelValue value) {
  value.optional = true;
  return value;
}
constexpr KernelValue variadic(KernelValue value) {
  value.variadic = true;
  return value;
}
constexpr KernelValue fp32(KernelValue value) {
  value.fp32 = true;
  return value;
}
constexpr KernelValue state(KernelValue value) {
  value.state = true;
  return value;
}
constexpr KernelValue activation(KernelValue value) {
  value.precision = ResultPrecision::Activation;
  return value;
}
constexpr KernelValue followsOperands(KernelValue value) {
  value.precision = ResultPrecision::FollowsOperands;
  return value;
}
constexpr KernelValue mayAlias(KernelValue value,
                               std::initializer_list<unsigned> operands) {
  for (unsigned operand : operands)
    value.aliases |= uint32_t(1) << operand;
  return value;
}

constexpr KernelAttribute boolean(std::string_view name) {
  return {name, AttrType::Bool};
}
constexpr KernelAttribute integer(std::string_view name) {
  return {name, AttrType::Int};
}
constexpr KernelAttribute real(std::string_view name) {
  return {name, AttrType::Real};
}
constexpr KernelAttribute oneOf(std::string_view name,
                                const KernelEnum &values) {
  return {name, AttrType::String, &values};
}
constexpr KernelAttribute optional(KernelAttribute attribute) {
  attribute.optional = true;
  return attribute;
}

#define MIXER_KERNEL_ENUM(Name, ...)                                           \
  inline constexpr std::string_view k##Name[] = {__VA_ARGS__};                 \
  inline constexpr KernelEnum Name = {#Name, k##Name, std::size(k##Name)};
#include "runtime/support/Kernels.def"

#define MIXER_KERNEL_LIST(...) __VA_ARGS__
inline constexpr KernelInfo kKernels[] = {
#define MIXER_KERNEL(Id, name, Family, operands, results, attributes)          \
  {Kernel::Id,                                                                 \
   name,                                                                       \
   KernelFamily::Family,                                                       \
   {MIXER_KERNEL_LIST operands},                                               \
   {MIXER_KERNEL_LIST results},                                                \
   {MIXER_KERNEL_LIST attributes}},
#include "runtime/support/Kernels.def"
};
#undef MIXER_KERNEL_LIST

} // namespace kernel_def

/// Every plan kernel, in the order of the Kernel enumeration.
inline constexpr auto &kKernelTable = kernel_def::kKernels;

/// The strings of the string attributes, by the names Kernels.def gives them.
using kernel_def::ActivationKinds;
using kernel_def::Groups;
using kernel_def::MixAlgorithms;
using kernel_def::NoiseKinds;
using kernel_def::PoolModes;
using kernel_def::Routings;

constexpr const KernelInfo &kernelInfo(Kernel kernel) {
  return kKernelTable[static_cast<size_t>(kernel)];
}

constexpr std::string_view kernelName(Kernel kernel) {
  return kernelInfo(kernel).name;
}

/// The kernel named `name`, or null.
constexpr const KernelInfo *findKernel(std::string_view name) {
  for (const KernelInfo &info : kKernelTable)
    if (info.name == name)
      return &info;
  return nullptr;
}

/// "a boolean", "an integer", "a number" or "a string".
constexpr std::string_view describeAttrType(AttrType type) {
  switch (type) {
  case AttrType::Bool:
    return "a boolean";
  case AttrType::Int:
    return "an integer";
  case AttrType::Real:
    return "a number";
  case AttrType::String:
    return "a string";
  }
  return "";
}

} // namespace mixer

#endif // MIXER_RUNTIME_SUPPORT_KERNELVOCABULARY_H
