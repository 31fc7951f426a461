#include "storage/dram_tier.hpp"

#include <cstddef>
#include <new>

#include <fmt/format.h>

#include "core/size.hpp"

namespace gswarm {
namespace {

class DramExtent final : public Extent {
 public:
  DramExtent(std::unique_ptr<HostBlock> block, std::shared_ptr<LimitCounter> counter)
      : block_(std::move(block)), counter_(std::move(counter)) {}
  ~DramExtent() override { counter_->release(block_->size()); }

  Location location() const override { return Location::dram(); }
  std::uint64_t size() const override { return block_->size(); }
  std::byte* host_data() override { return block_->data(); }

 private:
  std::unique_ptr<HostBlock> block_;
  std::shared_ptr<LimitCounter> counter_;
};

// A small value and its bytes in one allocation: the bytes follow the object.
class InlineDramExtent final : public Extent {
 public:
  static std::unique_ptr<Extent> create(std::size_t size, std::shared_ptr<LimitCounter> counter) {
    void* memory = ::operator new(sizeof(InlineDramExtent) + size, std::nothrow);
    if (memory == nullptr) return nullptr;
    return std::unique_ptr<Extent>(new (memory) InlineDramExtent(size, std::move(counter)));
  }
  // Deleting through Extent* lands here (virtual destructor), matching create().
  static void operator delete(void* memory) { ::operator delete(memory); }
  ~InlineDramExtent() override { counter_->release(size_); }

  Location location() const override { return Location::dram(); }
  std::uint64_t size() const override { return size_; }
  std::byte* host_data() override { return reinterpret_cast<std::byte*>(this + 1); }

 private:
  InlineDramExtent(std::size_t size, std::shared_ptr<LimitCounter> counter)
      : size_(size), counter_(std::move(counter)) {}
  std::size_t size_;
  std::shared_ptr<LimitCounter> counter_;
};
static_assert(sizeof(InlineDramExtent) % alignof(std::max_align_t) == 0 ||
              sizeof(InlineDramExtent) % 8 == 0);

// Values below this size share one allocation with their extent.
constexpr std::uint64_t kInlineLimit = 64 * 1024;

}  // namespace

Result<std::unique_ptr<Extent>> DramTier::allocate(std::uint64_t size, std::string_view,
                                                   std::string_view) {
  if (auto ok = counter_->reserve(size, "DRAM"); !ok) return tl::unexpected(ok.error());
  if (size < kInlineLimit) {
    if (auto extent = InlineDramExtent::create(size, counter_)) return extent;
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit, "the system is out of memory");
  }
  auto block = HostBlock::allocate(size);
  if (block == nullptr) {
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("the system is out of memory allocating {} for a DRAM value",
                                  format_size(size)));
  }
  return std::make_unique<DramExtent>(std::move(block), counter_);
}

}  // namespace gswarm
