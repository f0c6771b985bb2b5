# lit configuration of the mixer test suite: IR tests for the dialects and
# passes, CLI tests for the tools, and end-to-end runs against the NumPy
# reference.
import os

import lit.formats
from lit.llvm import llvm_config

config.name = "MIXER"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit",
                   "reference", "Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.mixer_obj_root, "test")

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
tool_dirs = [os.path.join(config.mixer_obj_root, "bin"), config.llvm_tools_dir]
# MIXER_SANITIZED_RUNTIME: the bin/ of a runtime built with AddressSanitizer
# (MIXER_SANITIZE=runtime scripts/test), whose mixer-run and mixer-profile the
# tests use in place of this build's.
sanitized_runtime = os.environ.get("MIXER_SANITIZED_RUNTIME")
llvm_config.add_tool_substitutions(["mixc", "mixer-opt"], tool_dirs)
llvm_config.add_tool_substitutions(
    ["mixer-run", "mixer-profile"],
    ([sanitized_runtime] if sanitized_runtime else []) + tool_dirs)
llvm_config.add_tool_substitutions(["llvm-nm"], [config.llvm_tools_dir])

# "cuda": mixer-run can run cuda artifacts; "cuda-device": a GPU is present.
# The sanitized runtime is built without CUDA.
if (config.mixer_enable_cuda.upper() in ("ON", "1", "TRUE", "YES")
        and not sanitized_runtime):
    config.available_features.add("cuda")
if os.path.exists("/dev/nvidiactl"):
    config.available_features.add("cuda-device")
# "cpu-bf16": this CPU computes bf16 products (AVX512_BF16 or AMX), which
# bf16 cpu plans need.
with open("/proc/cpuinfo") as cpuinfo:
    if any(flag in cpuinfo.read().split() for flag in ("avx512_bf16", "amx_bf16")):
        config.available_features.add("cpu-bf16")
# "mpi": the MPI communicator is built; %mpirun starts ranks with the
# environment the CTest mpirun tests use (cmake/MixerComm.cmake).
if config.mixer_enable_mpi.upper() in ("ON", "1", "TRUE", "YES"):
    config.available_features.add("mpi")
    for setting in config.mpi_environment.split(";"):
        name, _, value = setting.partition("=")
        config.environment[name] = value
    # Open MPI leaks its own allocations at exit, from plugins it has
    # already unloaded (so no suppression can name them): LeakSanitizer is off
    # for the ranks of a sanitized runtime.
    mpirun = config.mpiexec
    if sanitized_runtime or "-fsanitize=address" in config.mixer_cxx_flags:
        mpirun = ("env ASAN_OPTIONS=allow_user_poisoning=0:detect_leaks=0 " +
                  mpirun)
    config.substitutions.append(("%mpirun", mpirun))
# "asan": the tools are built with AddressSanitizer (MIXER_SANITIZE=1 or
# runtime), whose
# shadow memory reserves terabytes of address space.
if "-fsanitize=address" in config.mixer_cxx_flags or sanitized_runtime:
    config.available_features.add("asan")

config.substitutions.append(("%models", os.path.join(config.mixer_src_root, "models")))
config.substitutions.append(("%python", config.python3))
for plugin, library in [("%count_ops_plugin", "libMixerCountOpsPlugin.so"),
                        ("%expand_gelu_plugin", "libMixerExpandGeluPlugin.so")]:
    config.substitutions.append(
        (plugin, os.path.join(config.mixer_obj_root, "lib", library)))
# Building a plugin against an installed mixer, as docs/passes.md does.
config.substitutions.append(("%mixer_obj_root", config.mixer_obj_root))
config.substitutions.append(("%mixer_src_root", config.mixer_src_root))
config.substitutions.append(("%cmake", config.cmake))
config.substitutions.append(("%cxx", config.cxx_compiler))
config.substitutions.append(
    ("%ref", config.python3 + " " +
     os.path.join(config.mixer_src_root, "test", "reference", "mixer_ref.py")))
