#include "cli/data_commands.hpp"

#include <fcntl.h>
#include <signal.h>
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
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gswarm/client.hpp>
#include <nlohmann/json.hpp>

#include "cli/files.hpp"
#include "cli/progress.hpp"
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
  int port = 0;  // --port: replaces the port of --host
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
  // KV values in and out
  std::vector<std::string> keys;              // release
  const CLI::Option* value_option = nullptr;  // write's VALUE: given or not ("" is a value)
  std::string file;                           // write --file (- for standard input)
  std::string value_format = "bytes";
  std::string output;           // read --output
  bool raw = false;             // read --raw
  std::string pattern;          // list-locations
  std::size_t limit = 0;        // list-locations --limit (0: all)
  std::string size;             // set-max-memory
  std::uint64_t operation = 0;  // cancel
  // A handler whose answer is not the server's last one (several calls, or a
  // value's bytes) puts what --json prints here.
  mutable std::optional<nlohmann::json> json_answer;
};

// A command's work: talks to the server and returns the human-readable text to
// print (without a final newline). With --json the server's answer is printed
// instead, so a handler never needs to know about --json.
using Handler = Result<std::string> (*)(Client&, const Args&);
using Binder = void (*)(CLI::App&, Args&);

struct CommandSpec {
  const char* group;  // where `gswarm data --help` lists it
  const char* name;
  const char* description;
  Binder bind;
  Handler run;
};

constexpr const char* kKvGroup = "KV storage";
constexpr const char* kPoolGroup = "Data pool";
constexpr const char* kClusterGroup = "Cluster";
constexpr const char* kServerGroup = "Server";

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

// A file (or standard input) as the value's raw bytes, streamed from its
// mapping: nothing is read into memory whole.
Result<std::string> write_file(Client& client, const Args& args, const std::string& location) {
  auto input = InputFile::open(args.file);
  if (!input) return tl::unexpected(input.error());
  const std::span<const std::byte> parts[] = {input->bytes()};
  auto size =
      with_progress(input->bytes().size(), "writing", [&](std::atomic<std::uint64_t>* sent) {
        return client.write_parts(args.key, parts, location, args.value_format, sent);
      });
  if (!size) return tl::unexpected(size.error());
  return fmt::format("Wrote '{}' to {} ({}, {} bytes, format {}, from {})", args.key, location,
                     format_size(*size), *size, args.value_format, input->name());
}

Result<std::string> run_write(Client& client, const Args& args) {
  auto location = checked_location(args.location);
  if (!location) return tl::unexpected(location.error());
  if (!args.file.empty()) return write_file(client, args, *location);
  const std::string& value = args.value;
  // VALUE is text, stored as a JSON string; with --json it is JSON itself.
  std::string json_text = dump(json(value));
  if (args.json) {
    if (!json::accept(value)) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("VALUE is not JSON (--json): {}", value.substr(0, 200)));
    }
    json_text = value;
  }
  if (auto written = client.write(args.key, json_text, *location); !written) {
    return tl::unexpected(written.error());
  }
  return fmt::format("Wrote '{}' to {}", args.key, *location);
}

// The value's exact bytes, whatever its format, into a file.
Result<std::string> read_to_file(Client& client, const Args& args) {
  OutputFile out(args.output);
  auto format = client.read_bytes_into(
      args.key, [&](std::uint64_t size, std::string_view) { return out.place(size); });
  const bool ok = format.has_value() && out.why().empty();
  out.finish(ok);
  if (!out.why().empty()) return make_error(ErrorCode::kBadRequest, out.why());
  if (!format) return tl::unexpected(format.error());
  std::error_code ec;
  const auto size = std::filesystem::file_size(args.output, ec);
  args.json_answer =
      json{{"key", args.key}, {"output", args.output}, {"size", size}, {"format", *format}};
  return fmt::format("Read '{}' into {} ({}, {} bytes, format {})", args.key, args.output,
                     format_size(size), size, *format);
}

