#include "cli/data_commands.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <atomic>
#include <chrono>
#include <optional>
#include <cstdio>
#include <thread>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gswarm/client.hpp>
#include <nlohmann/json.hpp>

#include "cli/token_option.hpp"
#include "core/location.hpp"
#include "core/size.hpp"

namespace gswarm::cli {
namespace {

using json = nlohmann::json;

// Every argument any data command takes; each command owns one instance and binds
// only the fields it uses.
struct Args {
  std::string host{kDefaultServerAddress};
  bool json = false;
  TokenArgs token;
  std::string tls_ca;  // --tls-ca, or GSWARM_TLS_CA
  std::string key;
  std::string value;
  std::string location = "dram";
  std::string destination;
  std::string target;
  std::string source;
  std::string source_device;
  std::string target_node;
  std::string target_device;
  bool delete_source = false;
  int streams = 0;
  // data pool
  std::string chunk_id;
  std::string device;
  std::string type;
  std::string format = "tensor";
  std::string priority = "normal";
  bool force = false;
};

// A command's work: talks to the server and returns the human-readable text to
// print (without a final newline). With --json the server's answer is printed
// instead, so a handler never needs to know about --json.
using Handler = Result<std::string> (*)(Client&, const Args&);
using Binder = void (*)(CLI::App&, Args&);

struct CommandSpec {
  const char* name;
  const char* description;
  Binder bind;
  Handler run;
};

std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

// The canonical wire name of a location given on the command line, so a typo is
// caught before anything is sent.
Result<std::string> checked_location(const std::string& text) {
  auto location = Location::parse(text);
  if (!location) return tl::unexpected(location.error());
  return location->name();
}

Result<std::string> checked_device(const std::string& text, const char* what) {
  auto location = Location::parse(text);
  if (!location || location->kind() != LocationKind::kDevice) {
    return make_error(ErrorCode::kInvalidLocation,
                      fmt::format("{} must be a GPU device like device:0, not '{}'", what, text));
  }
  return location->name();
}

std::string progress_text(const ReplicaInfo& replica) {
  if (replica.copy_status == "copying") {
    return fmt::format("copying {:.0f}%", replica.copy_progress * 100);
  }
  return replica.copy_status;
}

// ---- handlers ---------------------------------------------------------------------

Result<std::string> run_write(Client& client, const Args& args) {
  auto location = checked_location(args.location);
  if (!location) return tl::unexpected(location.error());
  // The command line's VALUE is text: it is stored as a JSON string.
  if (auto written = client.write(args.key, dump(json(args.value)), *location); !written) {
    return tl::unexpected(written.error());
  }
  return fmt::format("Wrote '{}' to {}", args.key, *location);
}

Result<std::string> run_read(Client& client, const Args& args) {
  auto value = client.read(args.key);
  if (!value) return tl::unexpected(value.error());
  json parsed = json::parse(*value, nullptr, false);
  if (parsed.is_string()) return parsed.get<std::string>();
  return parsed.is_discarded() ? *value : dump(parsed, 2);
}

Result<std::string> run_release(Client& client, const Args& args) {
  if (auto released = client.release(args.key); !released) return tl::unexpected(released.error());
  return fmt::format("Released '{}'", args.key);
}

// "[#########           ] 45%  1.2 GB / 2.7 GB"
std::string progress_bar(std::uint64_t done, std::uint64_t total) {
  constexpr int kWidth = 30;
  const double share = total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total);
  const int filled = static_cast<int>(share * kWidth);
  return fmt::format("[{}{}] {:3.0f}%  {} / {}", std::string(filled, '#'),
                     std::string(kWidth - filled, ' '), share * 100, format_size(done),
                     format_size(total));
}

constexpr std::uint64_t kShowProgressFrom = 64ull << 20;

// Polls operation `id` until it ends, drawing its progress on stderr when that
// is a terminal (for operations of at least `show_from` bytes); the line is
// cleared when it ends. A failed operation is its error.
Result<Operation> wait_for_operation(Client& client, std::uint64_t id, std::uint64_t show_from = 0) {
  const bool terminal = ::isatty(STDERR_FILENO) != 0;
  bool drawn = false;
  auto delay = std::chrono::milliseconds(2);
  while (true) {
    auto op = client.operation(id);
    if (!op) return tl::unexpected(op.error());
    if (op->state == "failed" || op->state == "done") {
      if (drawn) fmt::print(stderr, "\r\033[K");
      if (op->state == "failed") return make_error(error_code_from_name(op->error_code), op->error);
      return op;
    }
    if (terminal && op->bytes_total >= show_from) {
      fmt::print(stderr, "\r{} {}", progress_bar(op->bytes_done, op->bytes_total), op->state);
      std::fflush(stderr);
      drawn = true;
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(200));
  }
}

// Starts the move on the server's mover threads and polls it, drawing a progress
// line on stderr when that is a terminal.
Result<std::string> run_move(Client& client, const Args& args) {
  auto destination = checked_location(args.destination);
  if (!destination) return tl::unexpected(destination.error());
  auto id = client.start_move(args.key, *destination);
  if (!id) return tl::unexpected(id.error());
  auto op = wait_for_operation(client, *id);
  if (!op) return tl::unexpected(op.error());
  if (op->source == op->destination) return fmt::format("'{}' is already in {}", args.key, op->destination);
  return fmt::format("Moved '{}' from {} to {} ({} in {:.3f} s)", args.key, op->source,
                     op->destination, format_size(op->bytes_total), op->seconds);
}

Result<std::string> run_get_location(Client& client, const Args& args) {
  auto info = client.get_location(args.key);
  if (!info) return tl::unexpected(info.error());
  std::string out = fmt::format("Key:      {}\nPrimary:  {}\n", info->key, info->location);
  out += fmt::format("  {:<12} {:>10}  {:<9} {:>8}", "LOCATION", "SIZE", "STATUS", "PROGRESS");
  for (const auto& replica : info->replicas) {
    out += fmt::format("\n  {:<12} {:>10}  {:<9} {:>7.0f}%", replica.location,
                       format_size(replica.size), replica.copy_status,
                       replica.copy_progress * 100);
  }
  for (const auto& replica : info->replicas) {
    if (replica.read_pointer_json != "null") {
      out += fmt::format("\nRead pointer ({}): {}", replica.location, replica.read_pointer_json);
    }
  }
  return out;
}

Result<std::string> run_list_locations(Client& client, const Args&) {
  auto all = client.list_locations();
  if (!all) return tl::unexpected(all.error());
  if (all->empty()) return std::string("No keys stored");
  std::string out;
  for (const auto& [key, replicas] : *all) {
    std::vector<std::string> parts;
    for (const auto& r : replicas) {
      parts.push_back(fmt::format("{} ({}, {})", r.location, format_size(r.size), progress_text(r)));
    }
    if (!out.empty()) out += '\n';
    out += fmt::format("{}: {}", key, fmt::join(parts, ", "));
  }
  return out;
}

std::uint64_t size_field(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number() ? it->get<std::uint64_t>() : 0;
}

double number_field(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string gpu_lines(const json& gpus) {
  if (!gpus.is_object() || gpus.empty()) return "none";
  std::string out;
  for (const auto& [device, info] : gpus.items()) {
    out += fmt::format("\n  {}: ", device);
    if (info.is_object() && info.contains("used") && info.contains("total")) {
      out += fmt::format("{} / {}", format_size(size_field(info, "used")),
                         format_size(size_field(info, "total")));
    } else {
      out += dump(info);
    }
  }
  return out;
}

Result<std::string> run_stats(Client& client, const Args&) {
  auto text = client.stats();
  if (!text) return tl::unexpected(text.error());
  json s = json::parse(*text, nullptr, false);
  std::string out = fmt::format(
      "DRAM:           {} / {} ({:.1f}%)\n", format_size(size_field(s, "current_dram_size")),
      format_size(size_field(s, "max_dram_size")), number_field(s, "dram_usage_percent"));
  out += fmt::format("Pinned memory:  {} / {}\n", format_size(size_field(s, "current_pinned_size")),
                     format_size(size_field(s, "max_pinned_size")));
  out += fmt::format("GPU memory:     {}\n", gpu_lines(s.value("gpu_stats", json::object())));
  std::uint64_t max_disk = size_field(s, "max_disk_size");
  std::uint64_t disk_keys = size_field(s, "disk_keys");
  out += fmt::format("Disk:           {}{} in {} key{} ({})\n",
                     format_size(size_field(s, "disk_usage")),
                     max_disk > 0 ? " / " + format_size(max_disk) : std::string(), disk_keys,
                     disk_keys == 1 ? "" : "s", s.value("disk_path", std::string("?")));
  std::vector<std::string> counts;
  const json location_counts = s.value("location_counts", json::object());
  for (const auto& [location, keys] : location_counts.items()) {
    counts.push_back(fmt::format("{} {}", location, dump(keys)));
  }
  out += fmt::format("Keys:           {} total{}{}\n", size_field(s, "total_keys"),
                     counts.empty() ? "" : ": ", fmt::join(counts, ", "));
  const json moves = s.value("active_moves", json(0));
  out += fmt::format("Active moves:   {}\n", moves.is_array() ? std::to_string(moves.size()) : dump(moves));
  const json memory = s.value("memory_info", json::object());
  out += fmt::format("System memory:  {} / {} used ({:.1f}%), {} available",
                     format_size(size_field(memory, "used")),
                     format_size(size_field(memory, "total")), number_field(memory, "percent"),
                     format_size(size_field(memory, "available")));
  return out;
}

std::string sent_line(const SendResult& sent) {
  if (sent.method == "none") {
    return fmt::format("'{}' is already on {}:{}", sent.key, sent.node, sent.destination);
  }
  double gbps = sent.seconds > 0 ? static_cast<double>(sent.size) / sent.seconds / 1e9 : 0;
  std::string where = fmt::format("{}:{}", sent.node, sent.destination);
  if (!sent.address.empty() && sent.address != sent.node) where += " at " + sent.address;
  std::string line = fmt::format("Sent '{}' from {} to {} via {} ({} in {:.3f} s, {:.2f} GB/s",
                                 sent.key, sent.source, where, sent.method, format_size(sent.size),
                                 sent.seconds, gbps);
  if (sent.streams > 1) line += fmt::format(", {} streams", sent.streams);
  line += ")";
  if (sent.source_deleted) line += "; the source copy was released";
  return line;
}

// How every connection a command opens reaches the server.
ClientOptions client_options(const Args& args) {
  return ClientOptions{.token = args.token.token, .tls_ca = args.tls_ca};
}

// Sends, and on a terminal draws the send's progress on stderr while a large
// value travels (read from the server's record of it, GET /operations).
Result<SendResult> send_showing_progress(Client& client, const Args& args,
                                         const std::string& target, const SendOptions& options) {
  if (::isatty(STDERR_FILENO) == 0) return client.send(args.key, target, options);
  std::optional<Result<SendResult>> result;
  std::atomic<bool> done{false};
  std::thread worker([&] {
    result.emplace(client.send(args.key, target, options));
    done = true;
  });
  Client watcher(args.host, client_options(args));
  bool drawn = false;
  while (!done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (done) break;
    auto operations = watcher.operations();
    if (!operations) continue;
    for (const auto& op : *operations) {
      if (op.kind == "send" && op.key == args.key && op.state == "running" &&
          op.bytes_total >= kShowProgressFrom) {
        fmt::print(stderr, "\r{}", progress_bar(op.bytes_done, op.bytes_total));
        std::fflush(stderr);
        drawn = true;
        break;
      }
    }
  }
  worker.join();
  if (drawn) fmt::print(stderr, "\r\033[K");
  return std::move(*result);
}

Result<std::string> run_send(Client& client, const Args& args) {
  if (!args.source.empty()) {
    if (auto source = checked_location(args.source); !source) return tl::unexpected(source.error());
  }
  SendOptions options{args.source, args.delete_source, args.streams};
  auto sent = send_showing_progress(client, args, args.target, options);
  if (!sent) return tl::unexpected(sent.error());
  return sent_line(*sent);
}

Result<std::string> run_nodes(Client& client, const Args& args) {
  auto nodes = client.nodes();
  if (!nodes) return tl::unexpected(nodes.error());
  std::string out = fmt::format("{:<24} {:<28} {:<8} {}", "NODE", "ADDRESS", "ALIVE", "SOURCE");
  for (const auto& n : *nodes) {
    out += fmt::format("\n{:<24} {:<28} {:<8} {}", n.name, n.address, n.alive ? "yes" : "no",
                       n.source);
  }
  return out;
}

Result<std::string> run_send_gpu(Client& client, const Args& args) {
  auto source = checked_device(args.source_device, "SOURCE_DEVICE");
  if (!source) return tl::unexpected(source.error());
  auto target = checked_device(args.target_device, "TARGET_DEVICE");
  if (!target) return tl::unexpected(target.error());
  SendOptions options;
  options.source_location = *source;
  auto sent = send_showing_progress(client, args, args.target_node + ":" + *target, options);
  if (!sent) return tl::unexpected(sent.error());
  return sent_line(*sent);
}

// ---- data pool ----------------------------------------------------------------------

std::string locations_text(const Chunk& c) {
  std::vector<std::string> parts;
  for (const auto& l : c.locations) {
    parts.push_back(l.status == "complete" ? l.device
                                           : fmt::format("{} ({} {:.0f}%)", l.device, l.status,
                                                         l.progress * 100));
  }
  return parts.empty() ? std::string("-") : fmt::format("{}", fmt::join(parts, ","));
}

std::string time_text(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

Result<std::string> run_list(Client& client, const Args& args) {
  auto chunks = client.list_chunks(args.device, args.type);
  if (!chunks) return tl::unexpected(chunks.error());
  if (chunks->empty()) return std::string("No chunks");
  std::string out = fmt::format("{:<23} {:<12} {:<10} {:>10}  {:<16} {:>4}  {}", "CHUNK_ID", "TYPE",
                                "FORMAT", "SIZE", "DEVICE", "REFS", "CREATED");
  for (const auto& c : *chunks) {
    out += fmt::format("\n{:<23} {:<12} {:<10} {:>10}  {:<16} {:>4}  {}", c.id, c.type, c.format,
                       format_size(c.size), locations_text(c), c.references.size(),
                       time_text(c.created_at));
  }
  out += fmt::format("\n{} chunk{}", chunks->size(), chunks->size() == 1 ? "" : "s");
  return out;
}

std::string created_line(const CreatedChunk& c, const Args& args, std::string_view how) {
  return fmt::format("Created {} ({}, {}, {}) on {}{}; checksum {}", c.id, format_size(c.size),
                     args.type, args.format, c.device, how, c.checksum);
}

bool is_server_source(std::string_view source) {
  return source.starts_with("http://") || source.starts_with("https://") ||
         source.starts_with("key:") || source.starts_with("file://");
}

bool is_loopback_host(std::string_view address) {
  return address.starts_with("localhost") || address.starts_with("127.") ||
         address.starts_with("[::1]");
}

// A local file uploaded as the request body, mapped rather than read.
Result<CreatedChunk> upload_file(Client& client, const std::string& path, const ChunkOptions& options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(ErrorCode::kBadRequest, fmt::format("'{}' is not a regular file", path));
  }
  const std::size_t size = static_cast<std::size_t>(st.st_size);
  void* mapped = size == 0 ? nullptr : ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("cannot map '{}': {}", path, std::strerror(errno)));
  }
  if (mapped != nullptr) ::madvise(mapped, size, MADV_SEQUENTIAL);
  const std::span<const std::byte> bytes{static_cast<const std::byte*>(mapped), size};
  Result<CreatedChunk> created;
  if (::isatty(STDERR_FILENO) != 0 && size >= kShowProgressFrom) {
    // The upload on a thread of its own; this one draws how far it got.
    std::atomic<std::uint64_t> sent{0};
    std::atomic<bool> done{false};
    std::thread worker([&] {
      created = client.upload_chunk(bytes, options, path, &sent);
      done = true;
    });
    while (!done) {
      fmt::print(stderr, "\r{} uploading", progress_bar(sent.load(), size));
      std::fflush(stderr);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    worker.join();
    fmt::print(stderr, "\r\033[K");
  } else {
    created = client.upload_chunk(bytes, options, path);
  }
  if (mapped != nullptr) ::munmap(mapped, size);
  return created;
}

// The server reads the source itself when it can (URLs, keys, files under its
// --source-root); a local file it cannot read is uploaded.
Result<std::string> run_create(Client& client, const Args& args) {
  const ChunkOptions options{args.device.empty() ? "dram" : args.device, args.type, args.format};
  std::string source = args.source;
  std::error_code ec;
  const bool local_file = !is_server_source(source) && std::filesystem::is_regular_file(source, ec);
  if (local_file) source = std::filesystem::absolute(source, ec).lexically_normal().string();
  if (!local_file || is_loopback_host(client.address())) {
    const std::uint64_t size = local_file ? std::filesystem::file_size(source, ec) : 0;
    Result<CreatedChunk> created;
    if (::isatty(STDERR_FILENO) != 0 && size >= kShowProgressFrom) {
      created = client.start_create_chunk(source, options);
      if (created) {
        auto op = wait_for_operation(client, created->task_id, kShowProgressFrom);
        if (op) {
          auto chunk = client.chunk(created->id);
          if (!chunk) return tl::unexpected(chunk.error());
          created->size = chunk->size;
          created->checksum = chunk->checksum;
          created->device = chunk->locations.empty() ? "" : chunk->locations.front().device;
        } else {
          created = tl::unexpected(op.error());
        }
      }
    } else {
      created = client.create_chunk(source, options);
    }
    if (created) return created_line(*created, args, "");
    const auto code = created.error().code;
    const bool unreadable = code == ErrorCode::kForbidden || code == ErrorCode::kNotFound;
    if (!local_file && unreadable && !is_server_source(source)) {
      return make_error(code, fmt::format("no file '{}' on this machine, and the server cannot "
                                          "read it either: {}",
                                          source, created.error().message));
    }
    if (!local_file || !unreadable) return tl::unexpected(created.error());
  }
  auto uploaded = upload_file(client, source, options);
  if (!uploaded) return tl::unexpected(uploaded.error());
  return created_line(*uploaded, args, " (uploaded)");
}

Result<std::string> run_info(Client& client, const Args& args) {
  auto c = client.chunk(args.chunk_id);
  if (!c) return tl::unexpected(c.error());
  std::string out = fmt::format(
      "Chunk:        {}\nType:         {}\nFormat:       {}\nSize:         {} ({} bytes)\n"
      "Checksum:     {}\nSource:       {}\nCreated:      {} by {}\nLast access:  {} "
      "({} access{})\nReferences:   {}\nLocations:",
      c->id, c->type, c->format, format_size(c->size), c->size, c->checksum, c->source,
      time_text(c->created_at), c->created_by, time_text(c->last_accessed), c->access_count,
      c->access_count == 1 ? "" : "es", c->references.empty() ? std::string("none") : fmt::format("{}", fmt::join(c->references, ", ")));
  for (const auto& l : c->locations) {
    out += fmt::format("\n  {:<12} {:<9} {:>4.0f}%", l.device, l.status, l.progress * 100);
  }
  return out;
}

Result<std::string> run_chunk_move(Client& client, const Args& args) {
  auto task = client.move_chunk(args.chunk_id, args.destination, args.priority);
  if (!task) return tl::unexpected(task.error());
  auto op = wait_for_operation(client, *task, kShowProgressFrom);
  if (!op) return tl::unexpected(op.error());
  if (op->source == op->destination) {
    return fmt::format("{} is already on {}", args.chunk_id, op->destination);
  }
  return fmt::format("Moved {} from {} to {} ({} in {:.3f} s, priority {})", args.chunk_id,
                     op->source, op->destination, format_size(op->bytes_total), op->seconds,
                     args.priority);
}

// "node2:gpu" → ("node2", "gpu"); "node2" → ("node2", "dram");
// "host:9015:disk" → ("host:9015", "disk"); "node2:device:1" → ("node2", "device:1").
std::pair<std::string, std::string> split_node_device(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) return {text, "dram"};
  std::string node = text.substr(0, colon);
  std::string rest = text.substr(colon + 1);
  const auto next = rest.find(':');
  const std::string first = rest.substr(0, next);
  if (!first.empty() && std::all_of(first.begin(), first.end(), ::isdigit)) {
    node += ":" + first;
    rest = next == std::string::npos ? "" : rest.substr(next + 1);
  }
  return {node, rest.empty() ? "dram" : rest};
}

