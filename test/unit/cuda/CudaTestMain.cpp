//===- CudaTestMain.cpp - Entry point of the GPU tests --------------------===//
//
// Runs the GPU tests when a CUDA device is usable; otherwise says why and
// exits 77, the code CTest's SKIP_RETURN_CODE reports as a skip.
//
//===----------------------------------------------------------------------===//

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char **argv) {
  testing::InitGoogleTest(&argc, argv);
  int devices = 0;
  cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("no CUDA device (cudaGetDeviceCount: %s); skipping %d GPU "
                "tests\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "0 devices",
                testing::UnitTest::GetInstance()->total_test_count());
    return 77;
  }
  return RUN_ALL_TESTS();
}
