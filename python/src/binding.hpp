// Shared by the native module's files: how C++ results become Python values and
// exceptions, and the buffer types that hand bytes to Python without copying.
//
// The GIL: every call that may block (the network, disk, copies) releases it;
// Python objects are only touched while it is held.
#pragma once

#include <Python.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gswarm/error.hpp>

namespace gswarm::python {

namespace py = pybind11;

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
