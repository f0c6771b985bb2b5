//===- comm_bench.cpp - Bandwidth of the MPI communicator -----------------===//
//
// mpirun -np N mixer-commbench [--sizes 4K,64K,1M,16M] [--iters N]
//                              [--warmup N] [--deadline S] [--json]
// mpirun -np N mixer-commbench --soak S [--deadline S]
//
// Times the communicator's all-to-all and f32 all-reduce for each size (the
// bytes each rank sends to each peer) and prints, from rank 0, the median
// time per call and the effective bandwidth: the bytes that leave a rank per
// call ((N - 1) x size for the all-to-all, the whole N x size buffer for the
// all-reduce) over that time.
//
// --soak S repeats all-to-alls of the first size for S seconds (the ranks
// agree when to stop), the load of the failure tests: a collective that
// fails prints its message and ends the job (MPI_Abort) with exit 1.
//
//===----------------------------------------------------------------------===//

#include "runtime/comm/Mpi.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

using namespace mixer;
using namespace mixer::comm;

namespace {

[[noreturn]] void usage(const std::string &message) {
  std::fprintf(stderr,
               "mixer-commbench: error: %s\nusage: mixer-commbench [--sizes "
               "4K,64K,1M,16M] [--iters N] [--warmup N] [--deadline S] "
               "[--json] | --soak S [--deadline S]\n",
               message.c_str());
  std::exit(2);
}

/// "64K" -> 65536; 0 when the text is not a positive size.
size_t parseSize(const std::string &text) {
  char *end = nullptr;
  unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  size_t scale = 1;
  if (*end == 'K' || *end == 'k')
    scale = size_t(1) << 10, ++end;
  else if (*end == 'M' || *end == 'm')
    scale = size_t(1) << 20, ++end;
  if (*end || end == text.c_str() || value == 0)
    return 0;
  return static_cast<size_t>(value) * scale;
}

int parseCount(const std::string &flag, const char *text) {
  char *end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (*end || value < 0 || value > 1000000)
    usage(flag + " takes a non-negative integer, not '" + text + "'");
  return static_cast<int>(value);
}

void check(Communicator &world, Status status) {
  if (status.ok())
    return;
  std::fprintf(stderr, "mixer-commbench: error: %s\n",
               status.message().c_str());
  world.abort(1);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

/// Median seconds of `iters` calls of `call` after `warmup` untimed ones.
template <typename Call>
double timeCalls(Communicator &world, int warmup, int iters, Call call) {
  for (int i = 0; i < warmup; ++i)
    check(world, call());
  std::vector<double> seconds;
  for (int i = 0; i < iters; ++i) {
    check(world, world.barrier("bench barrier"));
    auto start = Clock::now();
    check(world, call());
    seconds.push_back(
        std::chrono::duration<double>(Clock::now() - start).count());
  }
  return median(seconds);
}

} // namespace

int main(int argc, char **argv) {
  std::vector<size_t> sizes = {size_t(4) << 10, size_t(64) << 10,
                               size_t(1) << 20, size_t(16) << 20};
  int iters = 20, warmup = 3, soakSeconds = -1;
  Options options;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc)
        usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--sizes") {
      sizes.clear();
      std::string list = value();
      for (size_t at = 0; at <= list.size();) {
        size_t comma = std::min(list.find(',', at), list.size());
        size_t size = parseSize(list.substr(at, comma - at));
        if (!size)
          usage("--sizes takes sizes like 4K,1M, not '" + list + "'");
        sizes.push_back(size);
        at = comma + 1;
      }
    } else if (arg == "--iters") {
      iters = std::max(1, parseCount(arg, value()));
    } else if (arg == "--warmup") {
      warmup = parseCount(arg, value());
    } else if (arg == "--deadline") {
      options.deadline =
          std::chrono::seconds(std::max(1, parseCount(arg, value())));
    } else if (arg == "--soak") {
      soakSeconds = parseCount(arg, value());
    } else if (arg == "--json") {
      json = true;
    } else {
      usage("unknown argument '" + arg + "'");
    }
  }

  auto created = createMpiWorld(options);
  if (!created) {
    std::fprintf(stderr, "mixer-commbench: error: %s\n",
                 created.message().c_str());
    return 1;
  }
  Communicator &world = **created;
  int n = world.size();

  if (soakSeconds >= 0) {
    std::vector<uint8_t> send(n * sizes[0], 1), recv(n * sizes[0]);
    auto start = Clock::now();
    for (int64_t step = 0;; ++step) {
      std::string label = "steps[" + std::to_string(step) + "] (soak)";
      check(world, world.allToAll(send.data(), recv.data(), sizes[0], label));
      int32_t done =
          std::chrono::duration<double>(Clock::now() - start).count() >=
          soakSeconds;
      check(world, world.allReduceSum(&done, &done, 1, io::DType::I32, label));
      // Start-up (MPI_Init) has no deadline: callers that stop a rank wait
      // for this line, which says every rank is inside the loop.
      if (step == 0 && world.rank() == 0) {
        std::printf("mixer-commbench: soak: %d ranks in the loop\n", n);
        std::fflush(stdout);
      }
      if (done)
        break;
    }
    return 0;
  }

  nlohmann::json rows = nlohmann::json::array();
  for (size_t size : sizes) {
    std::vector<uint8_t> send(n * size, 1), recv(n * size);
    double allToAll = timeCalls(world, warmup, iters, [&] {
      return world.allToAll(send.data(), recv.data(), size, "all_to_all");
    });
    size_t floats = n * size / sizeof(float);
    double allReduce = timeCalls(world, warmup, iters, [&] {
      return world.allReduceSum(send.data(), recv.data(), floats,
                                io::DType::F32, "all_reduce");
    });
    rows.push_back({{"bytes_per_peer", size},
                    {"all_to_all_ms", allToAll * 1e3},
                    {"all_to_all_gbps", (n - 1) * size / allToAll / 1e9},
                    {"all_reduce_ms", allReduce * 1e3},
                    {"all_reduce_gbps", n * size / allReduce / 1e9}});
  }
  if (world.rank() != 0)
    return 0;
  if (json) {
    std::cout << nlohmann::json{{"ranks", n}, {"iters", iters}, {"sizes", rows}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::printf("%d ranks, median of %d calls\n", n, iters);
  std::printf("%14s %14s %14s %14s %14s\n", "bytes/peer", "a2a ms", "a2a GB/s",
              "allred ms", "allred GB/s");
  for (const auto &row : rows)
    std::printf("%14zu %14.3f %14.2f %14.3f %14.2f\n",
                row["bytes_per_peer"].get<size_t>(),
                row["all_to_all_ms"].get<double>(),
                row["all_to_all_gbps"].get<double>(),
                row["all_reduce_ms"].get<double>(),
                row["all_reduce_gbps"].get<double>());
  return 0;
}
