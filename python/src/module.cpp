// gswarm._gswarm: the native half of the gswarm Python package. gswarm.data
// wraps it; users never import it directly.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "binding.hpp"

namespace gswarm::python {

HeldBuffers::HeldBuffers(const py::list& objects) {
  views_.reserve(objects.size());
  parts_.reserve(objects.size());
  for (const auto& object : objects) {
    auto view = std::make_unique<Py_buffer>();
    if (PyObject_GetBuffer(object.ptr(), view.get(), PyBUF_C_CONTIGUOUS) != 0) {
      throw py::error_already_set();
    }
    parts_.emplace_back(static_cast<const std::byte*>(view->buf),
                        static_cast<std::size_t>(view->len));
    size_ += static_cast<std::uint64_t>(view->len);
    views_.push_back(std::move(view));
  }
}

HeldBuffers::~HeldBuffers() {
  for (auto& view : views_) PyBuffer_Release(view.get());
}

}  // namespace gswarm::python

PYBIND11_MODULE(_gswarm, m) {
  namespace py = pybind11;
  using gswarm::python::NativeError;
  m.doc() = "Native core of the gswarm Python package (use gswarm.data)";
  m.attr("__version__") = GSWARM_VERSION;

  py::class_<gswarm::python::OwnedBytes>(m, "OwnedBytes", py::buffer_protocol())
      .def_buffer([](gswarm::python::OwnedBytes& b) {
        return py::buffer_info(b.data.data(), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(b.data.size())}, {1}, false);
      })
      .def("__len__", [](const gswarm::python::OwnedBytes& b) { return b.data.size(); });

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const NativeError& e) {
      py::object errors = py::module_::import("gswarm.data.errors");
      py::object error = errors.attr("from_code")(e.code, e.message);
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    }
  });

  // A library logs to stderr, and only what needs attention; start_server()
  // raises the level to its log_level.
  if (!spdlog::get("gswarm")) spdlog::set_default_logger(spdlog::stderr_color_mt("gswarm"));
  spdlog::set_level(spdlog::level::warn);

  gswarm::python::bind_client(m);
  gswarm::python::bind_engine(m);
}
