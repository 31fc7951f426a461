#include "core/size.hpp"

#include <gtest/gtest.h>

namespace gswarm {
namespace {

TEST(ParseSize, SpecExamples) {
  EXPECT_EQ(parse_size("16GB").value(), 16 * kGiB);
  EXPECT_EQ(parse_size("1TB").value(), kTiB);
  EXPECT_EQ(parse_size("512MB").value(), 512 * kMiB);
  EXPECT_EQ(parse_size("1024").value(), 1024u);
}

TEST(ParseSize, SuffixesArePowersOf1024AndCaseInsensitive) {
  EXPECT_EQ(parse_size("1B").value(), 1u);
  EXPECT_EQ(parse_size("2kb").value(), 2048u);
  EXPECT_EQ(parse_size("3 MB").value(), 3 * kMiB);
  EXPECT_EQ(parse_size("1GiB").value(), kGiB);
  EXPECT_EQ(parse_size("4g").value(), 4 * kGiB);
  EXPECT_EQ(parse_size("1.5GB").value(), kGiB + kGiB / 2);
}

TEST(ParseSize, RejectsGarbage) {
  for (const char* bad : {"", "GB", "12XB", "-1", "1e3", "abc", "16 GB extra", "1..5GB",
                          "99999999999999999999", "20000000000TB"}) {
    auto r = parse_size(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidSize) << bad;
  }
}

TEST(FormatSize, Human) {
  EXPECT_EQ(format_size(512), "512 B");
  EXPECT_EQ(format_size(16 * kGiB), "16.0 GB");
  EXPECT_EQ(format_size(1536), "1.5 KB");
}

}  // namespace
}  // namespace gswarm
