//===- MemoryBudget.cpp - Host memory a plan needs ------------------------===//

#include "runtime/exec/MemoryBudget.h"

#include <unistd.h>

#include <cstdio>
#include <string>

namespace mixer::exec {

namespace {

std::string formatBytes(double bytes) {
  char text[32];
  if (bytes >= double(1u << 30))
    std::snprintf(text, sizeof(text), "%.1f GiB", bytes / (1u << 30));
  else
    std::snprintf(text, sizeof(text), "%.1f MiB", bytes / (1u << 20));
  return text;
}

/// Bytes of `tensors`, summed in double: a hostile plan may claim sizes
/// whose sum overflows 64 bits.
double tensorBytes(const std::vector<ParamInfo> &tensors) {
  double bytes = 0;
  for (const ParamInfo &tensor : tensors)
    bytes += double(tensor.numel) * io::dtypeSize(tensor.dtype);
  return bytes;
}

} // namespace

int64_t physicalMemoryBytes() {
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long pageSize = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || pageSize <= 0)
    return 0;
  return int64_t(pages) * pageSize;
}

Status checkHostMemory(const Plan &plan, int parameterCopies, bool withArena,
                       int64_t availableBytes) {
  if (availableBytes <= 0)
    return Status::success();
  double params = tensorBytes(plan.params);
  double needed = parameterCopies * params + tensorBytes(plan.state) +
                  (withArena ? double(plan.arenaBytes) : 0.0);
  if (needed <= double(availableBytes))
    return Status::success();
  const ParamInfo *largest = nullptr;
  for (const ParamInfo &param : plan.params)
    if (!largest || param.numel > largest->numel)
      largest = &param;
  std::string message = plan.path + ": needs " + formatBytes(needed) +
                        " of memory, more than this machine's " +
                        formatBytes(double(availableBytes)) + " (parameters " +
                        formatBytes(params);
  if (largest)
    message +=
        ", the largest " + largest->name + " " + io::formatShape(largest->shape) +
        " " +
        formatBytes(double(largest->numel) * io::dtypeSize(largest->dtype));
  if (!plan.state.empty())
    message += "; optimizer state " + formatBytes(tensorBytes(plan.state));
  if (withArena)
    message += "; activations " + formatBytes(double(plan.arenaBytes));
  return Status::error(message + ")");
}

} // namespace mixer::exec
