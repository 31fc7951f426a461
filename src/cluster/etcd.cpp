#include "cluster/etcd.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cluster/peer_connection.hpp"
#include "core/base64.hpp"

namespace gswarm::cluster {
namespace {

using json = nlohmann::json;

// The first key after every key that starts with `prefix`.
std::string range_end(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(prefix.back() + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

// etcd's JSON gateway writes 64-bit numbers as strings.
std::int64_t number(const json& j, const char* field) {
  if (!j.contains(field)) return 0;
  const json& v = j[field];
  if (v.is_number()) return v.get<std::int64_t>();
  if (v.is_string()) return std::stoll(v.get<std::string>());
  return 0;
}

}  // namespace

EtcdMembership::EtcdMembership(Membership& membership, EtcdOptions options)
    : membership_(membership), options_(std::move(options)) {}

EtcdMembership::~EtcdMembership() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!lease_.empty()) (void)call("/v3/lease/revoke", json({{"ID", lease_}}).dump());
}

Result<std::string> EtcdMembership::call(const std::string& path, const std::string& body) {
  auto conn = PeerConnection::open(address_, options_.timeout);
  if (!conn) return tl::unexpected(conn.error());
  auto answer = conn->call("POST", path, body);
  if (!answer) return tl::unexpected(answer.error());
  if (answer->status != 200) {
    return make_error(ErrorCode::kPeerFailed, fmt::format("etcd at {} answered {} to {}: {}",
                                                          address_.text(), answer->status, path,
                                                          answer->body.substr(0, 200)));
  }
  return std::move(answer->body);
}

Result<void> EtcdMembership::start() {
  std::string_view url = options_.url;
  if (url.starts_with("http://")) url.remove_prefix(7);
  while (url.ends_with('/')) url.remove_suffix(1);
  if (options_.url.starts_with("https://") || url.find('/') != std::string_view::npos) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--etcd {}: give http://HOST:PORT of an etcd member",
                                  options_.url));
  }
  auto address = parse_address(url);
  if (!address) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--etcd {}: {}", options_.url, address.error().message));
  }
  address_ = std::move(*address);
  if (auto ok = register_self(); !ok) {
    return make_error(ok.error().code, fmt::format("--etcd: {}", ok.error().message));
  }
  if (auto ok = refresh(); !ok) return ok;
  thread_ = std::thread([this] { run(); });
  return {};
}

Result<void> EtcdMembership::register_self() {
  auto granted = call("/v3/lease/grant", json({{"TTL", options_.ttl.count()}}).dump());
  if (!granted) return tl::unexpected(granted.error());
  auto lease = json::parse(*granted, nullptr, false);
  if (!lease.is_object() || !lease.contains("ID")) {
    return make_error(ErrorCode::kPeerFailed, "etcd granted no lease: " + granted->substr(0, 200));
  }
  std::string id = lease["ID"].is_string() ? lease["ID"].get<std::string>()
                                           : std::to_string(number(lease, "ID"));
  const std::string name = membership_.self_name();
  const std::string value =
      json({{"name", name}, {"address", membership_.self_address().text()}}).dump();
  auto put = call("/v3/kv/put",
                  json({{"key", base64_encode(options_.prefix + "/nodes/" + name)},
                        {"value", base64_encode(value)},
                        {"lease", id}})
                      .dump());
  if (!put) return tl::unexpected(put.error());
  lease_ = std::move(id);
  return {};
}

Result<void> EtcdMembership::keep_alive() {
  auto answer = call("/v3/lease/keepalive", json({{"ID", lease_}}).dump());
  if (!answer) return tl::unexpected(answer.error());
  auto j = json::parse(*answer, nullptr, false);
  if (!j.is_object() || !j.contains("result") || number(j["result"], "TTL") <= 0) {
    // The lease ran out (etcd was out of reach for longer than the TTL).
    lease_.clear();
    return make_error(ErrorCode::kPeerFailed, "this node's etcd lease expired; registering again");
  }
  return {};
}

