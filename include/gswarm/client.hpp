// gswarm::Client: a synchronous C++ client for the gswarm HTTP API (doc/http-api.md).
//
// Thread-safety: a Client is NOT thread-safe. It owns one keep-alive connection and
// one response buffer; use one Client per thread. Distinct Clients are independent.
//
// Errors: every call returns Result<T>. Server errors keep the server's code and
// message ({"detail", "code"} on the wire mapped through error_code_from_name).
// Client-side failures are ErrorCode::kConnection (cannot reach or talk to the
// server), kTimeout (no complete answer within the call's timeout), kProtocol (the
// server answered something that is not the documented shape) and kInvalidKey /
// kBadRequest for arguments rejected before anything is sent.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gswarm/error.hpp>

namespace gswarm {

inline constexpr std::string_view kDefaultServerAddress = "localhost:9015";

struct ClientOptions {
  // Limit for one control call: connect, send the request, read the whole answer.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  // Limit for move(), which returns only once the copy has finished.
  std::chrono::milliseconds move_timeout = std::chrono::minutes(10);
  // Sent as "Authorization: Bearer <token>" to a server started with --token;
  // empty: the GSWARM_TOKEN environment variable, when set.
  std::string token;
  // A PEM file of the certificates to trust for TLS (the CA that signed the
  // server's --tls-cert, or that certificate itself); empty: GSWARM_TLS_CA when
  // set. Given, or with an "https://" address, the client speaks TLS, checking
  // the server's certificate for the address's host (with neither CA: against
  // the system's certificates).
  std::string tls_ca;
};

// The token a client sends when none is given: GSWARM_TOKEN, or "".
std::string default_token();
// The certificates a client trusts when none are given: GSWARM_TLS_CA, or "".
std::string default_tls_ca();

// One copy of a value, as GET /location and GET /locations describe it.
struct ReplicaInfo {
  std::string location;                   // "dram", "pinned_dram", "device:N", "disk"
  std::uint64_t size = 0;                 // bytes
  double last_accessed = 0;               // unix seconds
  std::string copy_status;                // "complete", "copying" or "error"
  double copy_progress = 0;               // 0..1
  std::string read_pointer_json = "null";  // JSON text; "null" when there is none
};

struct LocationInfo {
  std::string key;
  std::string location;  // the primary replica's location
  std::vector<ReplicaInfo> replicas;
};

// A page of GET /locations: keys with their replicas, and where the next page
// starts (empty: this was the last).
struct LocationListing {
  std::vector<std::pair<std::string, std::vector<ReplicaInfo>>> keys;
  std::string next_cursor;
};

struct MoveResult {
  std::string key;
  std::string source;
  std::string destination;
  std::uint64_t size = 0;
  double seconds = 0;
  std::string read_pointer_json = "null";  // JSON text; "null" when there is none
};

// How send() copies: which replica, whether the source stays, how many connections.
struct SendOptions {
  std::string source_location;  // the replica to send ("device:0"); empty: the primary
  bool delete_source = false;   // release the key here once the target has it
  int streams = 0;              // connections for a large value; 0: the server's --streams
};

// The answer of send(): where the copy went and how it travelled.
struct SendResult {
  std::string key;
  std::string source;       // the replica copied from
  std::string node;         // target node (its address when the target was host:port)
  std::string address;      // the target server's host:port; empty for this node
  std::string destination;  // location on that node
  // "standard" to another server; on this node "nvlink", "p2p", "staged", "dma",
  // "memcpy", "file", "none" (already there)
  std::string method;
  std::uint64_t size = 0;
  double seconds = 0;
  int streams = 1;
  bool source_deleted = false;
};

// A member of the cluster, as GET /nodes lists it.
struct NodeInfo {
  std::string name;
  std::string address;  // host:port
  bool alive = true;
  std::string source;  // "self", "static" or "etcd"
};

// An asynchronous move (POST /move with "wait": false), as GET /operations/{id}
// reports it.
struct Operation {
  std::uint64_t id = 0;
  std::string kind;  // "move", or "send" for a send to another server
  std::string key;
  std::string source;  // empty until it runs
  std::string destination;
  std::string state;  // "queued", "running", "done", "failed", "cancelled"
  std::string phase;  // while running: "allocating", "copying", "verifying", "syncing"
                      // (to disk) or "finishing"
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  double seconds = 0;
  std::string error;  // the failure's message when state is "failed"
  std::string error_code;
};

// One copy of a data pool chunk.
struct ChunkLocation {
  std::string device;  // "dram", "pinned_dram", "device:N", "disk"
  std::string status;  // "complete", "copying" or "error"
  double progress = 1;
};

// A data pool chunk, as GET /api/v1/data/{id} describes it.
struct Chunk {
  std::string id;                 // "chunk_" and 16 hex digits
  std::string type;               // "input", "output" or "intermediate"
  std::string format;             // "tensor" unless given
  std::string source;             // what it was created from
  std::uint64_t size = 0;
  std::string checksum;           // "xxh3:<16 hex>" (xxhsum -H3 prints the same digits)
  std::string created_by;         // the node that created it
  double created_at = 0;          // unix seconds
  double last_accessed = 0;
  std::uint64_t access_count = 0;
  std::vector<std::string> references;  // names holding a reference
  std::vector<ChunkLocation> locations;  // primary first
};

// What a new chunk is made from and where it goes.
struct ChunkOptions {
  std::string device = "dram";  // dram, cpu, pinned_dram, disk, gpu, device:N
  std::string type = "input";   // input, output, intermediate
  std::string format = "tensor";
};

// The answer of a create: the new chunk, or (asynchronous creates) its task.
struct CreatedChunk {
  std::string id;
  std::uint64_t size = 0;
  std::string checksum;
  std::string device;
  std::uint64_t task_id = 0;  // the operation that made it (0 for uploads)
};

// A value read as raw bytes with its format tag ("json", "bytes", "pickle", ...).
struct BytesValue {
  std::string data;
  std::string format;
};

class Client {
 public:
  // `address` is "host:port", optionally prefixed by "http://" or "https://"
  // (TLS, see ClientOptions::tls_ca); a missing port
  // means 9015 and IPv6 hosts are written in brackets ("[::1]:9015"). Nothing is
  // sent until the first call; the connection is opened lazily and kept alive.
  explicit Client(std::string_view address = kDefaultServerAddress, ClientOptions options = {});
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The address as given, without any "http://" or "https://" prefix (used in messages).
  const std::string& address() const;