Result<std::string> run_read(Client& client, const Args& args) {
  if (!args.output.empty() && args.output != "-") return read_to_file(client, args);
  if (args.raw || args.output == "-") {
    // Streamed: a value larger than this machine's memory goes through too.
    auto to_stdout = [](std::span<const std::byte> piece) -> Result<void> {
      if (std::fwrite(piece.data(), 1, piece.size(), stdout) != piece.size()) {
        return make_error(ErrorCode::kIo, fmt::format("cannot write to standard output: {}",
                                                      std::strerror(errno)));
      }
      return {};
    };
    auto format = client.read_bytes_streamed(args.key, to_stdout);
    if (!format) return tl::unexpected(format.error());
    if (std::fflush(stdout) != 0) {
      return make_error(ErrorCode::kIo,
                        fmt::format("cannot write to standard output: {}", std::strerror(errno)));
    }
    return std::string();  // the bytes are the output
  }
  auto value = client.read(args.key);
  if (!value && value.error().code == ErrorCode::kWrongFormat) {
    return make_error(ErrorCode::kWrongFormat,
                      fmt::format("'{}' is not a JSON value: get its bytes with `gswarm data read "
                                  "{} --output FILE`, or --raw to write them to standard output",
                                  args.key, args.key));
  }
  if (!value) return tl::unexpected(value.error());
  json parsed = json::parse(*value, nullptr, false);
  if (parsed.is_string()) return parsed.get<std::string>();
  return parsed.is_discarded() ? *value : dump(parsed, 2);
}

// Every key given; those that fail are named in the error, the others released.
Result<std::string> run_release(Client& client, const Args& args) {
  std::vector<std::string> done;
  std::vector<std::string> failed;
  std::optional<ErrorCode> code;
  json answer{{"released", json::array()}, {"failed", json::array()}};
  for (const auto& key : args.keys) {
    if (auto released = client.release(key); released) {
      done.push_back(fmt::format("Released '{}'", key));
      answer["released"].push_back(key);
    } else {
      code = code.value_or(released.error().code);
      failed.push_back(released.error().message);
      answer["failed"].push_back({{"key", key},
                                  {"detail", released.error().message},
                                  {"code", error_code_name(released.error().code)}});
    }
  }
  if (args.keys.size() > 1) args.json_answer = answer;
  if (failed.empty()) return fmt::format("{}", fmt::join(done, "\n"));
  if (!done.empty() && !args.json) fmt::print("{}\n", fmt::join(done, "\n"));
  return make_error(*code, fmt::format("{}", fmt::join(failed, "; ")));
}

std::atomic<bool> interrupted{false};

// While it lives, Ctrl-C sets `interrupted` instead of ending the process.
class CatchInterrupt {
 public:
  CatchInterrupt() {
    interrupted = false;
    struct sigaction action {};
    action.sa_handler = [](int) { interrupted = true; };
    ::sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previous_);
  }
  ~CatchInterrupt() { ::sigaction(SIGINT, &previous_, nullptr); }

 private:
  struct sigaction previous_ {};
};

// Ctrl-C while waiting for move `id`: on a terminal, asks whether to cancel it
// on the server. True: cancel it (and wait for it to end); false: leave it.
bool ask_to_cancel(std::uint64_t id) {
  if (::isatty(STDIN_FILENO) == 0 || ::isatty(STDERR_FILENO) == 0) return false;
  fmt::print(stderr, "\nCancel the move on the server (operation {})? [y/N] ", id);
  std::fflush(stderr);
  char answer[16] = {};
  if (std::fgets(answer, sizeof answer, stdin) == nullptr) return false;
  return answer[0] == 'y' || answer[0] == 'Y';
}

// Polls operation `id` until it ends, drawing its progress on stderr when that
// is a terminal (for operations of at least `show_from` bytes); the line is
// cleared when it ends. A failed or cancelled operation is its error. With
// `cancellable`, Ctrl-C asks whether to cancel the operation on the server;
// otherwise, or when the answer is no, the command ends and the operation goes on.
Result<Operation> wait_for_operation(Client& client, std::uint64_t id, std::uint64_t show_from = 0,
                                     bool cancellable = false) {
  ProgressLine line;
  CatchInterrupt catching;
  bool cancelling = false;
  auto delay = std::chrono::milliseconds(2);
  while (true) {
    if (interrupted.exchange(false) && !cancelling) {
      line.clear();
      if (!cancellable || !ask_to_cancel(id)) {
        fmt::print(stderr,
                   "operation {} goes on on the server (gswarm data operations; gswarm "
                   "data cancel {} stops it)\n",
                   id, id);
        std::fflush(stderr);
        throw CLI::RuntimeError(130);
      }
      if (auto ok = client.cancel_operation(id); !ok) {
        fmt::print(stderr, "cannot cancel it: {}\n", ok.error().message);
      }
      cancelling = true;
    }
    auto op = client.operation(id);
    if (!op) return tl::unexpected(op.error());
    if (op->state == "failed" || op->state == "done" || op->state == "cancelled") {
      line.clear();
      if (op->state != "done") return make_error(error_code_from_name(op->error_code), op->error);
      return op;
    }
    if (op->bytes_total >= show_from) {
      line.draw(op->bytes_done, op->bytes_total,
                cancelling ? "cancelling" : (op->state == "running" ? op->phase : op->state));
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(200));
  }
}

