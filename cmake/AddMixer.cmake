# add_mixer_library(<name> <sources>... [DEPENDS <targets>...])
#
# One part of libMixerCompiler.so (compiler/CMakeLists.txt): an object library
# compiled with LLVM's flags, whose objects only that shared library links.
# mixc, mixer-opt and pass plugins thus share one copy of every symbol (one
# TypeID per op). Link dependencies declared on the part become the shared
# library's; DEPENDS names the tablegen targets its sources include.
function(add_mixer_library name)
  cmake_parse_arguments(ARG "" "" "DEPENDS" ${ARGN})
  add_library(${name} OBJECT ${ARG_UNPARSED_ARGUMENTS})
  llvm_update_compile_flags(${name})
  if(ARG_DEPENDS)
    add_dependencies(${name} ${ARG_DEPENDS})
  endif()
endfunction()

# install_mixer_tool(<target>)
#
# Installs a compiler tool into bin/, from where it finds libMixerCompiler.so
# in ../lib and libMLIR.so where this build found it; in the build tree too,
# so installing copies the tool unchanged.
function(install_mixer_tool name)
  set_target_properties(${name} PROPERTIES
    INSTALL_RPATH "\$ORIGIN/../lib;${LLVM_LIBRARY_DIR}"
    BUILD_WITH_INSTALL_RPATH ON)
  install(TARGETS ${name} RUNTIME DESTINATION bin)
endfunction()
