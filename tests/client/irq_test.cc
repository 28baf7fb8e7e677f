// The client library's irq section without a device: a fake IrqOs answers
// GET_IRQ_INFO and records every SET_IRQS payload, while the eventfds and
// their reads and polls are real. (The real kernel and devices: the edu_dma
// and nvme_identify examples in the VM, tests/vfioctl.)
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "client/vfiod_irq.h"

namespace vfiod::client {
namespace {

using std::chrono::milliseconds;

constexpr int kDevice = 1000;  // never a real fd here: only the fake sees it

/// vfio_irq_set without its flexible data[] (which cannot sit in a struct).
struct IrqSetHead {
  uint32_t argsz, flags, index, start, count;
};
static_assert(sizeof(IrqSetHead) == sizeof(vfio_irq_set));

/// One SET_IRQS as the kernel would have read it.
struct SetCall {
  IrqSetHead head{};
  std::vector<int32_t> fds;
  bool fds_open = true;  ///< every fd in the payload was open at the time
};

class FakeDevice : public IrqOs {
 public:
  FakeDevice() {
    info[VFIO_PCI_INTX_IRQ_INDEX] = {
        VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1};
    info[VFIO_PCI_MSI_IRQ_INDEX] = {VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1};
    info[VFIO_PCI_MSIX_IRQ_INDEX] = {VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 8};
  }

  int Ioctl(int fd, unsigned long request, void* arg) override {
    EXPECT_EQ(fd, kDevice);
    if (request == VFIO_DEVICE_GET_IRQ_INFO) {
      auto* q = static_cast<vfio_irq_info*>(arg);
      EXPECT_EQ(q->argsz, sizeof(vfio_irq_info));
      if (info_errno != 0) {
        return Failing(info_errno);
      }
      auto it = info.find(q->index);
      if (it == info.end()) {
        return Failing(EINVAL);
      }
      q->flags = it->second.first;
      q->count = it->second.second;
      return 0;
    }
    EXPECT_EQ(request, VFIO_DEVICE_SET_IRQS);
    SetCall call;
    std::memcpy(&call.head, arg, sizeof(call.head));
    const size_t n = (call.head.argsz - sizeof(vfio_irq_set)) / sizeof(int32_t);
    call.fds.resize(n);
    if (n != 0) {
      std::memcpy(call.fds.data(), static_cast<uint8_t*>(arg) + sizeof(vfio_irq_set),
                  n * sizeof(int32_t));
    }
    for (int32_t efd : call.fds) {
      call.fds_open = call.fds_open && ::fcntl(efd, F_GETFD) >= 0;
    }
    sets.push_back(call);
    return set_errno != 0 ? Failing(set_errno) : 0;
  }
  int Poll(pollfd* fds, nfds_t count, int timeout_ms) override {
    ++polls;
    if (eintr_polls != 0) {
      eintr_polls -= eintr_polls > 0 ? 1 : 0;  // negative: EINTR for ever
      return Failing(EINTR);
    }
    return ::poll(fds, count, timeout_ms);
  }
  ssize_t Read(int fd, void* buf, size_t size) override { return ::read(fd, buf, size); }

  std::map<uint32_t, std::pair<uint32_t, uint32_t>> info;  ///< index -> flags, count
  std::vector<SetCall> sets;
  int info_errno = 0;
  int set_errno = 0;
  int eintr_polls = 0;
  int polls = 0;

 private:
  static int Failing(int err) {
    errno = err;
    return -1;
  }
};

void Fire(const IrqSet& set, uint32_t vector, uint64_t times = 1) {
  ASSERT_EQ(::write(set.eventfd(vector), &times, sizeof(times)), 8);
}

int OpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (::readdir(d) != nullptr) {
    ++n;
  }
  ::closedir(d);
  return n;
}

void ExpectDisable(const SetCall& call, uint32_t index) {
  EXPECT_EQ(call.head.argsz, sizeof(vfio_irq_set));
  EXPECT_EQ(call.head.flags, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER);
  EXPECT_EQ(call.head.index, index);
  EXPECT_EQ(call.head.start, 0u);
  EXPECT_EQ(call.head.count, 0u);
  EXPECT_TRUE(call.fds.empty());
}

TEST(ClientIrq, InfoReportsFlagsAndCount) {
  FakeDevice dev;
  auto intx = GetIrqInfo(kDevice, IrqIndex::kIntx, dev);
  ASSERT_TRUE(intx) << intx.error().message();
  EXPECT_TRUE(intx->eventfd());
  EXPECT_TRUE(intx->automasked());
  EXPECT_EQ(intx->count, 1u);
  auto msix = GetIrqInfo(kDevice, IrqIndex::kMsix, dev);
  ASSERT_TRUE(msix);
  EXPECT_FALSE(msix->automasked());
  EXPECT_EQ(msix->count, 8u);
  dev.info_errno = ENOTTY;  // not a VFIO device fd
  auto bad = GetIrqInfo(kDevice, IrqIndex::kMsi, dev);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ENOTTY);
  EXPECT_EQ(GetIrqInfo(kDevice, static_cast<IrqIndex>(3), dev).error().code, EINVAL);
}

