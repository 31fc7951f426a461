#include "cluster/membership.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace gswarm::cluster {

Membership::Membership(std::string self_name, Address self_address)
    : self_name_(std::move(self_name)) {
  members_.push_back(Member{self_name_, std::move(self_address), "self", true});
}

Result<void> Membership::add_static(std::string_view spec) {
  auto eq = spec.find('=');
  if (eq == std::string_view::npos) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--peer '{}': give NAME=HOST:PORT, e.g. node2=10.0.0.2:9015",
                                  spec));
  }
  return add_static(spec.substr(0, eq), spec.substr(eq + 1));
}

Result<void> Membership::add_static(std::string_view name, std::string_view address_text) {
  if (auto ok = validate_node_name(name); !ok) return ok;
  auto address = parse_address(address_text);
  if (!address) return tl::unexpected(address.error());
  std::lock_guard lock(mutex_);
  for (const auto& m : members_) {
    if (m.name == name) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("node '{}' is named twice ({} and {})", name,
                                    m.address.text(), address->text()));
    }
  }
  members_.push_back(Member{std::string(name), std::move(*address), "static", true});
  return {};
}

Result<void> Membership::load_peers_file(const std::filesystem::path& path) {
  constexpr std::uintmax_t kMaxPeersFile = 1 << 20;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  std::ifstream in(path);
  if (ec || !in) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--peers-file {}: cannot be read", path.string()));
  }
  if (size > kMaxPeersFile) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--peers-file {}: larger than 1 MiB", path.string()));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return add_peers(text, "--peers-file " + path.string());
}

Result<void> Membership::add_peers(std::string_view peers, std::string_view origin) {
  std::istringstream in{std::string(peers)};
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::replace(line.begin(), line.end(), '\t', ' ');
    std::replace(line.begin(), line.end(), '=', ' ');
    std::string_view text = line;
    auto skip = [&text] {
      while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
      while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
    };
    skip();
    if (text.empty()) continue;
    auto space = text.find(' ');
    std::string_view name = text.substr(0, space);
    std::string_view address = space == std::string_view::npos ? "" : text.substr(space);
    while (!address.empty() && address.front() == ' ') address.remove_prefix(1);
    if (address.empty() || address.find(' ') != std::string_view::npos) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("{} line {}: give NAME HOST:PORT", origin, number));
    }
    if (auto ok = add_static(name, address); !ok) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("{} line {}: {}", origin, number, ok.error().message));
    }
  }
  return {};
}

void Membership::set_discovered(std::vector<Member> members) {
  std::lock_guard lock(mutex_);
  std::erase_if(members_, [](const Member& m) { return m.source == "etcd"; });
  for (auto& m : members) {
    // Names given by the operator win over what other servers registered.
    const bool taken = std::any_of(members_.begin(), members_.end(),
                                   [&](const Member& known) { return known.name == m.name; });
    if (!taken) members_.push_back(std::move(m));
  }
}

Result<Member> Membership::resolve(std::string_view name) const {
  std::lock_guard lock(mutex_);
  for (const auto& m : members_) {
    if (m.name != name) continue;
    if (!m.alive) {
      return make_error(ErrorCode::kNotFound,
                        fmt::format("node '{}' is not alive: its registration in {} ended (last "
                                    "address {})",
                                    name, m.source, m.address.text()));
    }
    return m;
  }
  std::vector<std::string> names;
  for (const auto& m : members_) names.push_back(m.name);
  std::sort(names.begin(), names.end());
  return make_error(ErrorCode::kNotFound,
                    fmt::format("unknown node '{}': known nodes are {} (add peers with --peer "
                                "NAME=HOST:PORT, --peers-file or --etcd, or give host:port)",
                                name, fmt::join(names, ", ")));
}

std::vector<Member> Membership::members() const {
  std::lock_guard lock(mutex_);
  std::vector<Member> out = members_;
  std::sort(out.begin() + 1, out.end(),
            [](const Member& a, const Member& b) { return a.name < b.name; });
  return out;
}

Address Membership::self_address() const {
  std::lock_guard lock(mutex_);
  return members_.front().address;
}

void Membership::set_self_address(Address address) {
  std::lock_guard lock(mutex_);
  members_.front().address = std::move(address);
}

}  // namespace gswarm::cluster
