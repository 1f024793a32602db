// Opens the AVX2 + FMA region of a per-ISA translation unit (see cpu_features.h);
// close it with isa_end.h. Include only on x86-64 with GCC or Clang, after every
// header that is not ISA code: an inline std:: or torch function instantiated
// inside the region could be merged by the linker with a portable copy and run
// AVX2 code on a CPU without it. The region defines IAL_CPU_ISA (the namespace
// its kernels go in) and IAL_CPU_AVX2.
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")
#endif
#define IAL_CPU_ISA avx2
#define IAL_CPU_AVX2 1
