#include "kernel/model_device.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "kernel/cap_chain.h"
#include "proto/page_sizes.h"

namespace vfiod::kernel {
namespace {

constexpr size_t kConfigSize = 256;
constexpr size_t kPcieConfigSize = 4096;
constexpr size_t kCommandOffset = 4;
constexpr size_t kCommandSize = 2;

uint64_t RoundUp(uint64_t v) { return (v + kPage4K - 1) & ~(kPage4K - 1); }

void Put16(std::vector<uint8_t>& c, size_t off, uint16_t v) {
  c[off] = static_cast<uint8_t>(v);
  c[off + 1] = static_cast<uint8_t>(v >> 8);
}

}  // namespace

ModelPciFunction::ModelPciFunction(const ModelDevice& topo) : topo_(topo) {}

Result<std::unique_ptr<ModelPciFunction>> ModelPciFunction::Create(const ModelDevice& topo) {
  std::unique_ptr<ModelPciFunction> f(new ModelPciFunction(topo));
  for (const ModelRegion& r : topo.regions) {
    if (r.index >= kPciConfigRegionIndex) {
      return Fail(EINVAL, "model topology", topo.bdf + ": region index must be a BAR or ROM");
    }
    for (const SparseArea& a : r.sparse_mmap) {
      if (a.offset + a.size > r.size || ((a.offset | a.size) & (kPage4K - 1)) != 0) {
        return Fail(EINVAL, "model topology", topo.bdf + ": bad sparse area");
      }
    }
    Region& out = f->regions_[r.index];
    out.size = r.size;
    out.flags = r.size == 0 ? 0 : r.flags;
    if (r.index == kPciRomRegionIndex) {
      out.flags &= kRegionFlagRead;  // vfio-pci: the ROM is read-only, never mmap'd
    }
    out.sparse = r.sparse_mmap;
  }
  Region& config = f->regions_[kPciConfigRegionIndex];
  config.size = topo.pcie ? kPcieConfigSize : kConfigSize;
  config.flags = kRegionFlagRead | kRegionFlagWrite;
  uint64_t cursor = 0;
  for (Region& r : f->regions_) {
    r.offset = cursor;
    cursor += RoundUp(r.size);
  }
  int fd = ::memfd_create(("vfio-device:" + topo.bdf).c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    return ErrnoError("memfd_create");
  }
  f->backing_.reset(fd);
  if (::ftruncate(fd, static_cast<off_t>(cursor)) < 0) {
    return ErrnoError("ftruncate");
  }
  f->config_.assign(config.size, 0);
  f->ResetConfig();
  return f;
}

void ModelPciFunction::ResetConfig() {
  std::fill(config_.begin(), config_.end(), 0);
  Put16(config_, 0x00, topo_.vendor_id);
  Put16(config_, 0x02, topo_.device_id);
  config_[0x08] = 0x10;  // revision
  config_[0x09] = static_cast<uint8_t>(topo_.class_code);
  config_[0x0a] = static_cast<uint8_t>(topo_.class_code >> 8);
  config_[0x0b] = static_cast<uint8_t>(topo_.class_code >> 16);
  Put16(config_, 0x2c, 0x1af4);  // QEMU's subsystem vendor and id
  Put16(config_, 0x2e, 0x1100);
  config_[0x3d] = topo_.intx_count > 0 ? 1 : 0;  // interrupt pin INTA
}

void ModelPciFunction::ResetRegions() {
  for (uint32_t i = 0; i < kPciNumRegions; ++i) {
    const Region& r = regions_[i];
    if (i == kPciConfigRegionIndex || r.size == 0) {
      continue;
    }
    // Punching a hole keeps the size and reads back zeros; it fails only on
    // a file that is not a memfd, which backing_ always is.
    (void)::fallocate(backing_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(r.offset), static_cast<off_t>(RoundUp(r.size)));
  }
}

namespace {

// OFD lock marks sit far past the backing's end, one byte per device fd.
constexpr off_t kMarkBase = off_t{1} << 52;

struct flock MarkLock(uint64_t mark) {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = kMarkBase + static_cast<off_t>(mark);
  lock.l_len = 1;
  return lock;
}

}  // namespace

Result<int> ModelPciFunction::NewFd(uint64_t mark) const {
  const std::string self = "/proc/self/fd/" + std::to_string(backing_.get());
  UniqueFd fd(::open(self.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    return ErrnoError("VFIO_GROUP_GET_DEVICE_FD");
  }
  struct flock lock = MarkLock(mark);
  if (::fcntl(fd.get(), F_OFD_SETLK, &lock) != 0) {
    return ErrnoError("VFIO_GROUP_GET_DEVICE_FD: mark");
  }
  return fd.release();
}

bool ModelPciFunction::StillReferenced(uint64_t mark) const {
  struct flock probe = MarkLock(mark);
  if (::fcntl(backing_.get(), F_OFD_GETLK, &probe) != 0) {
    return false;
  }
  return probe.l_type != F_UNLCK;
}

void ModelPciFunction::Closed() {
  if (--open_count_ == 0) {  // vfio_pci_core_disable(): IRQs off, device reset
    DisableIrqs();
    ResetConfig();
  }
}

void ModelPciFunction::DisableIrqs() {
  irqs_.active = -1;
  irqs_.vectors.clear();
  irqs_.intx_masked = false;
  for (UniqueFd& fd : irqs_.err_req) {
    fd.reset();
  }
}

Result<int> ModelPciFunction::Ioctl(unsigned long request, unsigned long arg) {
  // The ioctl ABI passes the argument as an integer that holds an address.
  void* p = reinterpret_cast<void*>(arg);  // NOLINT(performance-no-int-to-ptr)
  switch (request) {
    case VFIO_DEVICE_GET_INFO:
      return GetInfo(p);
    case VFIO_DEVICE_GET_REGION_INFO:
      return GetRegionInfo(p);
    case VFIO_DEVICE_GET_IRQ_INFO:
      return GetIrqInfo(p);
    case VFIO_DEVICE_SET_IRQS:
      return SetIrqs(p);
    case VFIO_DEVICE_RESET:
      if (!topo_.can_reset) {
        return Fail(EINVAL, "VFIO_DEVICE_RESET", "device cannot be reset");
      }
      ResetConfig();
      ResetRegions();
      return 0;
    default:
      return Fail(ENOTTY, "device ioctl", "not handled by the vfio-pci model");
  }
}

Result<int> ModelPciFunction::GetInfo(void* arg) const {
  size_t minsz = offsetof(vfio_device_info, num_irqs) + sizeof(uint32_t);
  constexpr size_t kCapsz = offsetof(vfio_device_info, cap_offset) + sizeof(uint32_t);
  vfio_device_info info{};
  std::memcpy(&info, arg, minsz);
  if (info.argsz < minsz) {
    return Fail(EINVAL, "VFIO_DEVICE_GET_INFO", "argsz too small");
  }
  if (info.argsz >= kCapsz) {
    minsz = kCapsz;
    info.cap_offset = 0;
  }
  info.flags = VFIO_DEVICE_FLAGS_PCI | (topo_.can_reset ? VFIO_DEVICE_FLAGS_RESET : 0);
  info.num_regions = VFIO_PCI_NUM_REGIONS;
  info.num_irqs = VFIO_PCI_NUM_IRQS;
  std::memcpy(arg, &info, minsz);
  return 0;
}

Result<int> ModelPciFunction::GetRegionInfo(void* arg) const {
  constexpr size_t kMinsz = sizeof(vfio_region_info);  // offsetofend(offset)
  vfio_region_info info{};
  std::memcpy(&info, arg, kMinsz);
  if (info.argsz < kMinsz || info.index >= kPciNumRegions) {
    return Fail(EINVAL, "VFIO_DEVICE_GET_REGION_INFO", "argsz too small or bad index");
  }
  const Region& r = regions_[info.index];
  info.offset = r.offset;
  info.size = r.size;
  info.flags = r.flags;
  info.cap_offset = 0;
  if (!r.sparse.empty()) {
    vfio_region_info_cap_sparse_mmap head{};
    head.nr_areas = static_cast<uint32_t>(r.sparse.size());
    std::vector<std::byte> body(CapBody(head).begin(), CapBody(head).end());
    for (const SparseArea& a : r.sparse) {
      const vfio_region_sparse_mmap_area area{a.offset, a.size};
      body.insert(body.end(), ObjectBytes(area).begin(), ObjectBytes(area).end());
    }
    CapChainBuilder caps;
    caps.Add(VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, body);
    info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
    caps.PlaceBehind(arg, sizeof info, info.argsz, info.cap_offset);
  }
  std::memcpy(arg, &info, kMinsz);
  return 0;
}

uint32_t ModelPciFunction::IrqCount(uint32_t index) const {
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      return topo_.intx_count > 0 ? 1 : 0;
    case VFIO_PCI_MSI_IRQ_INDEX:
      return topo_.msi_count;
    case VFIO_PCI_MSIX_IRQ_INDEX:
      return topo_.msix_count;
    case VFIO_PCI_ERR_IRQ_INDEX:
      return topo_.pcie ? 1 : 0;
    case VFIO_PCI_REQ_IRQ_INDEX:
      return 1;
    default:
      return 0;
  }
}

Result<int> ModelPciFunction::GetIrqInfo(void* arg) const {
  constexpr size_t kMinsz = sizeof(vfio_irq_info);
  vfio_irq_info info{};
  std::memcpy(&info, arg, kMinsz);
  if (info.argsz < kMinsz || info.index >= kPciNumIrqs ||
      (info.index == VFIO_PCI_ERR_IRQ_INDEX && !topo_.pcie)) {
    return Fail(EINVAL, "VFIO_DEVICE_GET_IRQ_INFO", "argsz too small or bad index");
  }
  info.flags = VFIO_IRQ_INFO_EVENTFD;
  if (info.index == VFIO_PCI_INTX_IRQ_INDEX) {
    info.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
  } else {
    info.flags |= VFIO_IRQ_INFO_NORESIZE;
  }
  info.count = IrqCount(info.index);
  std::memcpy(arg, &info, kMinsz);
  return 0;
}

const ModelPciFunction::Region* ModelPciFunction::RegionAt(uint64_t off, uint32_t* index) const {
  for (uint32_t i = 0; i < kPciNumRegions; ++i) {
    const Region& r = regions_[i];
    if (r.size != 0 && off >= r.offset && off - r.offset < r.size) {
      *index = i;
      return &r;
    }
  }
  return nullptr;
}

Result<size_t> ModelPciFunction::Read(int /*fd*/, void* buf, size_t len, uint64_t off) const {
  uint32_t index = 0;
  const Region* r = RegionAt(off, &index);
  if (r == nullptr || !(r->flags & kRegionFlagRead)) {
    return Fail(EINVAL, "pread", "offset is not in a readable region");
  }
  uint64_t pos = off - r->offset;
  size_t n = static_cast<size_t>(std::min<uint64_t>(len, r->size - pos));
  if (index == kPciConfigRegionIndex) {
    std::memcpy(buf, config_.data() + pos, n);
    return n;
  }
  ssize_t got = ::pread(backing_.get(), buf, n, static_cast<off_t>(off));
  if (got < 0) {
    return ErrnoError("pread");
  }
  return static_cast<size_t>(got);
}

Result<size_t> ModelPciFunction::Write(int /*fd*/, const void* buf, size_t len, uint64_t off) {
  uint32_t index = 0;
  const Region* r = RegionAt(off, &index);
  if (r == nullptr || !(r->flags & kRegionFlagWrite)) {
    return Fail(EINVAL, "pwrite", "offset is not in a writable region");
  }
  uint64_t pos = off - r->offset;
  size_t n = static_cast<size_t>(std::min<uint64_t>(len, r->size - pos));
  if (index == kPciConfigRegionIndex) {
    // Only the command register is writable; vfio-pci drops writes to
    // read-only fields, so they succeed without effect.
    const auto* src = static_cast<const uint8_t*>(buf);
    for (size_t i = 0; i < n; ++i) {
      if (pos + i >= kCommandOffset && pos + i < kCommandOffset + kCommandSize) {
        config_[pos + i] = src[i];
      }
    }
    return n;
  }
  ssize_t put = ::pwrite(backing_.get(), buf, n, static_cast<off_t>(off));
  if (put < 0) {
    return ErrnoError("pwrite");
  }
  return static_cast<size_t>(put);
}

Result<void> ModelPciFunction::CheckMmap(size_t len, int flags, uint64_t off) const {
  uint32_t index = 0;
  const Region* r = RegionAt(off, &index);
  if (r == nullptr || !(r->flags & kRegionFlagMmap) || (flags & MAP_SHARED) == 0 || len == 0) {
    return Fail(EINVAL, "mmap", "not a shared mapping of an mmap-able region");
  }
  uint64_t pos = off - r->offset;
  if (len > r->size - pos) {
    return Fail(EINVAL, "mmap", "mapping extends past the region");
  }
  if (r->sparse.empty()) {
    return Ok();
  }
  for (const SparseArea& a : r->sparse) {
    if (pos >= a.offset && pos + len <= a.offset + a.size) {
      return Ok();
    }
  }
  return Fail(EINVAL, "mmap", "mapping is not inside a sparse-mmap area");
}

}  // namespace vfiod::kernel
