// Closes the region opened by isa_avx2_begin.h.
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef IAL_CPU_ISA
#undef IAL_CPU_AVX2
