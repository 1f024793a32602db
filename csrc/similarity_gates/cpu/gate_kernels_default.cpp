// The similarity-gate row kernels for any CPU the compiler targets by default.
#define IAL_CPU_ISA portable
#include "gate_kernels.h"
