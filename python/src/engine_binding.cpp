// The engine in this process: get_storage()'s Store (no server, no socket) and
// start_server()'s real server.
//
// The embedded store writes and reads through the Store directly (a read is a
// view of the value's memory); its other calls go through the HTTP API's own
// handlers, called in-process (server/local_call.hpp), so their answers and
// errors are the ones DataServer sees.
#include <sys/prctl.h>

#include <cstring>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <pybind11/stl.h>

#include "binding.hpp"
#include "core/key.hpp"
#include "core/location.hpp"
#include "server/local_call.hpp"
#include "server/server.hpp"
#include "storage/store.hpp"

namespace gswarm::python {
namespace {

using nlohmann::json;

StoreOptions store_options(std::uint64_t max_memory, const std::string& disk_path,
                           std::uint64_t max_pinned, int move_threads, int io_threads) {
  StoreOptions options;
  options.max_memory = max_memory;
  options.disk_path = disk_path;
  options.max_pinned = max_pinned;
  options.move_threads = move_threads;
  options.io_threads = io_threads;
  return options;
}

std::unique_ptr<Store> open_store(const StoreOptions& options) {
  if (options.max_memory == 0) raise(Error{ErrorCode::kInvalidSize, "max memory must be greater than 0"});
  return unwrap(without_gil([&] { return Store::open(options); }));
}

// A DRAM value lent to Python: holds the bytes alive (even after the key is
// written again or released) for as long as any view of them lives.
struct ValueBuffer {
  ValueView view;
};

// get_storage(): the Store in this process. Thread-safe, like the Store.
class PyEngine {
 public:
  explicit PyEngine(const StoreOptions& options) : store_(open_store(options)) {}

  ~PyEngine() { close(); }

  void close() {
    without_gil([&] { store_.reset(); });  // movers may be finishing copies
  }

  std::uint64_t write(const std::string& key, const py::list& parts, const std::string& location,
                      const std::string& format) {
    unwrap(validate_key(key));
    Location where = unwrap(Location::parse(location));
    HeldBuffers held(parts);
    return without_gil([&]() -> std::uint64_t {
      Store& s = store();
      unwrap(s.check_location(where));
      PendingWrite pending = unwrap(s.prepare_write(key, where, held.size(), format));
      if (pending.direct()) {
        std::byte* at = pending.buffer().data();
        for (const auto& part : held.parts()) {
          if (!part.empty()) std::memcpy(at, part.data(), part.size());
          at += part.size();
        }
      } else {
        for (const auto& part : held.parts()) unwrap(pending.append(part));
      }
      return unwrap(s.commit_write(std::move(pending))).size;
    });
  }

  // (ValueBuffer, format): a view of the DRAM value, no copy.
  py::tuple read(const std::string& key) {
    unwrap(validate_key(key));
    ValueView view = unwrap(without_gil([&] { return store().read(key); }));
    std::string format = view.format;
    return py::make_tuple(ValueBuffer{std::move(view)}, format);
  }

  // The DRAM value of a torch tensor read without a copy: a private mapping of
  // the store's bytes (writes to it stay this tensor's own), as a read pointer
  // gives another process.
  std::unique_ptr<MappedValue> read_mapped(const std::string& key, const std::string& format) {
    unwrap(validate_key(key));
    auto exported =
        unwrap(without_gil([&] { return store().export_value(key, Location::dram()); }));
    return std::make_unique<MappedValue>(exported.fd.get(), exported.offset, exported.size, format);
  }

  std::string release(const std::string& key) {
    server::Request req;
    req.param = key;
    return call(server::handle_release, std::move(req));
  }

  std::string move(const std::string& key, const std::string& destination) {
    server::Request req;
    req.body = json{{"key", key}, {"destination", destination}}.dump(-1, ' ', false,
                                                                      json::error_handler_t::replace);
    return call(server::handle_move, std::move(req));
  }

  std::string location(const std::string& key) {
    server::Request req;
    req.param = key;
    return call(server::handle_location, std::move(req));
  }

  std::string locations() { return call(server::handle_locations, {}); }
  std::string stats() { return call(server::handle_stats, {}); }

  std::string set_max_memory(const std::string& size) {
    server::Request req;
    req.param = size;
    return call(server::handle_set_max_memory, std::move(req));
  }

 private:
  Store& store() {
    if (!store_) raise(Error{ErrorCode::kUnavailable, "this storage was closed"});
    return *store_;
  }

  // A handler's JSON answer; its {"detail", "code"} raised as the matching error.
  std::string call(server::Handler handler, server::Request req) {
    server::LocalAnswer answer = without_gil([&] {
      // No server around it: no buffer accounting, node name, cluster or pool.
      server::Context ctx{store(), {}, {}, nullptr, nullptr, nullptr, nullptr, nullptr};
      return server::call_local(handler, std::move(req), ctx);
    });
    if (answer.status >= 400) {
      json error = json::parse(answer.body, nullptr, false);
      throw NativeError{error.value("code", std::string("internal")),
                        error.value("detail", answer.body)};
    }
    return std::move(answer.body);
  }

