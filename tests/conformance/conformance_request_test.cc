// The device request IRQ (VFIO_PCI_REQ_IRQ_INDEX): how a user hears that the
// kernel wants the device back (an unbind, a hot unplug). vfio-pci keeps one
// trigger per device (vfio_pci_set_req_trigger ->
// vfio_pci_set_ctx_trigger_single), set through any fd of the device and
// dropped with its last fd; the request itself (vfio_pci_core_request) signals
// it, which the VM proves with a real unbind (vm_lingering, VmReleaseTest).
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "conformance_fixture.h"

namespace vfiod::conformance {
namespace {

class RequestIrq : public DeviceOpen {
 protected:
  /// VFIO_DEVICE_SET_IRQS on the REQ index with `data` behind the header.
  Result<int> Set(uint32_t flags, uint32_t start, uint32_t count, const void* data = nullptr,
                  size_t len = 0) {
    std::vector<std::byte> buf(sizeof(vfio_irq_set) + len);
    vfio_irq_set hdr{};
    hdr.argsz = static_cast<uint32_t>(buf.size());
    hdr.flags = flags;
    hdr.index = VFIO_PCI_REQ_IRQ_INDEX;
    hdr.start = start;
    hdr.count = count;
    std::memcpy(buf.data(), &hdr, sizeof hdr);
    if (len != 0) {
      std::memcpy(buf.data() + sizeof hdr, data, len);
    }
    return k_.ioctl(dev_.get(), VFIO_DEVICE_SET_IRQS, buf.data());
  }
  Result<int> Trigger(int32_t fd) {
    return Set(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, &fd, sizeof fd);
  }
  /// Loopback: asks the kernel to signal the trigger as a request would.
  Result<int> Loopback() {
    const uint8_t yes = 1;
    return Set(VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, &yes, 1);
  }
  /// How many times `efd` was signalled since the last call (0: none).
  static uint64_t Consume(int efd) {
    uint64_t n = 0;
    return ::read(efd, &n, sizeof n) == static_cast<ssize_t>(sizeof n) ? n : 0;
  }
};

TEST_F(RequestIrq, InfoHasOneEventfdVector) {
  auto info = kernel::GetIrqInfo(k_, dev_.get(), kernel::kPciReqIrqIndex);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->count, 1u);
  EXPECT_EQ(info->flags, kernel::kIrqFlagEventfd | kernel::kIrqFlagNoresize);
}

TEST_F(RequestIrq, TriggerIsSignalledUntilUnset) {
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  // Nothing registered: a loopback without data has nothing to signal.
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1)), EINVAL);
  EXPECT_EQ(Errno(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciReqIrqIndex)), EINVAL);
  EXPECT_EQ(Errno(Loopback()), 0);  // a bool loopback is a no-op then

  const int fds[] = {efd};
  ASSERT_TRUE(kernel::SetIrqEventfds(k_, dev_.get(), kernel::kPciReqIrqIndex, 0, fds));
  ASSERT_TRUE(Loopback());
  EXPECT_EQ(Consume(efd), 1u);
  ASSERT_TRUE(Set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1));
  EXPECT_EQ(Consume(efd), 1u);
  // One vector, from 0; only TRIGGER is an action of this index.
  const int32_t two[] = {efd, efd};
  EXPECT_EQ(
      Errno(Set(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 2, two, sizeof two)),
      EINVAL);
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 1, two,
                      sizeof(int32_t))),
            EINVAL);
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 0, 1)), ENOTTY);
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1)), ENOTTY);
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0)), EINVAL);
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0)), EINVAL);

  // Count 0 without data unsets it: nothing is signalled any more.
  ASSERT_TRUE(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciReqIrqIndex));
  EXPECT_TRUE(Loopback());
  EXPECT_EQ(Consume(efd), 0u);
  // An fd of -1 unsets it too.
  ASSERT_TRUE(Trigger(efd));
  ASSERT_TRUE(Trigger(-1));
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1)), EINVAL);
  EXPECT_EQ(Consume(efd), 0u);
  ::close(efd);
}

// The trigger is the device's, not the fd's: one set through a second fd of
// the device is signalled through the first, and it goes with the last fd.
TEST_F(RequestIrq, TriggerBelongsToTheDeviceAndGoesWithItsLastFd) {
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  auto second = kernel::GetDeviceFd(k_, group_.get(), device());
  ASSERT_TRUE(second) << second.error().message();
  KernelFd other(&k_, *second);
  const int fds[] = {efd};
  ASSERT_TRUE(kernel::SetIrqEventfds(k_, other.get(), kernel::kPciReqIrqIndex, 0, fds));
  ASSERT_TRUE(Loopback());  // through dev_
  EXPECT_EQ(Consume(efd), 1u);
  other.reset();  // dev_ still open: the trigger stays
  ASSERT_TRUE(Loopback());
  EXPECT_EQ(Consume(efd), 1u);

  dev_.reset();  // the last fd: vfio_pci_core_close_device drops the trigger
  auto again = kernel::GetDeviceFd(k_, group_.get(), device());
  ASSERT_TRUE(again) << again.error().message();
  dev_ = KernelFd(&k_, *again);
  EXPECT_EQ(Errno(Set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1)), EINVAL);
  EXPECT_EQ(Consume(efd), 0u);
  ::close(efd);
}

// A trigger set while one is set replaces it, with no unset between: what a
// vfiod started after a SIGKILL relies on, whose predecessor's eventfd is
// still the trigger (its fds died with it; the device's fd in the store did
// not). Only the new eventfd is signalled from then on.
TEST_F(RequestIrq, ANewTriggerReplacesTheOldOne) {
  int old_efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int new_efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(old_efd, 0);
  ASSERT_GE(new_efd, 0);
  ASSERT_TRUE(Trigger(old_efd));
  ASSERT_TRUE(Trigger(new_efd));
  ASSERT_TRUE(Loopback());
  EXPECT_EQ(Consume(new_efd), 1u);
  EXPECT_EQ(Consume(old_efd), 0u);
  ASSERT_TRUE(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciReqIrqIndex));
  EXPECT_TRUE(Loopback());
  EXPECT_EQ(Consume(new_efd), 0u);
  ::close(old_efd);
  ::close(new_efd);
}

}  // namespace
}  // namespace vfiod::conformance