  // POST /write. `json_value` is the JSON text of the value (`"john"` with quotes
  // for a string, `{"a":1}`, `42`); text that is not valid JSON is kBadRequest.
  [[nodiscard]] Result<void> write(std::string_view key, std::string_view json_value,
                                   std::string_view location = "dram");

  // POST /write_extended with a raw application/octet-stream body, sent without
  // copying `data`. Returns the stored size in bytes.
  [[nodiscard]] Result<std::uint64_t> write_bytes(std::string_view key,
                                                  std::span<const std::byte> data,
                                                  std::string_view location = "dram",
                                                  std::string_view format = "bytes");
  [[nodiscard]] Result<std::uint64_t> write_bytes(std::string_view key, std::string_view data,
                                                  std::string_view location = "dram",
                                                  std::string_view format = "bytes");
  // The same with a value made of `parts` one after another (a header and an
  // array's bytes), sent without copying or joining them. `sent`, when given,
  // counts the bytes handed to the connection so far (another thread may read it).
  [[nodiscard]] Result<std::uint64_t> write_parts(std::string_view key,
                                                  std::span<const std::span<const std::byte>> parts,
                                                  std::string_view location = "dram",
                                                  std::string_view format = "bytes",
                                                  std::atomic<std::uint64_t>* sent = nullptr);

  // GET /read/{key}: the JSON text of a value stored as JSON in DRAM. A key held
  // elsewhere is kWrongLocation; a value stored as raw bytes is kWrongFormat.
  [[nodiscard]] Result<std::string> read(std::string_view key);

  // GET /read_extended/{key} as raw bytes (any format; DRAM only). For JSON values
  // the bytes are the JSON text and the format is "json".
  [[nodiscard]] Result<BytesValue> read_bytes(std::string_view key);