// Starts the move on the server's mover threads and polls it, drawing a progress
// line on stderr when that is a terminal. Ctrl-C asks whether to cancel it.
Result<std::string> run_move(Client& client, const Args& args) {
  auto destination = checked_location(args.destination);
  if (!destination) return tl::unexpected(destination.error());
  auto id = client.start_move(args.key, *destination);
  if (!id) return tl::unexpected(id.error());
  auto op = wait_for_operation(client, *id, 0, /*cancellable=*/true);
  if (!op) return tl::unexpected(op.error());
  if (op->source == op->destination)
    return fmt::format("'{}' is already in {}", args.key, op->destination);
  return fmt::format("Moved '{}' from {} to {} ({} in {:.3f} s)", args.key, op->source,
                     op->destination, format_size(op->bytes_total), op->seconds);
}

Result<std::string> run_cancel(Client& client, const Args& args) {
  if (auto ok = client.cancel_operation(args.operation); !ok) return tl::unexpected(ok.error());
  // Wait briefly for it to end, to say how it ended.
  for (int i = 0; i < 50; ++i) {
    auto op = client.operation(args.operation);
    if (!op) return tl::unexpected(op.error());
    if (op->state == "cancelled") {
      return fmt::format("Cancelled operation {} ({} of '{}' to {}); the source is intact", op->id,
                         op->kind, op->key, op->destination);
    }
    if (op->state == "done" || op->state == "failed") {
      return fmt::format("Operation {} had ended ({}) before it could be cancelled", op->id,
                         op->state);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return fmt::format("Asked operation {} to stop; gswarm data operations shows when it has",
                     args.operation);
}

Result<std::string> run_get_location(Client& client, const Args& args) {
  auto info = client.get_location(args.key);
  if (!info) return tl::unexpected(info.error());
  std::string out = fmt::format("Key:      {}\nPrimary:  {}\n", info->key, info->location);
  out += fmt::format("  {:<12} {:>10}  {:<9} {:>8}", "LOCATION", "SIZE", "STATUS", "PROGRESS");
  for (const auto& replica : info->replicas) {
    out += fmt::format("\n  {:<12} {:>10}  {:<9} {:>7.0f}%", replica.location,
                       format_size(replica.size), replica.copy_status, replica.copy_progress * 100);
  }
  for (const auto& replica : info->replicas) {
    if (replica.read_pointer_json != "null") {
      out += fmt::format("\nRead pointer ({}): {}", replica.location, replica.read_pointer_json);
    }
  }
  return out;
}

// Natural order: runs of digits compare as numbers ("key2" before "key10").
bool natural_less(std::string_view a, std::string_view b) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      std::size_t i_end = i;
      std::size_t j_end = j;
      while (i_end < a.size() && digit(a[i_end])) ++i_end;
      while (j_end < b.size() && digit(b[j_end])) ++j_end;
      const std::string_view x = a.substr(i, i_end - i);
      const std::string_view y = b.substr(j, j_end - j);
      const std::string_view xs = x.substr(std::min(x.find_first_not_of('0'), x.size()));
      const std::string_view ys = y.substr(std::min(y.find_first_not_of('0'), y.size()));
      if (xs.size() != ys.size()) return xs.size() < ys.size();
      if (xs != ys) return xs < ys;
      if (x.size() != y.size()) return x.size() < y.size();
      i = i_end;
      j = j_end;
    } else {
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// Keys matching PATTERN, a page of the server's at a time, up to --limit; shown
// as a table (a row per replica, so keys holding ':' read unambiguously) in
// natural order, with a total.
Result<std::string> run_list_locations(Client& client, const Args& args) {
  constexpr std::size_t kPage = 1000;
  std::vector<std::pair<std::string, std::vector<ReplicaInfo>>> keys;
  std::string cursor;
  bool more = false;
  do {
    const std::size_t want = args.limit == 0 ? kPage : std::min(kPage, args.limit - keys.size());
    auto page = client.list_locations_page(args.pattern, want, cursor);
    if (!page) return tl::unexpected(page.error());
    for (auto& k : page->keys) keys.push_back(std::move(k));
    cursor = std::move(page->next_cursor);
    more = !cursor.empty();
  } while (more && (args.limit == 0 || keys.size() < args.limit));
  std::sort(keys.begin(), keys.end(),
            [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  if (args.json) {
    json listed = json::object();
    for (const auto& [key, replicas] : keys) {
      json list = json::array();
      for (const auto& r : replicas) {
        list.push_back({{"location", r.location},
                        {"size", r.size},
                        {"copy_status", r.copy_status},
                        {"copy_progress", r.copy_progress}});
      }
      listed[key] = std::move(list);
    }
    args.json_answer =
        json{{"locations", std::move(listed)}, {"count", keys.size()}, {"more", more}};
  }
  if (keys.empty()) {
    return args.pattern.empty() ? std::string("No keys stored")
                                : fmt::format("No keys match '{}'", args.pattern);
  }
  constexpr std::size_t kMaxKeyColumn = 64;
  std::size_t width = 3;
  for (const auto& k : keys) width = std::max(width, std::min(k.first.size(), kMaxKeyColumn));
  std::string out =
      fmt::format("{:<{}}  {:<12} {:>10}  {}", "KEY", width, "LOCATION", "SIZE", "STATUS");
  for (const auto& [key, replicas] : keys) {
    bool first = true;
    for (const auto& r : replicas) {
      out += fmt::format("\n{:<{}}  {:<12} {:>10}  {}", first ? key : "", width, r.location,
                         format_size(r.size), progress_text(r));
      first = false;
    }
  }
  const std::size_t n = keys.size();
  if (more) {
    out +=
        fmt::format("\n{} key{} shown (--limit {}); more match", n, n == 1 ? "" : "s", args.limit);
  } else {
    out += fmt::format("\n{} key{}", n, n == 1 ? "" : "s");
  }
  return out;
}

Result<std::string> run_set_max_memory(Client& client, const Args& args) {
  auto limit = client.set_max_memory(args.size);
  if (!limit) return tl::unexpected(limit.error());
  json answer = json::parse(client.last_response_body(), nullptr, false);
  std::string line = fmt::format("DRAM limit set to {} ({} bytes)", format_size(*limit), *limit);
  if (answer.is_object() && answer.contains("warning") && answer["warning"].is_string()) {
    line += "\nwarning: " + answer["warning"].get<std::string>();
  }
  return line;
}

Result<std::string> run_operations(Client& client, const Args&) {
  auto operations = client.operations();
  if (!operations) return tl::unexpected(operations.error());
  if (operations->empty()) return std::string("No operations");
  std::string out = fmt::format("{:>6}  {:<9} {:<8} {:>5}  {:<26} {}", "ID", "KIND", "STATE",
                                "DONE", "FROM -> TO", "KEY");
  for (const auto& op : *operations) {
    const double share = op.bytes_total == 0 ? (op.state == "done" ? 1.0 : 0.0)
                                             : static_cast<double>(op.bytes_done) / op.bytes_total;
    std::string route =
        fmt::format("{} -> {}", op.source.empty() ? "?" : op.source, op.destination);
    out += fmt::format("\n{:>6}  {:<9} {:<8} {:>4.0f}%  {:<26} {}", op.id, op.kind, op.state,
                       share * 100, route, op.key);
    if (op.state == "failed") out += fmt::format("\n        failed: {}", op.error);
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
  // Freed segments kept for reuse count against the limits too: shown beside them.
  auto cached = [&](const char* field) {
    const std::uint64_t bytes = size_field(s, field);
    return bytes > 0 ? fmt::format(", {} more kept for reuse", format_size(bytes)) : std::string();
  };
  std::string out = fmt::format(
      "DRAM:           {} / {} ({:.1f}%){}\n", format_size(size_field(s, "current_dram_size")),
      format_size(size_field(s, "max_dram_size")), number_field(s, "dram_usage_percent"),
      cached("host_cache_bytes"));
  out += fmt::format("Pinned memory:  {} / {}{}\n",
                     format_size(size_field(s, "current_pinned_size")),
                     format_size(size_field(s, "max_pinned_size")), cached("pinned_cache_bytes"));
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
  out += fmt::format("Active moves:   {}\n",
                     moves.is_array() ? std::to_string(moves.size()) : dump(moves));
  const json memory = s.value("memory_info", json::object());
  out +=
      fmt::format("System memory:  {} / {} used ({:.1f}%), {} available",
                  format_size(size_field(memory, "used")), format_size(size_field(memory, "total")),
                  number_field(memory, "percent"), format_size(size_field(memory, "available")));
  if (s.contains("resident_memory")) {
    out += fmt::format("\nServer process: {} resident", format_size(size_field(s, "resident_memory")));
  }
  return out;
}

std::string sent_line(const SendResult& sent) {
  if (sent.method == "none") {
    return fmt::format("'{}' is already on {}:{}", sent.key, sent.node, sent.destination);
  }
  double gbps = sent.seconds > 0 ? static_cast<double>(sent.size) / sent.seconds / 1e9 : 0;
  std::string where = fmt::format("{}:{}", sent.node, sent.destination);
  if (!sent.address.empty() && sent.address != sent.node) where += " at " + sent.address;
  std::string line =
      fmt::format("Sent '{}' from {} to {} via {} ({} in {:.3f} s, {:.2f} GB/s", sent.key,
                  sent.source, where, sent.method, format_size(sent.size), sent.seconds, gbps);
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
  ProgressLine line;
  if (!line.enabled()) return client.send(args.key, target, options);
  std::optional<Result<SendResult>> result;
  std::atomic<bool> done{false};
  std::thread worker([&] {
    result.emplace(client.send(args.key, target, options));
    done = true;
  });
  Client watcher(args.host, client_options(args));
  while (!done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (done) break;
    auto operations = watcher.operations();
    if (!operations) continue;
    for (const auto& op : *operations) {
      if (op.kind == "send" && op.key == args.key && op.state == "running" &&
          op.bytes_total >= kShowProgressFrom) {
        line.draw(op.bytes_done, op.bytes_total, "sending");
        break;
      }
    }
  }
  worker.join();
  line.clear();
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
    parts.push_back(l.status == "complete"
                        ? l.device
                        : fmt::format("{} ({} {:.0f}%)", l.device, l.status, l.progress * 100));
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
Result<CreatedChunk> upload_file(Client& client, const std::string& path,
                                 const ChunkOptions& options) {
  auto input = InputFile::open(path);
  if (!input) return tl::unexpected(input.error());
  return with_progress(input->bytes().size(), "uploading", [&](std::atomic<std::uint64_t>* sent) {
    return client.upload_chunk(input->bytes(), options, path, sent);
  });
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
      c->access_count == 1 ? "" : "es",
      c->references.empty() ? std::string("none")
                            : fmt::format("{}", fmt::join(c->references, ", ")));
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
  std::string line =
      fmt::format("Transferred {} from {} to {}:{} ({} in {:.3f} s)", args.chunk_id, op->source,
                  node, op->destination, format_size(op->bytes_total), op->seconds);
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
    {kKvGroup, "write", "Write a value: text, JSON (--json) or a file's bytes (--file)",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to write");
       args.value_option = cmd.add_option(
           "VALUE", args.value, "Value to write: stored as a JSON string (with --json: as JSON)");
       cmd.add_option("-f,--file", args.file,
                      "Store this file's bytes as the value (- for standard input), streamed");
       cmd.add_option("--format", args.value_format, "Format tag of a --file value")
           ->capture_default_str();
       cmd.add_option("-l,--location", args.location,
                      fmt::format("Storage location: {}", kLocationHelp))
           ->capture_default_str();
       // Usage errors (exit 2), found before anything is sent.
       cmd.parse_complete_callback([&args] {
         const bool has_value = args.value_option->count() > 0;
         if (has_value == !args.file.empty()) {
           throw CLI::ValidationError(has_value ? "give VALUE or --file, not both"
                                                : "give the value: gswarm data write KEY VALUE, "
                                                  "or --file PATH (- for standard input)");
         }
         if (!args.file.empty() && args.json) {
           throw CLI::ValidationError(
               "--json stores VALUE as JSON; a --file is stored as its "
               "raw bytes (--format tags them)");
         }
       });
     },
     run_write},
    {kKvGroup, "read", "Read a value (DRAM only; move-data it to dram first)",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to read");
       cmd.add_option("-o,--output", args.output,
                      "Write the value's exact bytes, any format, to this file (- for stdout)");
       cmd.add_flag("--raw", args.raw, "Write the value's exact bytes to standard output");
       cmd.parse_complete_callback([&args] {
         if (!args.output.empty() && args.raw) {
           throw CLI::ValidationError("give --output FILE or --raw, not both");
         }
         if ((args.raw || args.output == "-") && args.json) {
           throw CLI::ValidationError(
               "--raw writes the value's bytes, --json an answer in "
               "JSON: give one of them");
         }
       });
     },
     run_read},
    {kKvGroup, "release", "Remove keys from every storage location",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("KEY", args.keys, "Keys to release")->required();
     },
     run_release},
    {kKvGroup, "move-data", "Move a value between storage locations",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to move");
       cmd.add_option("DESTINATION", args.destination,
                      fmt::format("Target location: {}", kLocationHelp))
           ->required();
     },
     run_move},
    {kKvGroup, "get-location",
     "Show where a key's data is: primary location, replicas, copy status",
     [](CLI::App& cmd, Args& args) { add_key(cmd, args, "Key to query"); }, run_get_location},
    {kKvGroup, "list-locations", "List keys (all, or those matching a glob) with their locations",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("PATTERN", args.pattern,
                      "Glob of the keys to list: * any characters, ? one, [abc] a set");
       cmd.add_option("-n,--limit", args.limit, "List at most this many keys (0: all)")
           ->capture_default_str();
     },
     run_list_locations},
    {kKvGroup, "operations", "List moves and sends: running, queued and recently finished",
     [](CLI::App&, Args&) {}, run_operations},
    {kKvGroup, "cancel", "Cancel a queued or running move (the source stays as it was)",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("ID", args.operation, "Operation id (gswarm data operations lists them)")
           ->required();
     },
     run_cancel},
    {kServerGroup, "stats", "Show storage statistics for every location", [](CLI::App&, Args&) {},
     run_stats},
    {kServerGroup, "set-max-memory", "Change the DRAM limit of the running server",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("SIZE", args.size, "New limit: bytes or a size such as 32GB or 512MB")
           ->required();
     },
     run_set_max_memory},
    {kClusterGroup, "send", "Send a key to another server (GPU-to-GPU with --source)",
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
    {kClusterGroup, "send-gpu", "Send a key directly from a GPU to a GPU on another node",
     [](CLI::App& cmd, Args& args) {
       add_key(cmd, args, "Key to send");
       cmd.add_option("SOURCE_DEVICE", args.source_device, "Source GPU device (e.g. device:0)")
           ->required();
       cmd.add_option("TARGET_NODE", args.target_node, "Target node name")->required();
       cmd.add_option("TARGET_DEVICE", args.target_device, "Target GPU device (e.g. device:1)")
           ->required();
     },
     run_send_gpu},
    {kPoolGroup, "list", "List data pool chunks (filter by device and type)",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("-d,--device", args.device,
                      "Filter by device: dram, pinned_dram, disk, gpu, device:N");
       cmd.add_option("-t,--type", args.type, "Filter by data type: input, output, intermediate");
     },
     run_list},
    {kPoolGroup, "create", "Create a data pool chunk from a file, an http:// URL or key:NAME",
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
    {kPoolGroup, "info", "Show a data pool chunk: size, checksum, locations, references",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("CHUNK_ID", args.chunk_id, "Data chunk ID")->required();
     },
     run_info},
    {kPoolGroup, "move", "Move a data pool chunk between devices",
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
    {kPoolGroup, "transfer", "Transfer a data pool chunk to another node",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("CHUNK_ID", args.chunk_id, "Data chunk ID")->required();
       cmd.add_option("-t,--to", args.target,
                      "Target node:device (e.g. node2:gpu, node2:disk, host:9015:dram)")
           ->required();
       cmd.add_flag("--delete-source", args.delete_source,
                    "Delete the chunk here once the target has acknowledged it");
     },
     run_transfer},
    {kPoolGroup, "delete", "Delete a data pool chunk",
     [](CLI::App& cmd, Args& args) {
       cmd.add_option("CHUNK_ID", args.chunk_id, "Data chunk ID")->required();
       cmd.add_flag("-f,--force", args.force, "Delete even if referenced");
     },
     run_delete},
    {kClusterGroup, "nodes",
     "List the nodes this server knows: name, address, liveness, where from",
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

// A failure, as one line on stderr; with --json as {"detail", "code"} on stdout
// (the shape of the server's own error answers), for scripts.
[[noreturn]] void fail_with(const Error& error, bool as_json) {
  if (!as_json) fail(error.message);
  fmt::print("{}\n",
             dump(json{{"detail", error.message}, {"code", error_code_name(error.code)}}, 2));
  std::fflush(stdout);
  throw CLI::RuntimeError(1);
}

// --host with --port: the port replaces the address's own (or is added to it).
std::string with_port(const std::string& host, int port) {
  if (port == 0) return host;
  std::string_view rest = host;
  std::string scheme;
  for (std::string_view prefix : {"http://", "https://"}) {
    if (rest.starts_with(prefix)) {
      scheme = std::string(prefix);
      rest.remove_prefix(prefix.size());
    }
  }
  while (rest.ends_with('/')) rest.remove_suffix(1);
  std::string_view name = rest;
  if (rest.starts_with('[')) {
    name = rest.substr(0, rest.find(']') + 1);
  } else if (std::count(rest.begin(), rest.end(), ':') == 1) {
    name = rest.substr(0, rest.find(':'));
  } else if (rest.find(':') != std::string_view::npos) {
    return fmt::format("{}[{}]:{}", scheme, rest, port);  // a bare IPv6 address
  }
  return fmt::format("{}{}:{}", scheme, name, port);
}

// The shared part of every command: where the server is, --json, running the
// handler, printing its result or its error.
void add_command(CLI::App& data, const CommandSpec& spec) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = data.add_subcommand(spec.name, spec.description);
  cmd->group(spec.group);
  spec.bind(*cmd, *args);
  cmd->add_option("--host", args->host, "Server address: host:port, or https://host:port")
      ->envname("GSWARM_HOST")
      ->capture_default_str();
  cmd->add_option("--port", args->port, "Server port (replaces the port of --host)")
      ->check(CLI::Range(1, 65535));
  cmd->add_flag("--json", args->json,
                std::string(spec.name) == "write"
                    ? "VALUE is JSON (42, {\"a\": 1}); print the answer as JSON"
                    : "Print the answer as JSON (failures as {\"detail\", \"code\"})");
  add_token_options(*cmd, args->token, "Token of a server started with --token");
  cmd->add_option("--tls-ca", args->tls_ca,
                  "PEM file of the certificates to trust: talk TLS to a server started with "
                  "--tls-cert (an https:// --host does too, trusting the system's certificates)")
      ->envname("GSWARM_TLS_CA");
  cmd->callback([args, run = spec.run] {
    auto token = resolve_token(args->token, /*warn_if_shared=*/false);
    if (!token) fail_with(token.error(), args->json);
    args->token = {*token, ""};  // resolved, for every connection the command opens
    args->host = with_port(args->host, args->port);
    Client client(args->host, client_options(*args));
    auto text = run(client, *args);
    if (!text) fail_with(text.error(), args->json);
    if (args->json) {
      json answer = args->json_answer ? *args->json_answer
                                      : json::parse(client.last_response_body(), nullptr, false);
      if (answer.is_discarded()) answer = json{{"message", *text}};
      fmt::print("{}\n", dump(answer, 2));
    } else if (!text->empty()) {
      fmt::print("{}\n", *text);
    }
  });
}

}  // namespace

void add_data_commands(CLI::App& data) {
  for (const auto& spec : kCommands) add_command(data, spec);
}

}  // namespace gswarm::cli
