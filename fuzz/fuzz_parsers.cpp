// Small parsers of text users and other nodes send: sizes, locations, keys,
// host:port addresses, percent-encoding, peers files and etcd's answers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluster/etcd.hpp"
#include "cluster/membership.hpp"
#include "core/base64.hpp"
#include "core/key.hpp"
#include "core/location.hpp"
#include "core/size.hpp"

using namespace gswarm;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      if (auto n = parse_size(text); n) (void)format_size(*n);
      break;
    case 1:
      if (auto l = Location::parse(text); l) {
        auto again = Location::parse(l->name());
        if (!again || !(*again == *l)) __builtin_trap();
      }
      break;
    case 2:
      (void)validate_key(text);
      (void)is_valid_utf8(text);
      (void)base64_decode(text);
      break;
    case 3:
      (void)cluster::parse_address(text);
      break;
    case 4: {
      cluster::Membership membership("self", {"127.0.0.1", 9015});
      (void)membership.add_peers(text, "fuzz");
      (void)membership.members();
      break;
    }
    case 5:
      (void)cluster::parse_nodes_answer(text, "self");
      break;
  }
  return 0;
}
