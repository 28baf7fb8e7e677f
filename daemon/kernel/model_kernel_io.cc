// ModelKernel: mmap/munmap/pread/pwrite on model fds, and introspection.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "kernel/ioctl_names.h"
#include "kernel/model_kernel.h"
#include "kernel/model_state.h"

namespace vfiod::kernel {
namespace {

/// The device behind a model fd; nullptr if the fd is not a model device.
/// Sets *model_fd when the fd is any model object.
ModelPciFunction* DeviceOf(ModelState& s, int fd, bool* model_fd) {
  auto it = s.fds.find(fd);
  *model_fd = it != s.fds.end();
  if (!*model_fd) {
    return nullptr;
  }
  auto* d = std::get_if<ModelDeviceFd>(&it->second);
  return d != nullptr ? d->function : nullptr;
}

}  // namespace

Result<void*> ModelKernel::mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  std::lock_guard lock(mu_);
  bool model_fd = false;
  ModelPciFunction* f = fd >= 0 ? DeviceOf(*state_, fd, &model_fd) : nullptr;
  if (model_fd && f == nullptr) {
    return Fail(ENODEV, "mmap", "container and group fds cannot be mapped");
  }
  if (f != nullptr) {
    VFIOD_TRY(f->CheckMmap(len, flags, static_cast<uint64_t>(off)));
  }
  void* p = ::mmap(addr, len, prot, flags, fd, off);
  if (p == MAP_FAILED) {
    return ErrnoError("mmap");
  }
  if (f != nullptr) {
    state_->AddMmio(reinterpret_cast<uint64_t>(p), len);
  }
  return p;
}

Result<void> ModelKernel::munmap(void* addr, size_t len) {
  std::lock_guard lock(mu_);
  if (::munmap(addr, len) < 0) {
    return ErrnoError("munmap");
  }
  state_->RemoveMmio(reinterpret_cast<uint64_t>(addr), len);
  return Ok();
}

Result<size_t> ModelKernel::pread(int fd, void* buf, size_t len, off_t off) {
  std::lock_guard lock(mu_);
  bool model_fd = false;
  ModelPciFunction* f = DeviceOf(*state_, fd, &model_fd);
  if (f != nullptr) {
    return f->Read(fd, buf, len, static_cast<uint64_t>(off));
  }
  if (model_fd) {
    return Fail(EINVAL, "pread", "container and group fds cannot be read");
  }
  ssize_t n = ::pread(fd, buf, len, off);
  return n < 0 ? ErrnoError("pread") : Result<size_t>(static_cast<size_t>(n));
}

Result<size_t> ModelKernel::pwrite(int fd, const void* buf, size_t len, off_t off) {
  std::lock_guard lock(mu_);
  bool model_fd = false;
  ModelPciFunction* f = DeviceOf(*state_, fd, &model_fd);
  if (f != nullptr) {
    return f->Write(fd, buf, len, static_cast<uint64_t>(off));
  }
  if (model_fd) {
    return Fail(EINVAL, "pwrite", "container and group fds cannot be written");
  }
  ssize_t n = ::pwrite(fd, buf, len, off);
  return n < 0 ? ErrnoError("pwrite") : Result<size_t>(static_cast<size_t>(n));
}

Result<int> ModelKernel::GroupOf(std::string_view bdf) const {
  for (const ModelGroup& g : topology_.groups) {
    for (const ModelDevice& d : g.devices) {
      if (d.bdf == bdf) {
        return g.id;
      }
    }
  }
  return Fail(ENODEV, "model group of " + std::string(bdf), "no such device");
}

uint64_t ModelKernel::LockedBytes() const {
  std::lock_guard lock(mu_);
  return state_->locked_bytes;
}

void ModelKernel::SetMemlockLimit(uint64_t bytes) {
  std::lock_guard lock(mu_);
  state_->knobs.memlock_limit = bytes;
}

Result<std::vector<ModelEntry>> ModelKernel::Entries(int container_fd) const {
  std::lock_guard lock(mu_);
  auto it = state_->fds.find(container_fd);
  const auto* c =
      it == state_->fds.end() ? nullptr : std::get_if<std::shared_ptr<ModelContainer>>(&it->second);
  if (c == nullptr) {
    return Fail(EBADF, "Mappings", "not a model container fd");
  }
  const auto& iommu = (*c)->iommu;
  if (!iommu) {
    return std::vector<ModelEntry>{};
  }
  return iommu->Entries();
}

uint64_t ModelKernel::IoctlCount(std::string_view name) const {
  std::optional<unsigned long> request = IoctlRequestByName(name);
  if (!request) {
    return 0;
  }
  std::lock_guard lock(mu_);
  auto it = ioctl_counts_.find(*request);
  return it == ioctl_counts_.end() ? 0 : it->second;
}

size_t ModelKernel::OpenFdCount() const {
  std::lock_guard lock(mu_);
  return state_->fds.size();
}

Result<bool> ModelKernel::TriggerIrq(int device_fd, uint32_t index, uint32_t vector) {
  std::lock_guard lock(mu_);
  bool model_fd = false;
  ModelPciFunction* f = DeviceOf(*state_, device_fd, &model_fd);
  if (f == nullptr) {
    return Fail(EBADF, "TriggerIrq", "not a model device fd");
  }
  return f->TriggerIrq(index, vector);
}

}  // namespace vfiod::kernel
