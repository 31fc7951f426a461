#include "storage/pinned_tier.hpp"

#include <sys/mman.h>

#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "core/size.hpp"

namespace gswarm {
namespace {

constexpr std::size_t kPage = 4096;

class PinnedExtent final : public Extent {
 public:
  PinnedExtent(std::byte* data, std::size_t size, std::function<void()> free,
               std::shared_ptr<LimitCounter> counter)
      : data_(data), size_(size), free_(std::move(free)), counter_(std::move(counter)) {}
  ~PinnedExtent() override {
    free_();
    counter_->release(size_);
  }

  Location location() const override { return Location::pinned_dram(); }
  std::uint64_t size() const override { return size_; }
  std::byte* host_data() override { return data_; }
  bool page_locked() const override { return true; }

 private:
  std::byte* data_;
  std::size_t size_;
  std::function<void()> free_;
  std::shared_ptr<LimitCounter> counter_;
};

}  // namespace

Result<std::unique_ptr<Extent>> PinnedTier::allocate(std::uint64_t size, std::string_view,
                                                     std::string_view) {
  if (auto ok = counter_->reserve(size, "pinned memory"); !ok) return tl::unexpected(ok.error());
  // Memory the GPU driver registered is what makes DMA possible; mlock alone only
  // keeps pages resident, which is what pinned means without a driver.
  if (void* p = backend_->allocate_pinned(size); p != nullptr) {
    return std::make_unique<PinnedExtent>(static_cast<std::byte*>(p), size,
                                          [b = backend_, p] { b->free_pinned(p); }, counter_);
  }
  std::size_t mapped = std::max<std::size_t>((size + kPage - 1) / kPage * kPage, kPage);
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("out of memory allocating {} of pinned memory", format_size(size)));
  }
  // mlock faults every page in and keeps it resident.
  if (::mlock(p, mapped) != 0) {
    int err = errno;
    ::munmap(p, mapped);
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("cannot lock {} of pinned memory: {} (raise the memlock limit, "
                                  "`ulimit -l`, or lower --max-pinned)",
                                  format_size(size), std::strerror(err)));
  }
  return std::make_unique<PinnedExtent>(static_cast<std::byte*>(p), size,
                                        [p, mapped] { ::munmap(p, mapped); }, counter_);
}

}  // namespace gswarm
