// The upsampled-softmax row kernels for any CPU the compiler targets by default.
#define IAL_CPU_ISA portable
#include "softmax_kernels.h"
