#include "vfioctl/bench_load.h"

#include <linux/memfd.h>
#include <linux/mman.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <span>
#include <thread>

#include "proto/jsonrpc.h"

namespace vfiod::vfioctl {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::unexpected<Error> CallFailed(const std::string& method, const wire::RpcError& e) {
  return Fail(EIO, method, e.Describe());
}

// Maps `size` bytes of `fd` at an address aligned to `align`.
Result<void*> MapAlignedView(int fd, uint64_t size, uint64_t align) {
  void* reserve = ::mmap(nullptr, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (reserve == MAP_FAILED) {
    return ErrnoError("mmap (reserve)");
  }
  // Pointer arithmetic inside the reservation, not integers cast back to pointers.
  const uint64_t base = reinterpret_cast<uint64_t>(reserve);
  const uint64_t head = ((base + align - 1) & ~(align - 1)) - base;
  std::byte* aligned = static_cast<std::byte*>(reserve) + head;
  void* view = ::mmap(aligned, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (view == MAP_FAILED) {
    auto err = ErrnoError("mmap (memfd)");
    ::munmap(reserve, size + align);
    return err;
  }
  if (head > 0) {
    ::munmap(reserve, head);
  }
  if (head < align) {
    ::munmap(aligned + size, align - head);
  }
  return view;
}

// Faults every page in, writable, so a map measures the map and not the fault.
Result<void> Populate(void* view, uint64_t size, uint64_t page) {
  if (::madvise(view, size, MADV_POPULATE_WRITE) == 0) {
    return Ok();
  }
  if (errno != EINVAL) {
    return ErrnoError("madvise(MADV_POPULATE_WRITE)");
  }
  auto* bytes = static_cast<volatile char*>(view);
  for (uint64_t off = 0; off < size; off += page) {
    bytes[off] = 0;
  }
  return Ok();
}

// `loops` times: dma.map_fd with `params` (and `fds`), then dma.free of the
// mapping, each timed request to reply.
Result<MapTimings> TimeMapLoops(client::Client& client, const nlohmann::json& params,
                                std::span<const int> fds, int loops) {
  MapTimings out;
  for (int i = 0; i < loops; ++i) {
    Clock::time_point start = Clock::now();
    auto mapped = client.Call("dma.map_fd", params, fds, client::kNoTimeout);
    out.map_s.push_back(Since(start));
    if (!mapped) {
      return CallFailed("dma.map_fd", mapped.error());
    }
    const uint64_t mapping = mapped->result.at("mapping");
    out.ioctls = mapped->result.value("ioctls", uint64_t{0});
    out.chunks = mapped->result.value("chunks", uint64_t{0});
    out.iova = mapped->result.value("iova", uint64_t{0});
    start = Clock::now();
    auto freed = client.Call("dma.free", {{"mapping", mapping}}, {}, client::kNoTimeout);
    out.unmap_s.push_back(Since(start));
    if (!freed) {
      return CallFailed("dma.free", freed.error());
    }
  }
  return out;
}

}  // namespace

Result<double> TimePing(client::Client& client) {
  const Clock::time_point start = Clock::now();
  auto reply = client.Call("ping");
  const double seconds = Since(start);
  if (!reply) {
    return CallFailed("ping", reply.error());
  }
  return seconds;
}

Result<std::vector<double>> CallLatencies(const std::string& socket, const std::string& method,
                                          int count) {
  auto client = VFIOD_TRY(client::Client::Connect(socket));
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const Clock::time_point start = Clock::now();
    auto reply = client.Call(method);
    samples.push_back(Since(start));
    if (!reply) {
      return CallFailed(method, reply.error());
    }
  }
  return samples;
}

Result<Rate> MeasureRate(const std::string& socket, const std::string& method, int clients,
                         double seconds) {
  if (clients < 1) {
    return Fail(EINVAL, "measure rate", "at least one client");
  }
  std::vector<client::Client> connections;
  connections.reserve(static_cast<size_t>(clients));
  for (int i = 0; i < clients; ++i) {
    connections.push_back(VFIOD_TRY(client::Client::Connect(socket)));
  }
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<bool> go{false};
  const auto duration = std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  threads.reserve(connections.size());
  Clock::time_point start;
  for (client::Client& c : connections) {
    threads.emplace_back([&, conn = &c] {
      while (!go.load(std::memory_order_acquire)) {
        std::this_thread::yield();
      }
      uint64_t mine = 0;
      while (Clock::now() - start < duration) {
        if (!conn->Call(method)) {
          failed.fetch_add(1);
          break;
        }
        ++mine;
      }
      ok.fetch_add(mine);
    });
  }
  start = Clock::now();
  go.store(true, std::memory_order_release);
  for (std::thread& t : threads) {
    t.join();
  }
  return Rate{
      .clients = clients, .requests = ok.load(), .errors = failed.load(), .seconds = Since(start)};
}

Result<MapTimings> TimeMapFd(client::Client& client, uint64_t container, int fd, uint64_t size,
                             int loops) {
  const int fds[] = {fd};
  const nlohmann::json params = {
      {"container", container}, {"fd", wire::FdRef(0)}, {"offset", 0}, {"size", size}};
  return TimeMapLoops(client, params, fds, loops);
}

Result<uint64_t> RegisterRegion(client::Client& client, int fd, uint64_t size) {
  const int fds[] = {fd};
  auto made = client.Call("dma.register", {{"fd", wire::FdRef(0)}, {"offset", 0}, {"size", size}},
                          fds, client::kNoTimeout);
  if (!made) {
    return CallFailed("dma.register", made.error());
  }
  return made->result.at("region").get<uint64_t>();
}

Result<void> UnregisterRegion(client::Client& client, uint64_t region) {
  auto done = client.Call("dma.unregister", {{"region", region}});
  if (!done) {
    return CallFailed("dma.unregister", done.error());
  }
  return Ok();
}

Result<MapTimings> TimeMapRegion(client::Client& client, uint64_t container, uint64_t region,
                                 uint64_t size, int loops) {
  const nlohmann::json params = {
      {"container", container}, {"region", region}, {"offset", 0}, {"size", size}};
  return TimeMapLoops(client, params, {}, loops);
}

Result<UniqueFd> MakeMemfd(uint64_t size, uint64_t page, bool thp, void** view) {
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  if (page == uint64_t{2} << 20) {
    flags |= MFD_HUGETLB | MFD_HUGE_2MB;
  } else if (page == uint64_t{1} << 30) {
    flags |= MFD_HUGETLB | MFD_HUGE_1GB;
  } else if (page != 0) {
    return Fail(EINVAL, "memfd", "page must be 0, 2M or 1G");
  }
  UniqueFd fd(::memfd_create("vfiod-bench", flags));
  if (!fd) {
    return ErrnoError("memfd_create");
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoError("ftruncate");
  }
  const uint64_t align = page != 0 ? page : uint64_t{2} << 20;
  void* mem = VFIOD_TRY(MapAlignedView(fd.get(), size, align));
  if (page == 0 && ::madvise(mem, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
    auto err = ErrnoError("madvise");
    ::munmap(mem, size);
    return err;
  }
  if (auto populated = Populate(mem, size, page != 0 ? page : 4096); !populated) {
    ::munmap(mem, size);
    return std::unexpected(populated.error());
  }
  *view = mem;
  return fd;
}

}  // namespace vfiod::vfioctl
