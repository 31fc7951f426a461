#include "storage/system_memory.hpp"

#include <unistd.h>

#include <fstream>
#include <string>

namespace gswarm {

SystemMemory system_memory() {
  SystemMemory m;
  std::ifstream in("/proc/meminfo");
  std::string name;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> name >> kib) {
    std::getline(in, unit);
    if (name == "MemTotal:") m.total = kib * 1024;
    if (name == "MemAvailable:") m.available = kib * 1024;
  }
  if (m.total > 0) {
    m.used = m.total - m.available;
    m.percent = 100.0 * static_cast<double>(m.used) / static_cast<double>(m.total);
  }
  return m;
}

std::uint64_t resident_memory() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t pages = 0, resident = 0;
  if (!(in >> pages >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace gswarm