Result<std::string> run_transfer(Client& client, const Args& args) {
  auto [node, device] = split_node_device(args.target);
  auto task = client.transfer_chunk(args.chunk_id, node, device, args.delete_source);
  if (!task) return tl::unexpected(task.error());
  auto op = wait_for_operation(client, *task, kShowProgressFrom);
  if (!op) return tl::unexpected(op.error());
  std::string line = fmt::format("Transferred {} from {} to {}:{} ({} in {:.3f} s)", args.chunk_id,
                                 op->source, node, op->destination, format_size(op->bytes_total),
                                 op->seconds);
  if (args.delete_source) {
    auto left = client.chunk(args.chunk_id);
    line += left ? "; the source chunk was kept (it changed meanwhile)"
                 : "; the source chunk was deleted";
  }
  return line;
}

Result<std::string> run_delete(Client& client, const Args& args) {
  if (auto ok = client.delete_chunk(args.chunk_id, args.force); !ok) {
    return tl::unexpected(ok.error());
  }
  return fmt::format("Deleted {}", args.chunk_id);
}

// ---- arguments ----------------------------------------------------------------------

void add_key(CLI::App& cmd, Args& args, const char* what) {
  cmd.add_option("KEY", args.key, what)->required();
}

constexpr const char* kLocationHelp = "dram, pinned_dram, device:X or disk";

