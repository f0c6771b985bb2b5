// A core header that reaches into a backend: check-layers.py must report it.
#include "runtime/cpu/Kernels.h"
#include "runtime/exec/Plan.h"
