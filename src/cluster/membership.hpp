// Membership: which nodes exist and where they listen, so that a send to
// "node2:device:1" reaches node2's server. Names resolve through what the
// operator configured, never by guessing (doc/cluster.md):
//   - this server itself (--node-name, --advertise-address);
//   - static peers: --peer NAME=HOST:PORT and --peers-file;
//   - etcd (--etcd), whose members come and go with their leases (etcd.hpp).
//
// Thread-safe.
#pragma once

#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <gswarm/error.hpp>

#include "cluster/target.hpp"

namespace gswarm::cluster {

struct Member {
  std::string name;
  Address address;
  std::string source;  // "self", "static" or "etcd"
  bool alive = true;   // static peers are taken as alive; etcd members while their lease lives
};

class Membership {
 public:
  Membership(std::string self_name, Address self_address);

  // "NAME=HOST:PORT". kBadRequest when malformed or when NAME is taken.
  [[nodiscard]] Result<void> add_static(std::string_view spec);
  // One peer per line, "NAME HOST:PORT" or "NAME=HOST:PORT"; '#' starts a comment.
  [[nodiscard]] Result<void> load_peers_file(const std::filesystem::path& path);
  // The same from the file's text; `origin` names it in errors.
  [[nodiscard]] Result<void> add_peers(std::string_view text, std::string_view origin);
  // Replaces every member that came from etcd.
  void set_discovered(std::vector<Member> members);

  // kNotFound naming the known nodes when `name` is not one.
  [[nodiscard]] Result<Member> resolve(std::string_view name) const;
  std::vector<Member> members() const;  // self first, then by name
  const std::string& self_name() const { return self_name_; }
  Address self_address() const;
  void set_self_address(Address address);

 private:
  [[nodiscard]] Result<void> add_static(std::string_view name, std::string_view address);

  const std::string self_name_;
  mutable std::mutex mutex_;
  std::vector<Member> members_;  // guarded by mutex_; [0] is this server
};

}  // namespace gswarm::cluster