// The payload of each index: DATA_EVENTFD | ACTION_TRIGGER from vector 0,
// one fd per vector, the set's own eventfds; disabled before they close.
TEST(ClientIrq, EnableHandsItsEventfdsToTheKernelAndDisablesBeforeClosing) {
  const std::pair<IrqIndex, uint32_t> cases[] = {
      {IrqIndex::kIntx, 1}, {IrqIndex::kMsi, 1}, {IrqIndex::kMsix, 3}};
  for (auto [index, count] : cases) {
    FakeDevice dev;
    {
      auto set = IrqSet::Enable(kDevice, index, count, dev);
      ASSERT_TRUE(set) << set.error().message();
      EXPECT_EQ(set->count(), count);
      ASSERT_EQ(dev.sets.size(), 1u);
      const SetCall& on = dev.sets[0];
      EXPECT_EQ(on.head.argsz, sizeof(vfio_irq_set) + count * sizeof(int32_t));
      EXPECT_EQ(on.head.flags, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
      EXPECT_EQ(on.head.index, static_cast<uint32_t>(index));
      EXPECT_EQ(on.head.start, 0u);
      EXPECT_EQ(on.head.count, count);
      ASSERT_EQ(on.fds.size(), count);
      for (uint32_t v = 0; v < count; ++v) {
        EXPECT_EQ(on.fds[v], set->eventfd(v));
        EXPECT_EQ(::fcntl(on.fds[v], F_GETFD), FD_CLOEXEC);
        EXPECT_NE(::fcntl(on.fds[v], F_GETFL) & O_NONBLOCK, 0);
      }
      EXPECT_EQ(set->eventfd(count), -1);
    }
    ASSERT_EQ(dev.sets.size(), 2u) << IrqIndexName(index);
    ExpectDisable(dev.sets[1], static_cast<uint32_t>(index));
    EXPECT_TRUE(dev.sets[1].fds_open);
    for (int32_t efd : dev.sets[0].fds) {
      EXPECT_LT(::fcntl(efd, F_GETFD), 0) << "eventfd " << efd << " left open";
    }
  }
}

TEST(ClientIrq, BadCountsAndIndexesAreRefusedBeforeAnySetIrqs) {
  FakeDevice dev;
  dev.info[VFIO_PCI_MSIX_IRQ_INDEX] = {VFIO_IRQ_INFO_EVENTFD, 0};  // no MSI-X (edu)
  dev.info[VFIO_PCI_MSI_IRQ_INDEX] = {0, 1};                       // no eventfd
  const int before = OpenFds();
  EXPECT_EQ(IrqSet::Enable(kDevice, IrqIndex::kIntx, 0, dev).error().code, EINVAL);
  EXPECT_EQ(IrqSet::Enable(kDevice, IrqIndex::kIntx, 2, dev).error().code, EINVAL);
  EXPECT_EQ(IrqSet::Enable(kDevice, IrqIndex::kMsix, 1, dev).error().code, EINVAL);
  EXPECT_EQ(IrqSet::Enable(kDevice, IrqIndex::kMsi, 1, dev).error().code, ENOTSUP);
  EXPECT_EQ(IrqSet::Enable(kDevice, static_cast<IrqIndex>(4), 1, dev).error().code, EINVAL);
  dev.info_errno = EBADF;
  EXPECT_EQ(IrqSet::Enable(kDevice, IrqIndex::kIntx, 1, dev).error().code, EBADF);
  EXPECT_TRUE(dev.sets.empty());
  EXPECT_EQ(OpenFds(), before);
}

TEST(ClientIrq, AKernelRefusalLeavesNothingOpenAndNothingToDisable) {
  FakeDevice dev;
  dev.set_errno = EINVAL;  // e.g. MSI is on while INTx is asked for
  const int before = OpenFds();
  auto set = IrqSet::Enable(kDevice, IrqIndex::kMsix, 4, dev);
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().code, EINVAL);
  EXPECT_NE(set.error().message().find("MSI-X"), std::string::npos) << set.error().message();
  EXPECT_EQ(OpenFds(), before);
  EXPECT_EQ(dev.sets.size(), 1u);  // the refused enable, no disable after it
}

TEST(ClientIrq, ConsumeFindsNothingUntilTheVectorFiresThenTakesTheCount) {
  FakeDevice dev;
  auto set = IrqSet::Enable(kDevice, IrqIndex::kMsix, 2, dev);
  ASSERT_TRUE(set);
  EXPECT_EQ(set->TryConsume(0).error().code, EAGAIN);
  Fire(*set, 1, 3);
  EXPECT_EQ(set->TryConsume(0).error().code, EAGAIN);  // vectors are apart
  EXPECT_EQ(set->TryConsume(1).value_or(0), 3u);
  EXPECT_EQ(set->TryConsume(1).error().code, EAGAIN);
  EXPECT_EQ(set->TryConsume(2).error().code, EINVAL);
}

