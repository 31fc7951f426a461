// gswarm._gswarm: the native half of the gswarm Python package. gswarm.data
// wraps it; users never import it directly.
#include <sys/mman.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "binding.hpp"

namespace gswarm::python {

namespace {
constexpr std::size_t kMapAtLeast = 1 << 20;
}  // namespace

OwnedBytes::OwnedBytes(std::size_t size) : size_(size) {
  if (size >= kMapAtLeast) {
    void* at = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (at != MAP_FAILED) {
      ::madvise(at, size, MADV_HUGEPAGE);  // a hint: fine when unsupported
      mapping_ = at;
      data_ = static_cast<std::byte*>(at);
      return;
    }
  }
  heap_ = std::make_unique_for_overwrite<std::byte[]>(size);
  data_ = heap_.get();
}

OwnedBytes::~OwnedBytes() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

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
        return gswarm::python::byte_buffer(b.bytes().data(), b.bytes().size(), false);
      })
      .def("__len__", [](gswarm::python::OwnedBytes& b) { return b.bytes().size(); });

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
