#include "storage/format_table.hpp"

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

namespace gswarm {
namespace {

const std::string kJsonName = "json";
const std::string kBytesName = "bytes";

struct Table {
  Table() {
    names[FormatTable::kJson] = &kJsonName;
    names[FormatTable::kBytes] = &kBytesName;
  }

  std::mutex mutex;
  std::unordered_map<std::string_view, std::uint16_t> ids;  // guarded by mutex
  std::vector<std::uint16_t> free_ids;                      // guarded by mutex
  std::uint32_t next_id = 2;                                // guarded by mutex
  // Written under mutex, read without it by holders of a reference.
  std::array<std::atomic<const std::string*>, FormatTable::kCapacity> names{};
  std::array<std::atomic<std::uint32_t>, FormatTable::kCapacity> references{};
};

Table& table() {
  static Table instance;
  return instance;
}

}  // namespace

Result<std::uint16_t> FormatTable::acquire(std::string_view format) {
  if (format == kJsonName) return kJson;  // built in: never counted, never forgotten
  if (format == kBytesName) return kBytes;
  Table& t = table();
  std::lock_guard lock(t.mutex);
  if (auto it = t.ids.find(format); it != t.ids.end()) {
    t.references[it->second].fetch_add(1, std::memory_order_relaxed);
    return it->second;
  }
  std::uint16_t id = 0;
  if (!t.free_ids.empty()) {
    id = t.free_ids.back();
    t.free_ids.pop_back();
  } else if (t.next_id < kCapacity) {
    id = static_cast<std::uint16_t>(t.next_id++);
  } else {
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("{} different format tags are in use, the most this server "
                                  "keeps at once; use one of the tags in use",
                                  kCapacity));
  }
  const auto* name = new std::string(format);
  t.names[id].store(name, std::memory_order_release);
  t.references[id].store(1, std::memory_order_relaxed);
  t.ids.emplace(*name, id);
  return id;
}

void FormatTable::release(std::uint16_t id) {
  if (id == kJson || id == kBytes) return;
  Table& t = table();
  if (t.references[id].fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  std::lock_guard lock(t.mutex);
  // acquire() may have taken the id again, or another release forgotten it.
  const std::string* name = t.names[id].load(std::memory_order_relaxed);
  if (t.references[id].load(std::memory_order_relaxed) != 0 || name == nullptr) return;
  t.ids.erase(*name);
  t.names[id].store(nullptr, std::memory_order_relaxed);
  delete name;
  t.free_ids.push_back(id);
}

std::string_view FormatTable::name(std::uint16_t id) {
  const std::string* s = table().names[id].load(std::memory_order_acquire);
  return s == nullptr ? std::string_view() : std::string_view(*s);
}

}  // namespace gswarm
