# Optional CUDA backend. The CUDA kernels build when a CUDA compiler is found
# (CMAKE_CUDA_COMPILER, nvcc on PATH or /usr/local/cuda/bin/nvcc); a machine
# without the toolkit builds everything else unchanged.

include(CheckLanguage)
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX}
   AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(MIXER_CUDA_FOUND ON)
else()
  set(MIXER_CUDA_FOUND OFF)
endif()
option(MIXER_ENABLE_CUDA "Build the CUDA kernels and their tests"
       ${MIXER_CUDA_FOUND})

if(MIXER_ENABLE_CUDA)
  if(NOT MIXER_CUDA_FOUND)
    message(FATAL_ERROR "MIXER_ENABLE_CUDA is ON but no CUDA compiler was "
                        "found; set CMAKE_CUDA_COMPILER")
  endif()
  # A fixed list: `native` fails on machines without a GPU.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "CUDA backend enabled: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                 "architectures ${CMAKE_CUDA_ARCHITECTURES}")
else()
  message(STATUS "CUDA backend disabled (no CUDA compiler found or "
                 "MIXER_ENABLE_CUDA=OFF)")
endif()