  // The same, received straight from the socket into the memory that
  // `place(size, format)` returns: exactly `size` bytes, asked for once the
  // answer's head has arrived (before any byte of the value is stored). Returns
  // the format. For large values read into memory the caller keeps. When
  // `place` cannot get the memory it returns an empty span: the read is kOverLimit.
  using PlaceFn = std::function<std::span<std::byte>(std::uint64_t size, std::string_view format)>;
  [[nodiscard]] Result<std::string> read_bytes_into(std::string_view key, const PlaceFn& place);

  // The same, handed to `consume` a piece at a time as the bytes arrive (at most
  // 4 MiB of the value is held here): for values larger than this process's
  // memory, or streamed on (`gswarm data read --raw`). An error from `consume`
  // ends the read with it. Returns the format.
  using ConsumeFn = std::function<Result<void>(std::span<const std::byte> piece)>;
  [[nodiscard]] Result<std::string> read_bytes_streamed(std::string_view key,
                                                        const ConsumeFn& consume);

  // DELETE /release/{key}: removes the key from every location.
  [[nodiscard]] Result<void> release(std::string_view key);

  // POST /move: copies the value to `destination`, switches to it and frees the
  // source; returns when done. Limited by ClientOptions::move_timeout.
  [[nodiscard]] Result<MoveResult> move(std::string_view key, std::string_view destination);

  // POST /move with "wait": false: queues the move and returns its operation id.
  [[nodiscard]] Result<std::uint64_t> start_move(std::string_view key, std::string_view destination);
  // GET /operations/{id}.
  [[nodiscard]] Result<Operation> operation(std::uint64_t id);
  // GET /operations: the running ones and the last finished ones, newest first.
  [[nodiscard]] Result<std::vector<Operation>> operations();
  // DELETE /operations/{id}: asks a queued or running move to stop; it then
  // ends "cancelled", its source intact and no partial copy left.
  [[nodiscard]] Result<void> cancel_operation(std::uint64_t id);

  // POST /send_extended: copies the key to `target` ("node:device:N" or
  // "host:port"), from the replica at `source_location` when given. The key keeps
  // its source replica.
  [[nodiscard]] Result<SendResult> send(std::string_view key, std::string_view target,
                                        std::string_view source_location = "");
  [[nodiscard]] Result<SendResult> send(std::string_view key, std::string_view target,
                                        const SendOptions& options);

  // GET /nodes: this server first, then the peers it knows.
  [[nodiscard]] Result<std::vector<NodeInfo>> nodes();

  // GET /location/{key}.
  [[nodiscard]] Result<LocationInfo> get_location(std::string_view key);

  // GET /locations: every key and its replicas, ordered by key.
  [[nodiscard]] Result<std::map<std::string, std::vector<ReplicaInfo>>> list_locations();
  // GET /locations?pattern=&limit=&cursor=: at most `limit` keys matching the
  // glob `pattern` (empty: every key), continuing after `cursor` (empty: from the
  // start). Page by page, a million keys without one huge answer.
  [[nodiscard]] Result<LocationListing> list_locations_page(std::string_view pattern,
                                                          std::size_t limit,
                                                          std::string_view cursor = "");

  // GET /stats: the JSON text of the "stats" object (fields in doc/http-api.md).
  [[nodiscard]] Result<std::string> stats();

  // POST /set_max_memory/{size}: `size` is bytes ("1024") or a size string ("32GB").
  // Returns the new DRAM limit in bytes.
  [[nodiscard]] Result<std::uint64_t> set_max_memory(std::string_view size);

