#include "storage/format_table.hpp"

#include <array>
#include <atomic>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#include <fmt/format.h>

namespace gswarm {
namespace {

struct Table {
  Table() {
    add("json");
    add("bytes");
  }
  std::uint16_t add(std::string_view format) {
    const auto id = static_cast<std::uint16_t>(storage.size());
    const std::string& stored = storage.emplace_back(format);
    ids.emplace(stored, id);
    names[id].store(&stored, std::memory_order_release);
    return id;
  }

  std::mutex mutex;
  std::deque<std::string> storage;                          // guarded by mutex; never shrinks
  std::unordered_map<std::string_view, std::uint16_t> ids;  // guarded by mutex
  std::array<std::atomic<const std::string*>, FormatTable::kCapacity> names{};
};

Table& table() {
  static Table instance;
  return instance;
}

}  // namespace

Result<std::uint16_t> FormatTable::intern(std::string_view format) {
  if (format == "json") return kJson;
  if (format == "bytes") return kBytes;
  Table& t = table();
  std::lock_guard lock(t.mutex);
  if (auto it = t.ids.find(format); it != t.ids.end()) return it->second;
  if (t.storage.size() >= kCapacity) {
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("this server already knows {} different format tags, the most "
                                  "it keeps; use one of the tags in use",
                                  kCapacity));
  }
  return t.add(format);
}

std::string_view FormatTable::name(std::uint16_t id) {
  const std::string* s = table().names[id].load(std::memory_order_acquire);
  return s == nullptr ? std::string_view("bytes") : std::string_view(*s);
}

}  // namespace gswarm