TEST(ClientIrq, WaitReturnsWhatFiredAndTimesOutOtherwise) {
  FakeDevice dev;
  auto set = IrqSet::Enable(kDevice, IrqIndex::kMsi, 1, dev);
  ASSERT_TRUE(set);
  auto none = set->Wait(0, milliseconds(0));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ETIMEDOUT);
  Fire(*set, 0);
  EXPECT_EQ(set->Wait(0, milliseconds(0)).value_or(0), 1u);
  Fire(*set, 0, 2);
  EXPECT_EQ(set->Wait(0, milliseconds(-1)).value_or(0), 2u);  // no limit
  Fire(*set, 0);
  EXPECT_EQ(set->Wait(0, milliseconds::max()).value_or(0), 1u);  // no overflow either
  EXPECT_EQ(set->Wait(1, milliseconds(0)).error().code, EINVAL);
}

TEST(ClientIrq, ASignalDuringTheWaitNeitherEndsItNorStretchesIt) {
  FakeDevice dev;
  auto set = IrqSet::Enable(kDevice, IrqIndex::kMsi, 1, dev);
  ASSERT_TRUE(set);
  Fire(*set, 0);
  dev.eintr_polls = 2;
  EXPECT_EQ(set->Wait(0, milliseconds(10'000)).value_or(0), 1u);
  EXPECT_EQ(dev.polls, 3);
  dev.eintr_polls = -1;  // every poll interrupted: the deadline still holds
  Fire(*set, 0);
  auto late = set->Wait(0, milliseconds(20));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ETIMEDOUT);
  dev.eintr_polls = -1;
  auto now = set->Wait(0, milliseconds(0));
  EXPECT_EQ(now.error().code, ETIMEDOUT);
}

TEST(ClientIrq, UnmaskReachesTheKernelOnlyForTheAutomaskedIndex) {
  FakeDevice dev;
  {
    auto intx = IrqSet::Enable(kDevice, IrqIndex::kIntx, 1, dev);
    ASSERT_TRUE(intx);
    ASSERT_TRUE(intx->Unmask(0));
    ASSERT_EQ(dev.sets.size(), 2u);
    const SetCall& un = dev.sets[1];
    EXPECT_EQ(un.head.argsz, sizeof(vfio_irq_set));
    EXPECT_EQ(un.head.flags, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK);
    EXPECT_EQ(un.head.index, VFIO_PCI_INTX_IRQ_INDEX);
    EXPECT_EQ(un.head.start, 0u);
    EXPECT_EQ(un.head.count, 1u);
    EXPECT_EQ(intx->Unmask(1).error().code, EINVAL);
    dev.set_errno = EIO;
    EXPECT_EQ(intx->Unmask(0).error().code, EIO);
    dev.set_errno = 0;
  }
  dev.sets.clear();
  auto msi = IrqSet::Enable(kDevice, IrqIndex::kMsi, 1, dev);
  ASSERT_TRUE(msi);
  EXPECT_TRUE(msi->Unmask(0));
  EXPECT_EQ(dev.sets.size(), 1u);  // the enable only
}

TEST(ClientIrq, DisableIsIdempotentAndAFailedOneKeepsTheEventfds) {
  FakeDevice dev;
  auto set = IrqSet::Enable(kDevice, IrqIndex::kMsix, 2, dev);
  ASSERT_TRUE(set);
  const int efd = set->eventfd(0);
  dev.set_errno = ENODEV;
  auto failed = set->Disable();
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ENODEV);
  EXPECT_TRUE(set->enabled());
  EXPECT_GE(::fcntl(efd, F_GETFD), 0);  // the kernel may still signal it
  dev.set_errno = 0;
  ASSERT_TRUE(set->Disable());
  EXPECT_FALSE(set->enabled());
  EXPECT_LT(::fcntl(efd, F_GETFD), 0);
  ASSERT_TRUE(set->Disable());
  EXPECT_EQ(dev.sets.size(), 3u);  // enable, failed disable, disable
  EXPECT_EQ(set->TryConsume(0).error().code, EINVAL);
  EXPECT_EQ(set->Unmask(0).error().code, EINVAL);
}

TEST(ClientIrq, AMovedSetHasOneOwnerAndAssignmentDisablesTheOldFirst) {
  FakeDevice dev;
  auto first = IrqSet::Enable(kDevice, IrqIndex::kMsix, 1, dev);
  ASSERT_TRUE(first);
  IrqSet held(std::move(*first));
  EXPECT_FALSE(first->enabled());
  EXPECT_TRUE(held.enabled());
  first = IrqSet();  // the moved-from set disables nothing
  EXPECT_EQ(dev.sets.size(), 1u);
  auto second = IrqSet::Enable(kDevice, IrqIndex::kIntx, 1, dev);
  ASSERT_TRUE(second);
  held = std::move(*second);
  ASSERT_EQ(dev.sets.size(), 3u);
  ExpectDisable(dev.sets[2], VFIO_PCI_MSIX_IRQ_INDEX);
  EXPECT_EQ(held.index(), IrqIndex::kIntx);
  EXPECT_TRUE(held.Disable());
  ASSERT_EQ(dev.sets.size(), 4u);
  ExpectDisable(dev.sets[3], VFIO_PCI_INTX_IRQ_INDEX);
}

}  // namespace
}  // namespace vfiod::client
