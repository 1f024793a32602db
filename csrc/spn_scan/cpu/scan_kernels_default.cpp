// The SPN scan kernels for any CPU the compiler targets by default.
#define IAL_CPU_ISA portable
#include "scan_kernels.h"
