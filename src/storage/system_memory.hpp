// The machine's memory and this process's, for /stats ("memory_info",
// "resident_memory"). Reads /proc.
#pragma once

#include <cstdint>

namespace gswarm {

struct SystemMemory {
  std::uint64_t total = 0;
  std::uint64_t available = 0;
  std::uint64_t used = 0;
  double percent = 0;
};

SystemMemory system_memory();
// This process's resident memory (/proc/self/statm), 0 when unknown.
std::uint64_t resident_memory();

}  // namespace gswarm
