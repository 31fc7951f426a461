#include "core/location.hpp"

#include <gtest/gtest.h>

namespace gswarm {
namespace {

TEST(Location, ParsesWireNamesAndRoundTrips) {
  for (const char* name : {"dram", "pinned_dram", "disk", "device:0", "device:7"}) {
    auto loc = Location::parse(name);
    ASSERT_TRUE(loc) << name;
    EXPECT_EQ(loc->name(), name);
  }
  EXPECT_EQ(Location::parse("device:3")->device_index(), 3);
  EXPECT_EQ(Location::parse("device:3")->kind(), LocationKind::kDevice);
}

TEST(Location, DataPoolAliases) {
  EXPECT_EQ(*Location::parse("cpu"), Location::dram());
  EXPECT_EQ(*Location::parse("gpu"), Location::device(0));
  EXPECT_EQ(*Location::parse("gpu:2"), Location::device(2));
}

TEST(Location, RejectsUnknownNamesWithTheValidList) {
  for (const char* bad : {"", "ram", "device:", "device:-1", "device:x", "device:99999", "DISK",
                          "device:1:2"}) {
    auto loc = Location::parse(bad);
    ASSERT_FALSE(loc) << bad;
    EXPECT_EQ(loc.error().code, ErrorCode::kInvalidLocation);
    EXPECT_NE(loc.error().message.find("pinned_dram"), std::string::npos);
  }
}

TEST(Location, HostAddressable) {
  EXPECT_TRUE(Location::dram().host_addressable());
  EXPECT_TRUE(Location::pinned_dram().host_addressable());
  EXPECT_FALSE(Location::disk().host_addressable());
  EXPECT_FALSE(Location::device(0).host_addressable());
}

}  // namespace
}  // namespace gswarm
