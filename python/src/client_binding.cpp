// The C++ client (include/gswarm/client.hpp) for gswarm.data.DataServer, and
// the zero-copy mapping of DRAM values through read pointers.
//
// Answers the Python side hands on as dicts come back as the server's JSON text
// (the C++ client checks their shape; Python's json module builds the dict), so
// DataServer returns exactly what the HTTP API documents.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <gswarm/client.hpp>

#include "binding.hpp"

namespace gswarm::python {
namespace {

using std::chrono::milliseconds;

milliseconds to_ms(double seconds) {
  return milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

// Formats whose bytes Python decodes into arrays: handed over as OwnedBytes so
// the array is a view of them. Everything else becomes `bytes`.
bool is_array_format(std::string_view format) {
  return format == "npy" || format == "torch";
}

// One connection to a server. Not thread-safe (like gswarm::Client):
// DataServer keeps one per Python thread.
class PyClient {
 public:
  PyClient(const std::string& address, double timeout, double move_timeout,
           const std::string& token, const std::string& tls_ca)
      : client_(address, ClientOptions{to_ms(timeout), to_ms(move_timeout), token, tls_ca}) {}

  const std::string& address() const { return client_.address(); }

  void write_json(std::string_view key, std::string_view json, std::string_view location) {
    unwrap(without_gil([&] { return client_.write(key, json, location); }));
  }

  std::uint64_t write_parts(std::string_view key, const py::list& parts,
                            std::string_view location, std::string_view format) {
    HeldBuffers held(parts);
    return unwrap(
        without_gil([&] { return client_.write_parts(key, held.parts(), location, format); }));
  }

  // (data, format): data is OwnedBytes for array formats, bytes otherwise; the
  // value's bytes are received straight into either.
  py::tuple read(std::string_view key) {
    std::unique_ptr<OwnedBytes> owned;
    py::object bytes;
    const std::string format = unwrap(without_gil([&] {
      return client_.read_bytes_into(
          key, [&](std::uint64_t size, std::string_view tag) -> std::span<std::byte> {
            if (is_array_format(tag)) {
              try {
                owned = std::make_unique<OwnedBytes>(size);
              } catch (const std::bad_alloc&) {
                return {};  // no memory: the read fails
              }
              return owned->bytes();
            }
            Relocked locked;
            PyObject* made = PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(size));
            if (made == nullptr) {
              PyErr_Clear();
              return {};  // no memory: the read fails
            }
            bytes = py::reinterpret_steal<py::object>(made);
            return {reinterpret_cast<std::byte*>(PyBytes_AS_STRING(made)), size};
          });
    }));
    if (owned) return py::make_tuple(py::cast(std::move(owned)), format);
    return py::make_tuple(std::move(bytes), format);
  }

  void release(std::string_view key) {
    unwrap(without_gil([&] { return client_.release(key); }));
  }

  std::string move(std::string_view key, std::string_view destination) {
    return json_answer([&] { return client_.move(key, destination); });
  }

  std::string send(std::string_view key, std::string_view target,
                   std::string_view source_location, bool delete_source, int streams) {
    SendOptions options{std::string(source_location), delete_source, streams};
    return json_answer([&] { return client_.send(key, target, options); });
  }

  std::string location(std::string_view key) {
    return json_answer([&] { return client_.get_location(key); });
  }

  std::string locations() {
    return json_answer([&] { return client_.list_locations(); });
  }

  std::string stats() {
    return unwrap(without_gil([&] { return client_.stats(); }));
  }

  std::string set_max_memory(std::string_view size) {
    return json_answer([&] { return client_.set_max_memory(size); });
  }

  std::string health() {
    return unwrap(without_gil([&] { return client_.health(); }));
  }

 private:
  // Runs `call` without the GIL and returns the server's JSON answer to it
  // (the C++ client has checked its shape).
  template <typename Call>
  std::string json_answer(Call call) {
    unwrap(without_gil(call));
    return client_.last_response_body();
  }

  Client client_;
};

std::unique_ptr<MappedValue> open_mapped(const std::string& socket, std::int64_t pid,
                                         std::int64_t uid, const std::string& key,
                                         const std::string& location, const std::string& token) {
  SharedValue shared = unwrap(without_gil(
      [&] { return open_read_pointer(LocalServer{socket, pid, uid}, key, location, token); }));
  return std::make_unique<MappedValue>(shared.fd(), shared.offset(), shared.size(),
                                       shared.format());
}

}  // namespace

void bind_client(py::module_& m) {
  py::class_<PyClient>(m, "Client")
      .def(py::init<const std::string&, double, double, const std::string&, const std::string&>(),
           py::arg("address"), py::arg("timeout") = 60.0, py::arg("move_timeout") = 600.0,
           py::arg("token") = "", py::arg("tls_ca") = "")
      .def_property_readonly("address", &PyClient::address)
      .def("write_json", &PyClient::write_json)
      .def("write_parts", &PyClient::write_parts)
      .def("read", &PyClient::read)
      .def("release", &PyClient::release)
      .def("move", &PyClient::move)
      .def("send", &PyClient::send)
      .def("location", &PyClient::location)
      .def("locations", &PyClient::locations)
      .def("stats", &PyClient::stats)
      .def("set_max_memory", &PyClient::set_max_memory)
      .def("health", &PyClient::health);

  py::class_<MappedValue>(m, "MappedValue", py::buffer_protocol())
      .def_property_readonly("format", &MappedValue::format)
      .def("__len__", &MappedValue::size)
      .def_buffer([](MappedValue& v) { return byte_buffer(v.data(), v.size(), !v.writable()); });
  m.def("open_mapped", &open_mapped, py::arg("socket"), py::arg("pid"), py::arg("uid"),
        py::arg("key"), py::arg("location") = "", py::arg("token") = "");
}

}  // namespace gswarm::python
