#include "core/key.hpp"

#include <gtest/gtest.h>

#include "core/base64.hpp"

namespace gswarm {
namespace {

TEST(Key, AcceptsArbitraryUtf8) {
  for (const char* key : {"user:123", "a/b/../../etc/passwd", "with space", "ключ", "🔑", "+%&?#"}) {
    EXPECT_TRUE(validate_key(key)) << key;
  }
  EXPECT_TRUE(validate_key(std::string(kMaxKeyBytes, 'k')));
}

TEST(Key, RejectsEmptyLongNulAndInvalidUtf8) {
  EXPECT_FALSE(validate_key(""));
  EXPECT_FALSE(validate_key(std::string(kMaxKeyBytes + 1, 'k')));
  EXPECT_FALSE(validate_key(std::string("a\0b", 3)));
  for (const char* bad : {"\xff", "\xc0\xaf", "\xe0\x80\x80", "\xed\xa0\x80", "abc\xe2\x82"}) {
    auto r = validate_key(bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidKey);
  }
}

TEST(Base64, RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    auto decoded = base64_decode(base64_encode(bytes));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(*decoded, bytes);
    bytes.push_back(static_cast<char>(i * 37));
  }
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
}

TEST(Base64, RejectsBadInput) {
  for (const char* bad : {"a", "abc", "ab=c", "====", "a b=", "!!!!", "aGVsbG8=aGVs"}) {
    EXPECT_FALSE(base64_decode(bad)) << bad;
  }
}

}  // namespace
}  // namespace gswarm
