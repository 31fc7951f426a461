// What the crash tests share: a small Store on one mover and one io thread
// (so that test points meet the steps in a known order), without devices.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

#include "core/size.hpp"
#include "storage/device_backend.hpp"
#include "storage/store.hpp"

namespace gswarm::crash {

inline StoreOptions store_options(const std::filesystem::path& root) {
  StoreOptions o;
  o.disk_path = root;
  o.max_memory = 64 * kMiB;
  o.move_threads = 1;
  o.io_threads = 1;
  o.devices = no_device_backend();
  return o;
}

inline std::span<const std::byte> bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace gswarm::crash
