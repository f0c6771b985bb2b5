# The communicators of runtime/comm. The MPI one builds when an MPI library
# is found (Debian's Open MPI, installed by scripts/setup), and with it the
# mpirun tests; MIXER_ENABLE_MPI=OFF leaves both out. The NCCL one builds with
# the CUDA backend when the toolkit has NCCL.

find_package(MPI COMPONENTS C)
option(MIXER_ENABLE_MPI
       "Build the MPI communicator, multi-process runs and the mpirun tests"
       ${MPI_C_FOUND})
if(MIXER_ENABLE_MPI)
  if(NOT MPI_C_FOUND)
    message(FATAL_ERROR "MIXER_ENABLE_MPI is ON but no MPI library was found "
                        "(apt-get install openmpi-bin libopenmpi-dev)")
  endif()
  message(STATUS "MPI communicator enabled: MPI ${MPI_C_VERSION}, "
                 "${MPIEXEC_EXECUTABLE} (mpirun tests registered)")
  # The environment of every mpirun test (CTest and lit): loopback shared
  # memory only, no launcher probing (plm isolated: one node, no ssh), no
  # binding of a rank to one core, root allowed (containers), more ranks
  # than cores. Copying single messages through CMA needs ptrace rights that
  # containers often lack, so it is off.
  set(MIXER_MPI_ENVIRONMENT
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_plm=isolated
    OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
    OMPI_MCA_hwloc_base_binding_policy=none)
else()
  message(STATUS "MPI communicator disabled (no MPI found or "
                 "MIXER_ENABLE_MPI=OFF): one process only, no mpirun tests")
endif()

set(MIXER_NCCL_FOUND OFF)
if(MIXER_ENABLE_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
  find_library(NCCL_LIBRARY NAMES nccl
               HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(MIXER_NCCL_FOUND ON)
    add_library(NCCL::nccl UNKNOWN IMPORTED)
    set_target_properties(NCCL::nccl PROPERTIES
      IMPORTED_LOCATION ${NCCL_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
    message(STATUS "NCCL communicator enabled: ${NCCL_LIBRARY}")
  else()
    message(STATUS "NCCL communicator disabled (no nccl.h/libnccl in the "
                   "CUDA toolkit; set NCCL_HOME)")
  endif()
endif()
