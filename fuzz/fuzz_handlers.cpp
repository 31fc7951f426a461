// Every endpoint's handler on a request built from the input: which route,
// then "PARAM\nQUERY\nBODY". Handlers parse and check all of it before they
// touch the engine (a real Store and data pool in this process); whatever they
// answer, the engine stays consistent and nothing crashes.
//
// Sources a chunk create would fetch (URLs) are skipped: a fuzzer must not
// make network connections.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unistd.h>

#include "pool/pool.hpp"
#include "server/kv_handlers.hpp"
#include "server/router.hpp"

using namespace gswarm;
using namespace gswarm::server;

namespace {

struct Env {
  Env() {
    root = std::filesystem::temp_directory_path() / ("gswarm-fuzz-" + std::to_string(::getpid()));
    StoreOptions options;
    options.disk_path = root;
    options.max_memory = 64ull << 20;
    options.max_pinned = 16ull << 20;
    options.max_disk = 64ull << 20;
    store = std::move(*Store::open(options));
    pool = std::move(*pool::Pool::open(*store, pool::PoolOptions{}));
    ctx = std::make_unique<Context>(Context{*store, Limits{}, "fuzz", &state});
    ctx->pool = pool.get();
  }
  std::filesystem::path root;
  std::unique_ptr<Store> store;
  std::unique_ptr<pool::Pool> pool;
  ServerState state;
  std::unique_ptr<Context> ctx;
};

Env& env() {
  static Env* e = new Env();  // lives as long as the process: handlers' tasks may outlive a run
  return *e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  auto all = routes();
  const Route& route = all[data[0] % all.size()];
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  const auto first = rest.find('\n');
  const auto second = first == std::string_view::npos ? first : rest.find('\n', first + 1);
  if (second == std::string_view::npos) return 0;
  if (route.handler == &handle_chunk_create && rest.find("://") != std::string_view::npos) {
    return 0;
  }
  Request req;
  req.method = std::string(route.method);
  req.path = std::string(route.path);
  req.param = std::string(rest.substr(0, first));
  auto query = parse_query(rest.substr(first + 1, second - first - 1));
  if (!query) return 0;
  req.query = std::move(*query);
  req.body = std::string(rest.substr(second + 1));
  req.content_type = "application/json";
  Context& ctx = *env().ctx;
  if ((data[1] & 1) != 0 && route.body == BodyKind::kJsonOrValue) {
    // The raw form: the query names the key, location and format.
    auto target = parse_raw_target(req, ctx);
    if (target && !target->json()) {
      auto pending = prepare_raw_value(*target, req.body.size(), ctx);
      if (pending && pending->direct()) {
        std::memcpy(pending->buffer().data(), req.body.data(), req.body.size());
        (void)commit_raw_value(std::move(*pending), ctx);
      }
      return 0;
    }
  }
  Reply reply = route.handler(req, ctx);
  Response res = reply.blocking ? reply.blocking() : std::move(reply.response);
  if (res.status < 100 || res.status > 599) __builtin_trap();
  if (res.source) {
    std::string piece;
    for (int i = 0; i < 4; ++i) {
      auto more = res.source->next(piece);
      if (!more || !*more) break;
    }
  }
  return 0;
}
