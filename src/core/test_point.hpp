// Test points: named places in the code where a test can run its own code, to
// force one interleaving of two threads or to simulate a crash at an exact step
// (RocksDB's sync points, LevelDB's fault injection).
//
// GSWARM_TEST_POINT("disk.after_rename") compiles to nothing unless the
// translation unit is built with GSWARM_TEST_POINTS, which only test builds
// define (tests/CMakeLists.txt builds the storage sources a second time for that).
// The product never contains them.
#pragma once

#ifdef GSWARM_TEST_POINTS

#include <functional>
#include <string>
#include <string_view>

namespace gswarm::test_points {

// Runs the callback set for `name`, if any, on the calling thread.
void hit(std::string_view name);
// Sets (or, with an empty function, clears) the callback of `name`.
void set(std::string name, std::function<void()> callback);
void clear_all();

}  // namespace gswarm::test_points

#define GSWARM_TEST_POINT(name) ::gswarm::test_points::hit(name)

#else

#define GSWARM_TEST_POINT(name) static_cast<void>(0)

#endif