  // ---- data pool (/api/v1/data) ----
  // GET /api/v1/data, filtered by device ("gpu": any GPU) and type when not empty.
  [[nodiscard]] Result<std::vector<Chunk>> list_chunks(std::string_view device = "",
                                                       std::string_view type = "");
  // POST /api/v1/data from a source the server reads itself: a file under its
  // --source-root, an http:// URL, or "key:NAME". Returns once it is stored
  // (limited by ClientOptions::move_timeout).
  [[nodiscard]] Result<CreatedChunk> create_chunk(std::string_view source,
                                                  const ChunkOptions& options = {});
  // The same without waiting: the chunk id and its task (GET /operations/{id}).
  [[nodiscard]] Result<CreatedChunk> start_create_chunk(std::string_view source,
                                                        const ChunkOptions& options = {});
  // POST /api/v1/data with the bytes as the body, sent without copying them.
  // `source` is recorded as the chunk's source; `sent`, when given, counts the
  // bytes handed to the connection so far (another thread may read it).
  [[nodiscard]] Result<CreatedChunk> upload_chunk(std::span<const std::byte> data,
                                                  const ChunkOptions& options = {},
                                                  std::string_view source = "",
                                                  std::atomic<std::uint64_t>* sent = nullptr);
  // GET /api/v1/data/{id}.
  [[nodiscard]] Result<Chunk> chunk(std::string_view id);
  // POST /api/v1/data/{id}/move: queues the move with `priority` ("high",
  // "normal", "low"); returns its operation id.
  [[nodiscard]] Result<std::uint64_t> move_chunk(std::string_view id, std::string_view device,
                                                 std::string_view priority = "normal");
  // POST /api/v1/data/{id}/transfer to `node` (a node name or host:port) and its
  // `device`; returns its operation id.
  [[nodiscard]] Result<std::uint64_t> transfer_chunk(std::string_view id, std::string_view node,
                                                     std::string_view device = "dram",
                                                     bool delete_source = false);
  // DELETE /api/v1/data/{id}: kConflict while referenced unless `force`.
  [[nodiscard]] Result<void> delete_chunk(std::string_view id, bool force = false);
  // POST /api/v1/data/{id}/references and DELETE .../references/{holder}.
  [[nodiscard]] Result<Chunk> add_chunk_reference(std::string_view id, std::string_view holder);
  [[nodiscard]] Result<Chunk> drop_chunk_reference(std::string_view id, std::string_view holder);

  // GET /health: the server's version string.
  [[nodiscard]] Result<std::string> health();

  // The body of the last HTTP answer this Client received: the JSON answer of a
  // control call or the error body of a failed call. Empty before the first answer
  // and after a successful read_bytes (its bytes are moved into the result).
  // Valid until the next call.
  const std::string& last_response_body() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes `text` for a path segment or query value: every byte except the
// unreserved characters A-Z a-z 0-9 - . _ ~ becomes %XX ('/' and '+' included).
std::string url_encode(std::string_view text);

// A value shared by a server on this machine without a copy: a read-only
// descriptor of exactly its bytes (doc/read-pointers.md). Owns the descriptor.
class SharedValue {
 public:
  SharedValue() = default;
  SharedValue(int fd, std::uint64_t offset, std::uint64_t size, std::string format)
      : fd_(fd), offset_(offset), size_(size), format_(std::move(format)) {}
  SharedValue(SharedValue&& other) noexcept;
  SharedValue& operator=(SharedValue&& other) noexcept;
  ~SharedValue();

  int fd() const { return fd_; }  // read-only: map it PROT_READ, or MAP_PRIVATE to write a copy
  std::uint64_t offset() const { return offset_; }  // of the value in the descriptor's file
  std::uint64_t size() const { return size_; }
  const std::string& format() const { return format_; }
  // Gives up ownership of the descriptor and returns it.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
  std::uint64_t offset_ = 0;
  std::uint64_t size_ = 0;
  std::string format_;
};

// The process that serves read pointers at a server's local socket, as the
// server's read pointers describe it ("socket", "pid", "uid").
struct LocalServer {
  std::string socket;     // "@gswarm-4242-...": '@' for an abstract name
  std::int64_t pid = -1;  // the server's process id
  std::int64_t uid = -1;  // the user it runs as
};

// Opens a read pointer: asks the server's local socket for `key`'s replica in
// `location` ("dram", "pinned_dram", "disk"; empty: wherever the key is). Works
// for processes of the server's user on the same machine; a server started with
// --token also wants `token` (empty: GSWARM_TOKEN).
//
// Before anything is sent, the process at the socket is checked (SO_PEERCRED)
// to be the one `server` names: an abstract name is free again once its server
// exits, and another local user could have taken it. kConnection when it is
// not (ask the server for a new read pointer), kBadRequest when `server` does
// not name its process.
[[nodiscard]] Result<SharedValue> open_read_pointer(const LocalServer& server,
                                                    std::string_view key,
                                                    std::string_view location = "",
                                                    std::string_view token = "");

}  // namespace gswarm
