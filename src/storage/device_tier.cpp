#include "storage/device_tier.hpp"

#include <fmt/format.h>

#include "core/size.hpp"

namespace gswarm {
namespace {

class DeviceExtent final : public Extent {
 public:
  DeviceExtent(std::shared_ptr<DeviceBackend> backend, int device, void* ptr, std::uint64_t size,
               std::shared_ptr<LimitCounter> counter)
      : backend_(std::move(backend)), device_(device), ptr_(ptr), size_(size),
        counter_(std::move(counter)) {}
  ~DeviceExtent() override {
    backend_->free(device_, ptr_, size_);
    counter_->release(size_);
  }

  Location location() const override { return Location::device(device_); }
  std::uint64_t size() const override { return size_; }

  Result<void> read(std::uint64_t offset, std::span<std::byte> out) const override {
    return read_into(offset, out, false);
  }
  Result<void> write(std::uint64_t offset, std::span<const std::byte> in) override {
    return write_from(offset, in, false);
  }
  Result<void> read_into(std::uint64_t offset, std::span<std::byte> out,
                         bool out_page_locked) const override {
    if (offset + out.size() > size_) return make_error(ErrorCode::kInternal, "read outside value");
    return backend_->copy_to_host(device_, out.data(), static_cast<std::byte*>(ptr_) + offset,
                                  out.size(), out_page_locked);
  }
  Result<void> write_from(std::uint64_t offset, std::span<const std::byte> in,
                          bool in_page_locked) override {
    if (offset + in.size() > size_) return make_error(ErrorCode::kInternal, "write outside value");
    return backend_->copy_to_device(device_, static_cast<std::byte*>(ptr_) + offset, in.data(),
                                    in.size(), in_page_locked);
  }

  std::optional<ReadPointer> read_pointer() const override {
    auto ipc = backend_->ipc_handle(device_, ptr_);
    if (!ipc) return std::nullopt;
    ReadPointer rp;
    rp.kind = "cuda_ipc";
    rp.path = ipc->handle;
    rp.offset = ipc->offset;
    rp.size = size_;
    rp.device = device_;
    return rp;
  }

  int device() const { return device_; }
  void* ptr() const { return ptr_; }
  DeviceBackend& backend() const { return *backend_; }

 private:
  std::shared_ptr<DeviceBackend> backend_;
  const int device_;
  void* ptr_;
  const std::uint64_t size_;
  std::shared_ptr<LimitCounter> counter_;
};

}  // namespace

DeviceTier::DeviceTier(std::shared_ptr<DeviceBackend> backend, int device, std::uint64_t limit)
    : backend_(std::move(backend)),
      device_(device),
      counter_(std::make_shared<LimitCounter>("--max-device-memory", limit)) {}

Result<ExtentRef> DeviceTier::allocate(std::uint64_t size, std::string_view, std::string_view) {
  if (auto ok = counter_->reserve(size, location().name()); !ok) return tl::unexpected(ok.error());
  auto ptr = backend_->allocate(device_, size);
  if (!ptr) {
    counter_->release(size);
    return tl::unexpected(ptr.error());
  }
  return ExtentRef(new DeviceExtent(backend_, device_, *ptr, size, counter_));
}

std::optional<Result<std::string>> copy_between_devices(const Extent& src, Extent& dst) {
  const auto* s = dynamic_cast<const DeviceExtent*>(&src);
  auto* d = dynamic_cast<DeviceExtent*>(&dst);
  if (s == nullptr || d == nullptr) return std::nullopt;
  if (s->size() != d->size()) return make_error(ErrorCode::kInternal, "copy between unequal extents");
  auto ok = d->backend().copy_between(d->device(), d->ptr(), s->device(), s->ptr(), s->size());
  if (!ok) return tl::unexpected(ok.error());
  return d->backend().peer_method(s->device(), d->device());
}

}  // namespace gswarm
