// gswarm._gswarm: the native half of the gswarm Python package. gswarm.data
// wraps it; users never import it directly.
#include <sys/mman.h>

#include <mutex>
#include <utility>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "binding.hpp"

namespace gswarm::python {

namespace {

constexpr std::size_t kMapAtLeast = 1 << 20;   // smaller values live on the heap
constexpr std::size_t kHugePage = 2 << 20;
constexpr std::size_t kKeepAtLeast = 64 << 20;  // mappings worth keeping for reuse
constexpr std::size_t kKeptMappings = 2;
constexpr std::size_t kKeptBytes = std::size_t{1} << 30;

// Large receive mappings whose arrays Python dropped, kept for the next read of
// the same size: their pages are mostly still there, so that read fills them at
// socket speed rather than page-fault speed. At most two, 1 GiB in all, and
// their pages are given back lazily (MADV_FREE): the kernel takes them when it
// needs memory.
class KeptMappings {
 public:
  void* take(std::size_t length) {
    std::lock_guard lock(mutex_);
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (it->second != length) continue;
      void* at = it->first;
      bytes_ -= length;
      kept_.erase(it);
      return at;
    }
    return nullptr;
  }
  bool keep(void* at, std::size_t length) {
    if (length < kKeepAtLeast) return false;
    std::lock_guard lock(mutex_);
    if (kept_.size() >= kKeptMappings || bytes_ + length > kKeptBytes) return false;
    ::madvise(at, length, MADV_FREE);
    kept_.emplace_back(at, length);
    bytes_ += length;
    return true;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<void*, std::size_t>> kept_;
  std::size_t bytes_ = 0;
};

KeptMappings& kept_mappings() {
  static auto* kept = new KeptMappings;  // never destroyed: arrays may outlive exit's destructors
  return *kept;
}

}  // namespace

OwnedBytes::OwnedBytes(std::size_t size) : size_(size) {
  if (size >= kMapAtLeast) {
    const std::size_t length = (size + kHugePage - 1) / kHugePage * kHugePage;
    void* at = kept_mappings().take(length);
    if (at == nullptr) {
      at = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (at != MAP_FAILED) ::madvise(at, length, MADV_HUGEPAGE);  // a hint: fine when unsupported
    }
    if (at != MAP_FAILED) {
      mapping_ = at;
      mapping_length_ = length;
      data_ = static_cast<std::byte*>(at);
      return;
    }
  }
  heap_ = std::make_unique_for_overwrite<std::byte[]>(size);
  data_ = heap_.get();
}

OwnedBytes::~OwnedBytes() {
  if (mapping_ != nullptr && !kept_mappings().keep(mapping_, mapping_length_)) {
    ::munmap(mapping_, mapping_length_);
  }
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
  gswarm::python::main_thread_ident =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

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