const CommandSpec kCommands[] = {
    {"write", "Write a key-value pair to a storage location",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to write");
       cmd.add_option("VALUE", args.value, "Value to write (stored as a JSON string)")->required();
       cmd.add_option("-l,--location", args.location,
                      fmt::format("Storage location: {}", kLocationHelp))
           ->capture_default_str();
     },
     run_write},
    {"read", "Read a value by key (DRAM only; move-data it to dram first)",
     [](CLI::App& cmd, Args& args) { add_key(cmd, args, "Key to read"); }, run_read},
    {"release", "Remove a key from every storage location",
     [](CLI::App& cmd, Args& args) { add_key(cmd, args, "Key to release"); }, run_release},
    {"move-data", "Move a value between storage locations",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to move");
       cmd.add_option("DESTINATION", args.destination, fmt::format("Target location: {}", kLocationHelp))
           ->required();
     },
     run_move},
    {"get-location", "Show where a key's data is: primary location, replicas, copy status",
     [](CLI::App& cmd, Args& args) { add_key(cmd, args, "Key to query"); }, run_get_location},
    {"list-locations", "List every key with its locations, sizes and copy status",
     [](CLI::App&, Args&) {}, run_list_locations},
    {"stats", "Show storage statistics for every location",
     [](CLI::App&, Args&) {}, run_stats},
    {"send", "Send a key to another server (GPU-to-GPU with --source)",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to send");
       cmd.add_option("TARGET", args.target,
                      "Target: host:port (e.g. localhost:9016), host:port:LOCATION, a node name, "
                      "or node:LOCATION (e.g. node2:device:1, node2:disk)")
           ->required();
       cmd.add_option("-s,--source", args.source,
                      "Source location for GPU transfers (e.g. device:0)");
       cmd.add_flag("--delete-source", args.delete_source,
                    "Release the key here once the target has acknowledged it");
       cmd.add_option("--streams", args.streams,
                      "Connections for a large value (default: the server's --streams)")
           ->check(CLI::Range(1, 64));
     },
     run_send},
    {"send-gpu", "Send a key directly from a GPU to a GPU on another node",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to send");
       cmd.add_option("SOURCE_DEVICE", args.source_device, "Source GPU device (e.g. device:0)")
           ->required();
       cmd.add_option("TARGET_NODE", args.target_node, "Target node name")->required();
       cmd.add_option("TARGET_DEVICE", args.target_device, "Target GPU device (e.g. device:1)")
           ->required();
     },
     run_send_gpu},
    {"list", "List data pool chunks (filter by device and type)",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("-d,--device", args.device, "Filter by device: dram, pinned_dram, disk, gpu, device:N");
       cmd.add_option("-t,--type", args.type, "Filter by data type: input, output, intermediate");
     },
     run_list},
    {"create", "Create a data pool chunk from a file, an http:// URL or key:NAME",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("-s,--source", args.source,
                      "Data source: a file (read by the server under its --source-root, else "
                      "uploaded), an http:// URL, or key:NAME")
           ->required();
       args.device = "dram";
       cmd.add_option("-d,--device", args.device,
                      "Target device: dram, pinned_dram, disk, gpu (most free memory), device:N")
           ->capture_default_str();
       args.type = "input";
       cmd.add_option("-t,--type", args.type, "Data type: input, output, intermediate")
           ->capture_default_str();
       cmd.add_option("-f,--format", args.format, "Data format")->capture_default_str();
     },
     run_create},
    {"info", "Show a data pool chunk: size, checksum, locations, references",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("CHUNK_ID", args.chunk_id, "Data chunk ID")->required();
     },
     run_info},
    {"move", "Move a data pool chunk between devices",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("CHUNK_ID", args.chunk_id, "Data chunk ID")->required();
       cmd.add_option("-t,--to", args.destination,
                      "Target device: dram, pinned_dram, disk, gpu, device:N")
           ->required();
       cmd.add_option("-p,--priority", args.priority, "Priority: high, normal, low")
           ->capture_default_str()
           ->check(CLI::IsMember({"high", "normal", "low"}));
     },
     run_chunk_move},
    {"transfer", "Transfer a data pool chunk to another node",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("CHUNK_ID", args.chunk_id, "Data chunk ID")->required();
       cmd.add_option("-t,--to", args.target,
                      "Target node:device (e.g. node2:gpu, node2:disk, host:9015:dram)")
           ->required();
       cmd.add_flag("--delete-source", args.delete_source,
                    "Delete the chunk here once the target has acknowledged it");
     },
     run_transfer},
    {"delete", "Delete a data pool chunk",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("CHUNK_ID", args.chunk_id, "Data chunk ID")->required();
       cmd.add_flag("-f,--force", args.force, "Delete even if referenced");
     },
     run_delete},
    {"nodes", "List the nodes this server knows: name, address, liveness, where from",
     [](CLI::App&, Args&) {}, run_nodes},
};

