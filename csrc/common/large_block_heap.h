// A heap of its own for the process's large CPU tensors.
#pragma once

#include <cstddef>

namespace ial {
namespace common {

// Requests of this size and more come from the heap once it is installed.
constexpr size_t kLargeBlockBytes = size_t(1) << 20;

// Makes torch's CPU allocator take every request of kLargeBlockBytes and more from a heap
// that holds only such blocks and keeps their pages when they are freed; smaller
// requests go to the allocator it replaces. A general heap (glibc's) lets small
// long-lived blocks pin holes between large ones, and a training loop's RSS then
// climbs from one iteration to the next; here large blocks only meet large ones,
// and freed neighbours merge. Linux only; returns whether it is the CPU allocator
// now.
bool install_large_block_heap();

bool large_block_heap_installed();

// Gives the pages of the heap's free ranges back to the OS (they stay reserved
// for reuse); returns their bytes.
size_t release_large_block_pages();

} // namespace common
} // namespace ial
