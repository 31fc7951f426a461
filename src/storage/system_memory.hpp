// The machine's memory, for /stats ("memory_info"). Reads /proc/meminfo.
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

}  // namespace gswarm