[[noreturn]] void fail(std::string message) {
  // One line, whatever the server put in its message.
  for (auto& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  fmt::print(stderr, "error: {}\n", message);
  std::fflush(stderr);
  throw CLI::RuntimeError(1);
}

// The shared part of every command: --host and --json, running the handler,
// printing its result or its error.
void add_command(CLI::App& data, const CommandSpec& spec) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = data.add_subcommand(spec.name, spec.description);
  spec.bind(*cmd, *args);
  cmd->add_option("--host", args->host, "Server address")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the server's JSON answer");
  add_token_options(*cmd, args->token, "Token of a server started with --token");
  cmd->add_option("--tls-ca", args->tls_ca,
                  "PEM file of the certificates to trust: talk TLS to a server started with "
                  "--tls-cert (an https:// --host does too, trusting the system's certificates)")
      ->envname("GSWARM_TLS_CA");
  cmd->callback([args, run = spec.run] {
    auto token = resolve_token(args->token, /*warn_if_shared=*/false);
    if (!token) fail(token.error().message);
    args->token = {*token, ""};  // resolved, for every connection the command opens
    Client client(args->host, client_options(*args));
    auto text = run(client, *args);
    if (!text) fail(text.error().message);
    if (args->json) {
      json answer = json::parse(client.last_response_body(), nullptr, false);
      fmt::print("{}\n", answer.is_discarded() ? client.last_response_body() : dump(answer, 2));
    } else {
      fmt::print("{}\n", *text);
    }
  });
}

}  // namespace

void add_data_commands(CLI::App& data) {
  for (const auto& spec : kCommands) add_command(data, spec);
}

}  // namespace gswarm::cli
