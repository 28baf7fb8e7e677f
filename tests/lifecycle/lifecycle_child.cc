// The "daemon" the fd store tests restart: a real process started by
// FdStoreSupervisor with LISTEN_* set. It reports on stdout what it got back
// and can put things into the store, so a test can follow fds across a
// restart.
//   lifecycle_child list [K]        ListenFds(); "ok N", then "fd NAME DEV INO CLOEXEC"
//                                   per fd (or "error ERRNO MESSAGE"); then "open" and
//                                   the fds of 3 .. 3+K-1 still open; "env" and the
//                                   LISTEN_* variables still set.
//   lifecycle_child store NAME...   one memfd per NAME, stored under NAME; "stored NAME DEV INO"
//   lifecycle_child remove NAME     FDSTOREREMOVE=1 for NAME
//   lifecycle_child record GEN      StoreStateRecord of a record of generation GEN
//   lifecycle_child pick            ListenFds(), PickStateRecord(); "record GEN" or "error ..."
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "lifecycle/listen_fds.h"
#include "lifecycle/notify.h"
#include "lifecycle/record_store.h"

namespace lc = vfiod::lifecycle;

namespace {

void PrintStat(const char* tag, const std::string& name, int fd) {
  struct stat st {};
  (void)::fstat(fd, &st);
  int flags = ::fcntl(fd, F_GETFD);
  std::printf("%s %s %llu %llu %d\n", tag, name.c_str(), static_cast<unsigned long long>(st.st_dev),
              static_cast<unsigned long long>(st.st_ino), (flags & FD_CLOEXEC) != 0 ? 1 : 0);
}

int List(int probe) {
  auto fds = lc::ListenFds();
  if (!fds) {
    std::printf("error %d %s\n", fds.error().code, fds.error().message().c_str());
  } else {
    std::printf("ok %zu\n", fds->size());
    for (const auto& named : *fds) {
      PrintStat("fd", named.name, named.fd.get());
    }
  }
  std::printf("open");
  for (int fd = lc::kListenFdsStart; fd < lc::kListenFdsStart + probe; ++fd) {
    if (fds && std::any_of(fds->begin(), fds->end(),
                           [fd](const lc::NamedFd& n) { return n.fd.get() == fd; })) {
      continue;  // ours, reported above
    }
    if (::fcntl(fd, F_GETFD) >= 0) {
      std::printf(" %d", fd);
    }
  }
  std::printf("\nenv");
  for (const char* var : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) {
    if (std::getenv(var) != nullptr) {
      std::printf(" %s", var);
    }
  }
  std::printf("\n");
  return 0;
}

int Store(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    int fd = ::memfd_create(argv[i], MFD_CLOEXEC);
    if (fd < 0 || ::write(fd, argv[i], std::strlen(argv[i])) < 0) {
      return 2;
    }
    const int fds[] = {fd};
    auto sent = lc::StoreFds(argv[i], fds);
    if (!sent || !*sent) {
      std::printf("error %s\n", sent ? "no NOTIFY_SOCKET" : sent.error().message().c_str());
      return 3;
    }
    PrintStat("stored", argv[i], fd);
  }
  return 0;
}

int Pick() {
  auto fds = lc::ListenFds();
  if (!fds) {
    std::printf("error %d %s\n", fds.error().code, fds.error().message().c_str());
    return 0;
  }
  auto record = lc::PickStateRecord(*fds);
  if (!record) {
    std::printf("error %d %s\n", record.error().code, record.error().message().c_str());
    return 0;
  }
  std::printf("record %llu %zu\n", static_cast<unsigned long long>(record->generation),
              record->containers.size());
  return 0;
}

int Record(uint64_t generation) {
  lc::StateRecord record;
  record.generation = generation;
  record.next_id = 2;
  lc::ContainerRecord container;
  container.id = 1;
  container.owner_uid = 1000;
  container.fd_name = "c-1";
  container.name = "ring";
  record.containers.push_back(container);
  auto stored = lc::StoreStateRecord(record);
  if (!stored || !*stored) {
    std::printf("error %s\n", stored ? "no NOTIFY_SOCKET" : stored.error().message().c_str());
    return 3;
  }
  std::printf("recorded %llu\n", static_cast<unsigned long long>(generation));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "list") {
    return List(argc > 2 ? std::atoi(argv[2]) : 8);
  }
  if (mode == "store") {
    return Store(argc, argv);
  }
  if (mode == "remove" && argc == 3) {
    auto sent = lc::RemoveFds(argv[2]);
    return sent && *sent ? 0 : 3;
  }
  if (mode == "record" && argc == 3) {
    return Record(std::strtoull(argv[2], nullptr, 10));
  }
  if (mode == "pick") {
    return Pick();
  }
  std::fprintf(stderr, "usage: lifecycle_child list|store|remove|record|pick ...\n");
  return 64;
}
