// The daemon the rpc fuzz target talks to: what daemon/main.cc builds (config
// -> model kernel and sysfs -> Service -> ServiceMethods -> rpc::Server on a
// unix socket), in this process, on the service tests' sysfs tree (edu and
// ivshmem on vfio-pci). One daemon serves every input; each input is one
// client connection, made as uid 65534 so the policy and quotas apply. The
// service's fd store hooks go to a stand-in that counts what is stored by
// name (no fds kept), under a small limits.max_stored_fds and a smaller
// share for the client's uid, so the fd store's budget is charged, refused
// (by either limit) and given back as under systemd.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/unique_fd.h"
#include "rpc/method_registry.h"
#include "rpc/methods.h"
#include "rpc/server.h"
#include "service/service.h"

namespace vfiod::fuzz {

inline constexpr uid_t kClientUid = 65534;
/// The limits the fuzz daemon runs with: small, so inputs of a few KiB reach
/// them (frame size, requests in flight, quotas, regions).
inline constexpr std::size_t kMaxFrameBytes = 4096;

class FuzzDaemon {
 public:
  FuzzDaemon();
  ~FuzzDaemon();
  FuzzDaemon(const FuzzDaemon&) = delete;
  FuzzDaemon& operator=(const FuzzDaemon&) = delete;

  /// A new client connection, its peer credentials those of kClientUid.
  [[nodiscard]] UniqueFd Connect();
  /// Waits (up to 10 s) until the close hook of every connection Connect()
  /// made has run; false on timeout. Woken by the hook, no polling.
  [[nodiscard]] bool WaitAllClosed();
  /// Puts the daemon back to its start state after a session: destroys the
  /// named containers that outlive it (false if an unnamed one survived) and
  /// rebinds devices the client unbound. Then status must count nothing.
  [[nodiscard]] bool Restore();
  /// After Restore: settles the store as a stored state record would
  /// (Service::RecordStored: regions whose memory is gone leave it). True
  /// when nothing is left in the stand-in store and nothing is charged.
  [[nodiscard]] bool StoreIsEmpty();
  [[nodiscard]] service::Service& service() { return *service_; }
  [[nodiscard]] std::size_t connection_count() const { return server_->connection_count(); }
  [[nodiscard]] std::vector<std::string> DescribeConnections() {
    return server_->DescribeConnections(std::chrono::seconds(5));
  }

 private:
  /// Connections made, and close hooks run (the last thing a close does).
  std::mutex mu_;
  std::condition_variable closed_cv_;
  std::size_t connected_ = 0;                  // guarded by mu_
  std::size_t closed_ = 0;                     // guarded by mu_
  std::map<std::string, std::size_t> stored_;  // fds by FDNAME; guarded by mu_
  std::filesystem::path dir_;
  std::string socket_path_;
  // Teardown runs bottom-up: the server (joining its workers) before the
  // methods and service its handlers use.
  std::unique_ptr<service::Service> service_;
  std::unique_ptr<rpc::MethodRegistry> registry_;
  std::unique_ptr<rpc::ServiceMethods> methods_;
  boost::asio::io_context io_{1};
  std::unique_ptr<rpc::Server> server_;
  std::thread io_thread_;
};

}  // namespace vfiod::fuzz
