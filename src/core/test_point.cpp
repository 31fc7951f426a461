// Built only into test binaries (see test_point.hpp).
#include "core/test_point.hpp"

#ifdef GSWARM_TEST_POINTS

#include <map>
#include <memory>
#include <mutex>

namespace gswarm::test_points {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<std::function<void()>>, std::less<>> callbacks;
};

Registry& registry() {
  static Registry instance;
  return instance;
}

}  // namespace

void hit(std::string_view name) {
  std::shared_ptr<std::function<void()>> callback;
  {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.callbacks.find(name);
    if (it == r.callbacks.end()) return;
    callback = it->second;
  }
  (*callback)();  // outside the lock: callbacks may block on other threads
}

void set(std::string name, std::function<void()> callback) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  if (callback) {
    r.callbacks[std::move(name)] = std::make_shared<std::function<void()>>(std::move(callback));
  } else {
    r.callbacks.erase(name);
  }
}

void clear_all() {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.callbacks.clear();
}

}  // namespace gswarm::test_points

#endif