  std::unique_ptr<Store> store_;
};

// start_server(): the real server, in this process. listen() then run() (which
// blocks until stop(), from any thread). Signals stay Python's.
class PyServer {
 public:
  PyServer(const StoreOptions& store_options, server::ServerOptions options,
           const std::string& log_level) {
    configure_logging(log_level);
    // As `gswarm data start` does: read pointers promise that other processes
    // of this user cannot reach values through /proc/<pid>/mem.
    ::prctl(PR_SET_DUMPABLE, 0);
    options.handle_signals = false;
    store_ = open_store(store_options);
    server_ = std::make_unique<server::Server>(*store_, std::move(options));
  }

  ~PyServer() {
    without_gil([&] {
      server_.reset();
      store_.reset();
    });
  }

  std::uint16_t listen() {
    unwrap(without_gil([&] { return server_->listen(); }));
    return server_->port();
  }

  void run() {
    without_gil([&] { server_->run(); });
  }

  void stop() { server_->stop(); }
  std::uint16_t port() const { return server_->port(); }

 private:
  static void configure_logging(const std::string& level_name) {
    auto level = spdlog::level::from_str(level_name);
    if (level == spdlog::level::off && level_name != "off") {
      raise(Error{ErrorCode::kBadRequest,
                  "log_level: use trace, debug, info, warn, error, critical or off"});
    }
    spdlog::set_level(level);
  }

  std::unique_ptr<Store> store_;
  std::unique_ptr<server::Server> server_;
};

}  // namespace

void bind_engine(py::module_& m) {
  py::class_<ValueBuffer>(m, "ValueBuffer", py::buffer_protocol())
      .def("__len__", [](const ValueBuffer& b) { return b.view.extent->size(); })
      .def_buffer([](ValueBuffer& b) {
        auto bytes = b.view.bytes();
        return byte_buffer(bytes.data(), bytes.size(), true);
      });

  py::class_<PyEngine>(m, "Engine")
      .def(py::init([](std::uint64_t max_memory, const std::string& disk_path,
                       std::uint64_t max_pinned, int move_threads, int io_threads) {
             return std::make_unique<PyEngine>(
                 store_options(max_memory, disk_path, max_pinned, move_threads, io_threads));
           }),
           py::arg("max_memory"), py::arg("disk_path"), py::arg("max_pinned"),
           py::arg("move_threads"), py::arg("io_threads"))
      .def("close", &PyEngine::close)
      .def("write", &PyEngine::write)
      .def("read", &PyEngine::read)
      .def("read_mapped", &PyEngine::read_mapped)
      .def("release", &PyEngine::release)
      .def("move", &PyEngine::move)
      .def("location", &PyEngine::location)
      .def("locations", &PyEngine::locations)
      .def("stats", &PyEngine::stats)
      .def("set_max_memory", &PyEngine::set_max_memory);

  py::class_<PyServer>(m, "Server")
      .def(py::init([](const std::string& host, int port, std::uint64_t max_memory,
                       const std::string& disk_path, std::uint64_t max_pinned, int move_threads,
                       int io_threads, int threads, std::vector<std::string> source_roots,
                       std::vector<std::string> peers, const std::string& node_name,
                       const std::string& log_level, const std::string& token,
                       bool protected_mode, const std::string& tls_cert,
                       const std::string& tls_key, const std::string& tls_ca,
                       std::vector<std::string> allow_origins,
                       std::vector<std::string> allow_hosts) {
             if (port < 0 || port > 65535) {
               raise(Error{ErrorCode::kBadRequest, "port must be from 0 to 65535"});
             }
             server::ServerOptions options;
             options.host = host;
             options.port = static_cast<std::uint16_t>(port);
             options.threads = threads;
             options.source_roots = std::move(source_roots);
             options.cluster.peers = std::move(peers);
             options.node_name = node_name;
             options.token = token;
             options.protected_mode = protected_mode;
             options.tls_cert = tls_cert;
             options.tls_key = tls_key;
             options.tls_ca = tls_ca;
             options.allowed_origins = std::move(allow_origins);
             options.allowed_hosts = std::move(allow_hosts);
             return std::make_unique<PyServer>(
                 store_options(max_memory, disk_path, max_pinned, move_threads, io_threads),
                 std::move(options), log_level);
           }),
           py::arg("host"), py::arg("port"), py::arg("max_memory"), py::arg("disk_path"),
           py::arg("max_pinned"), py::arg("move_threads"), py::arg("io_threads"),
           py::arg("threads"), py::arg("source_roots"), py::arg("peers"), py::arg("node_name"),
           py::arg("log_level"), py::arg("token") = "", py::arg("protected_mode") = true,
           py::arg("tls_cert") = "", py::arg("tls_key") = "", py::arg("tls_ca") = "",
           py::arg("allow_origins") = std::vector<std::string>{},
           py::arg("allow_hosts") = std::vector<std::string>{})
      .def("listen", &PyServer::listen)
      .def("run", &PyServer::run)
      .def("stop", &PyServer::stop)
      .def_property_readonly("port", &PyServer::port);
}

}  // namespace gswarm::python
