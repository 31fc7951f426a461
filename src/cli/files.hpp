// Local files as values: read into a write without being held in memory whole,
// and values read straight into a file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <gswarm/error.hpp>

namespace gswarm::cli {

// A local file's bytes for an upload, mapped rather than read. "-" is standard
// input: mapped when it is a file, else (a pipe, a terminal) first copied to an
// unnamed temporary file in $TMPDIR (default /tmp).
class InputFile {
 public:
  [[nodiscard]] static Result<InputFile> open(const std::string& path);
  InputFile(InputFile&& other) noexcept;
  InputFile& operator=(InputFile&&) = delete;
  ~InputFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& name() const { return name_; }  // for messages

 private:
  InputFile(std::string name, const std::byte* data, std::size_t size)
      : name_(std::move(name)), data_(data), size_(size) {}
  std::string name_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// A value read straight into `path`: place() creates the file at the value's
// size and maps it; finish() unmaps it, and removes the file when the read failed.
class OutputFile {
 public:
  explicit OutputFile(std::string path) : path_(std::move(path)) {}
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile() { finish(false); }

  // The file's memory for `size` bytes; empty when it cannot be made, and then
  // why() says why.
  std::span<std::byte> place(std::uint64_t size);
  void finish(bool read_ok);
  const std::string& why() const { return why_; }

 private:
  std::string path_;
  std::string why_;
  int fd_ = -1;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace gswarm::cli
