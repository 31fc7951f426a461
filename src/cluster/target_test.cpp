#include "cluster/target.hpp"

#include <gtest/gtest.h>

namespace gswarm::cluster {
namespace {

TEST(TargetTest, AddressesWithAndWithoutLocation) {
  auto t = parse_target("localhost:9016");
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_TRUE(t->address);
  EXPECT_EQ(t->address->text(), "localhost:9016");
  EXPECT_EQ(t->location, Location::dram());

  t = parse_target("http://10.0.0.2:9015/");
  ASSERT_TRUE(t && t->address);
  EXPECT_EQ(t->address->text(), "10.0.0.2:9015");

  t = parse_target("10.0.0.2:9015:device:3");
  ASSERT_TRUE(t && t->address);
  EXPECT_EQ(t->location, Location::device(3));

  t = parse_target("[::1]:9015:disk");
  ASSERT_TRUE(t && t->address) << (t ? "" : t.error().message);
  EXPECT_EQ(t->address->host, "::1");
  EXPECT_EQ(t->address->text(), "[::1]:9015");
  EXPECT_EQ(t->location, Location::disk());
}

TEST(TargetTest, NodesWithAndWithoutLocation) {
  auto t = parse_target("node2:device:1");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->address);
  EXPECT_EQ(t->node, "node2");
  EXPECT_EQ(t->location, Location::device(1));

  t = parse_target("node2");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->node, "node2");
  EXPECT_EQ(t->location, Location::dram());
}

TEST(TargetTest, MistakesAreNamed) {
  auto typo = parse_target("localhost:dramm");
  ASSERT_FALSE(typo);
  EXPECT_EQ(typo.error().code, ErrorCode::kInvalidLocation);
  EXPECT_NE(typo.error().message.find("pinned_dram"), std::string::npos);
  for (const char* bad : {"", "host:0", "host:70000", "host:9015:nowhere", "bad name", "[::1]",
                          "a/b:disk", ":9015"}) {
    EXPECT_FALSE(parse_target(bad)) << bad;
  }
}

TEST(TargetTest, NodeNames) {
  EXPECT_TRUE(validate_node_name("gpu-node_07.rack2"));
  EXPECT_FALSE(validate_node_name(""));
  EXPECT_FALSE(validate_node_name(std::string(65, 'a')));
  EXPECT_FALSE(validate_node_name("a:b"));
}

}  // namespace
}  // namespace gswarm::cluster