Result<NodesAnswer> parse_nodes_answer(std::string_view answer, std::string_view self) {
  auto j = json::parse(answer, nullptr, false);
  if (!j.is_object()) return make_error(ErrorCode::kPeerFailed, "etcd answered no JSON");
  auto kvs = j.find("kvs");
  if (kvs == j.end()) return NodesAnswer{};  // no node registered
  if (!kvs->is_array()) return make_error(ErrorCode::kPeerFailed, "etcd's kvs is not a list");
  NodesAnswer nodes;
  for (const auto& kv : *kvs) {
    if (!kv.is_object()) continue;
    auto encoded = kv.find("value");
    if (encoded == kv.end() || !encoded->is_string()) continue;
    auto value = base64_decode(encoded->get_ref<const std::string&>());
    if (!value) continue;
    auto record = json::parse(*value, nullptr, false);
    if (!record.is_object()) continue;
    auto name = record.find("name");
    auto address_text = record.find("address");
    if (name == record.end() || !name->is_string() || address_text == record.end() ||
        !address_text->is_string()) {
      continue;
    }
    const std::string& node = name->get_ref<const std::string&>();
    if (node == self) {
      nodes.self = true;
      continue;
    }
    if (!validate_node_name(node)) continue;
    auto address = parse_address(address_text->get_ref<const std::string&>());
    if (!address) continue;
    nodes.others.push_back(Member{node, std::move(*address), "etcd", true});
  }
  return nodes;
}

Result<void> EtcdMembership::refresh() {
  const std::string prefix = options_.prefix + "/nodes/";
  auto answer = call("/v3/kv/range", json({{"key", base64_encode(prefix)},
                                           {"range_end", base64_encode(range_end(prefix))}})
                                         .dump());
  if (!answer) return tl::unexpected(answer.error());
  auto found = parse_nodes_answer(*answer, membership_.self_name());
  if (!found) return tl::unexpected(found.error());
  std::map<std::string, Member> listed;
  for (auto& member : found->others) listed.emplace(member.name, std::move(member));
  for (auto& [name, member] : seen_) {
    if (listed.contains(name)) continue;
    // Gone from etcd: dead only if it does not answer either (a node once found
    // dead is not asked again until it registers).
    member.alive = member.alive && answers(member.address);
  }
  for (auto& [name, member] : listed) seen_[name] = std::move(member);
  std::vector<Member> members;
  for (const auto& [name, member] : seen_) members.push_back(member);
  membership_.set_discovered(std::move(members));
  if (!found->self && !lease_.empty()) {
    // etcd lost this node's key (restarted empty, or its lease ran out while
    // etcd was stopped): register again now rather than at the next beat.
    spdlog::info("etcd: this node's key is gone; registering again");
    lease_.clear();
    return register_self();
  }
  return {};
}

bool EtcdMembership::answers(const Address& address) const {
  if (options_.answers) return options_.answers(address);
  return answers_health(address, std::chrono::milliseconds(1000));
}

void EtcdMembership::run() {
  auto next_beat = std::chrono::steady_clock::now();
  auto last_warning = std::chrono::steady_clock::time_point{};
  auto warn = [&](const Error& e) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_warning < std::chrono::seconds(10)) return;
    last_warning = now;
    spdlog::warn("etcd: {}", e.message);
  };
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (wake_.wait_for(lock, options_.refresh, [this] { return stopping_; })) return;
    }
    if (std::chrono::steady_clock::now() >= next_beat) {
      auto ok = lease_.empty() ? register_self() : keep_alive();
      if (!ok) {
        warn(ok.error());
        if (lease_.empty()) {
          if (auto again = register_self(); !again) warn(again.error());
        }
      }
      next_beat = std::chrono::steady_clock::now() + options_.ttl / 3;
    }
    if (auto ok = refresh(); !ok) warn(ok.error());
  }
}

}  // namespace gswarm::cluster
