// EtcdMembership: this server's entry in etcd and everyone else's, for
// deployments that outgrow a static peer list (doc/cluster.md). Talks to etcd's
// v3 HTTP/JSON gateway (Debian's etcd-server), so there is no client library.
//
// The server registers under PREFIX/nodes/NAME = {"name", "address"} with a
// lease of `ttl` that a background thread keeps alive (every ttl/3); a node
// that dies drops out when its lease expires. The same thread reads every
// registered node every `refresh` into the Membership (source "etcd"). A node
// seen before that is gone from etcd is asked at once whether it still answers
// (`answers`, its /health): etcd restarted empty, or resumed after a stop longer
// than the lease, drops every key while the servers live on, so a missing key
// alone does not make a node dead; one that does not answer stays listed, as not
// alive. A server that finds its own key missing registers again at once. When
// etcd cannot be reached the last view is kept and the server says so in its
// log, and once it can be reached again the server registers anew.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gswarm/error.hpp>

#include "cluster/membership.hpp"
#include "cluster/target.hpp"

namespace gswarm::cluster {

struct EtcdOptions {
  std::string url;                      // http://HOST:PORT of an etcd member
  std::string prefix = "/gswarm";       // keys live under PREFIX/nodes/
  std::chrono::seconds ttl{10};         // lease: how long a dead node stays listed as alive
  std::chrono::milliseconds refresh{1000};
  std::chrono::milliseconds timeout{3000};  // one call to etcd
  // Whether the node at this address answers now (the server asks its /health,
  // briefly). Unset: plain HTTP, GET /health within a second.
  std::function<bool(const Address&)> answers;
};

// What etcd's answer to a range request over the cluster's prefix names.
struct NodesAnswer {
  std::vector<Member> others;  // every node but this one
  bool self = false;           // whether this node's own key is there
};

// The nodes in etcd's answer to a range request over the cluster's prefix
// (records of {"name", "address"}, base64 in "kvs"), `self` apart. Records that
// are not well-formed are skipped; an answer that is not JSON is kPeerFailed.
[[nodiscard]] Result<NodesAnswer> parse_nodes_answer(std::string_view answer,
                                                     std::string_view self);

class EtcdMembership {
 public:
  EtcdMembership(Membership& membership, EtcdOptions options);
  ~EtcdMembership();  // revokes the lease, so that others see this node leave at once
  EtcdMembership(const EtcdMembership&) = delete;
  EtcdMembership& operator=(const EtcdMembership&) = delete;

  // Registers this node and reads the others once. kBadRequest for a bad URL,
  // kPeerFailed when etcd cannot be reached (the server does not start then).
  [[nodiscard]] Result<void> start();

 private:
  [[nodiscard]] Result<void> register_self();
  [[nodiscard]] Result<void> keep_alive();
  [[nodiscard]] Result<void> refresh();
  bool answers(const Address& address) const;
  void run();
  [[nodiscard]] Result<std::string> call(const std::string& path, const std::string& body);

  Membership& membership_;
  const EtcdOptions options_;
  Address address_;
  std::string lease_;  // empty: not registered
  std::map<std::string, Member> seen_;  // every node read from etcd, by name
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace gswarm::cluster
