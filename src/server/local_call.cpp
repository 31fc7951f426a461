#include "server/local_call.hpp"

namespace gswarm::server {

LocalAnswer call_local(Handler handler, Request req, Context& ctx) {
  Reply reply = handler(req, ctx);
  Response response = reply.blocking ? reply.blocking() : std::move(reply.response);
  LocalAnswer answer{response.status, std::move(response.head)};
  if (response.value) answer.body += response.value->text();
  answer.body += response.tail;
  if (response.source) {
    std::string piece;
    for (;;) {
      auto more = response.source->next(piece);
      if (!more) return {http_status(more.error().code), error_response(more.error()).head};
      if (!*more) break;
      answer.body += piece;
    }
  }
  return answer;
}

}  // namespace gswarm::server
