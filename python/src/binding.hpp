// Shared by the native module's files: how C++ results become Python values and
// exceptions, and the buffer types that hand bytes to Python without copying.
//
// The GIL: every call that may block (the network, disk, copies) releases it;
// Python objects are only touched while it is held.
#pragma once

#include <Python.h>
#include <pybind11/pybind11.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__GLIBCXX__)
#include <cxxabi.h>
#endif

#include <cerrno>
#include <exception>
#include <optional>
#include <type_traits>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gswarm/error.hpp>

namespace gswarm::python {

namespace py = pybind11;

inline unsigned long main_thread_ident = 0;  // set when the module loads

// Whether this thread must not ask for the GIL: the interpreter is finalizing
// and this is not the thread that finalizes.
inline bool finalizing_elsewhere() {
#if PY_VERSION_HEX >= 0x030D0000
  const bool finalizing = Py_IsFinalizing() != 0;
#else
  const bool finalizing = _Py_IsFinalizing() != 0;
#endif
  return finalizing && PyThread_get_thread_ident() != main_thread_ident;
}

// Waits for the process to end, if this thread must not ask for the GIL.
inline void park_if_finalizing() {
  while (finalizing_elsewhere()) ::pause();
}

// Runs `work` (a call that may block) without the GIL, as
// py::gil_scoped_release would, and returns what it returns; what it throws
// is thrown once the GIL is back. With care for the interpreter's end: Python
// ends a thread that asks for the GIL once it is finalizing (pthread_exit,
// which unwinds the C++ frames). A thread coming back after that waits for
// the process to end instead of asking; one already waiting for the GIL when
// finalizing begins unwinds from here, outside any destructor or exception in
// flight (where it would abort the process: "terminate called without an
// active exception"), and pybind11 lets it pass.
template <typename Work>
auto without_gil(Work&& work) -> std::invoke_result_t<Work&> {
  using R = std::invoke_result_t<Work&>;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result{};
  std::exception_ptr failure;
  PyThreadState* state = PyEval_SaveThread();
  try {
    if constexpr (std::is_void_v<R>) {
      work();
    } else {
      result.emplace(work());
    }
#if defined(__GLIBCXX__)
  } catch (abi::__forced_unwind&) {  // the thread is being ended: let it go
    throw;
#endif
  } catch (...) {
    failure = std::current_exception();
  }
  park_if_finalizing();
  PyEval_RestoreThread(state);
  if (failure) std::rethrow_exception(failure);
  if constexpr (!std::is_void_v<R>) return std::move(*result);
}

// The GIL taken again inside without_gil() (a callback that makes a Python
// object), with the same care.
class Relocked {
 public:
  Relocked() {
    park_if_finalizing();
    state_ = PyGILState_Ensure();
  }
  ~Relocked() { PyGILState_Release(state_); }
  Relocked(const Relocked&) = delete;
  Relocked& operator=(const Relocked&) = delete;

 private:
  PyGILState_STATE state_;
};

// A failure to raise in Python as the exception class of its code (the classes
// live in gswarm/data/errors.py; the module's translator picks one).
struct NativeError {
  std::string code;  // error_code_name(), e.g. "not_found"
  std::string message;
};

[[noreturn]] inline void raise(const Error& error) {
  throw NativeError{std::string(error_code_name(error.code)), error.message};
}

template <typename T>
T unwrap(Result<T> result) {
  if (!result) raise(result.error());
  return std::move(*result);
}

inline void unwrap(Result<void> result) {
  if (!result) raise(result.error());
}

// A buffer_info of `size` bytes at `data` (an empty one still gets a valid pointer).
inline py::buffer_info byte_buffer(const std::byte* data, std::size_t size, bool readonly) {
  static const std::byte kEmpty{};
  void* at = const_cast<std::byte*>(size == 0 ? &kEmpty : data);
  return py::buffer_info(at, 1, py::format_descriptor<std::uint8_t>::format(), 1,
                         {static_cast<py::ssize_t>(size)}, {1}, readonly);
}

// Memory C++ owns and lends to Python through the buffer protocol (numpy arrays
// decoded from it are views, not copies): a value received from the socket.
// Large ones get a mapping of their own with transparent huge pages, so that
// filling fresh memory costs few page faults and the receive runs near socket
// speed; a few dropped ones are kept for reuse (module.cpp).
class OwnedBytes {
 public:
  explicit OwnedBytes(std::size_t size);
  ~OwnedBytes();
  OwnedBytes(const OwnedBytes&) = delete;
  OwnedBytes& operator=(const OwnedBytes&) = delete;
  std::span<std::byte> bytes() { return {data_, size_}; }

 private:
  std::unique_ptr<std::byte[]> heap_;
  void* mapping_ = nullptr;
  std::size_t mapping_length_ = 0;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// A value mapped from a server on this machine (a read pointer), or from this
// process's own store: the bytes are the store's, shared, never copied. The
// mapping is private: the descriptor is read-only, and a page written here (a
// torch tensor, which cannot be read-only, is lent writable) becomes this
// process's own copy, so the stored value never changes. Unmapped when the
// last view of it goes.
class MappedValue {
 public:
  // The `size` bytes at `offset` of the read-only descriptor `fd` (which the
  // mapping outlives), tagged `format`.
  MappedValue(int fd, std::uint64_t offset, std::uint64_t size, std::string format)
      : format_(std::move(format)), size_(size) {
    const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t start = offset / page * page;
    length_ = offset + size - start;
    if (length_ == 0) return;
    void* base =
        ::mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, static_cast<off_t>(start));
    if (base == MAP_FAILED) {
      raise(Error{ErrorCode::kIo,
                  std::string("cannot map the shared value: ") + std::strerror(errno)});
    }
    base_ = base;
    data_ = static_cast<const std::byte*>(base) + (offset - start);
  }
  ~MappedValue() {
    if (base_ != nullptr) ::munmap(base_, length_);
  }
  MappedValue(const MappedValue&) = delete;
  MappedValue& operator=(const MappedValue&) = delete;

  const std::string& format() const { return format_; }
  std::uint64_t size() const { return size_; }
  const std::byte* data() const { return data_; }
  // Values that Python lends only writable (torch tensors) are; others read-only.
  bool writable() const { return format_ == "torch"; }

 private:
  std::string format_;
  std::uint64_t size_ = 0;
  std::uint64_t length_ = 0;
  void* base_ = nullptr;
  const std::byte* data_ = nullptr;
};

// Python buffers (bytes, numpy arrays...) held while the GIL is released: each
// must be C-contiguous. Construct and destroy with the GIL held.
class HeldBuffers {
 public:
  explicit HeldBuffers(const py::list& objects);
  ~HeldBuffers();
  HeldBuffers(const HeldBuffers&) = delete;
  HeldBuffers& operator=(const HeldBuffers&) = delete;

  std::span<const std::span<const std::byte>> parts() const { return parts_; }
  std::uint64_t size() const { return size_; }

 private:
  std::vector<std::unique_ptr<Py_buffer>> views_;
  std::vector<std::span<const std::byte>> parts_;
  std::uint64_t size_ = 0;
};

void bind_client(py::module_& m);
void bind_engine(py::module_& m);

}  // namespace gswarm::python
