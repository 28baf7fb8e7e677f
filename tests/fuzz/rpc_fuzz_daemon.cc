#include "rpc_fuzz_daemon.h"

#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "model_service.h"  // tests/service: the sysfs tree of the service tests
#include "rpc/server_limits.h"
#include "service/config.h"
#include "service/model_setup.h"

namespace vfiod {
extern const char kOpenRpcDocument[];  // generated from proto/openrpc.json
}  // namespace vfiod

namespace vfiod::fuzz {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
namespace tree = service::model_service;

json ModelDevice(const char* bdf, const char* vendor, const char* device, int group) {
  return {{"bdf", bdf}, {"vendor", vendor}, {"device", device}, {"group", group}, {"bound", true}};
}

// The config main.cc would load, for the model kernel on `dir`'s tree.
std::string ConfigText(const fs::path& dir) {
  json rule = {{"users", {kClientUid}},
               {"devices", {"*"}},
               {"may_bind", true},
               {"quota", {{"locked_bytes", "16M"}, {"mappings", 16}, {"containers", 2}}}};
  json config = {
      {"socket", {{"path", (dir / "s.sock").string()}, {"group", nullptr}, {"mode", "0666"}}},
      {"kernel", "model"},
      {"sysfs_root", (dir / "sys").string()},
      {"limits",
       {{"max_frame_bytes", kMaxFrameBytes},
        {"max_inflight_per_client", 4},
        {"max_clients", 8},
        {"worker_threads", 2},
        {"map_chunk_bytes", "64K"},
        {"max_batch", 8},
        {"max_regions", 4},
        {"max_stored_fds", 24},
        {"max_stored_fds_per_user", 16}}},
      {"logging", {{"level", "off"}, {"target", "stderr"}}},
      {"policy", {{"rules", {rule}}, {"root_only", {"device.unbind"}}}},
      {"model",
       {{"devices",
         {ModelDevice(tree::kEdu, "1234", "11e8", 3),
          ModelDevice(tree::kIvshmem, "1af4", "1110", 4)}},
        {"dma_entry_limit", 64}}}};
  return config.dump();
}

// Sets this thread's effective uid only (the raw syscall, not glibc's
// setresuid, which changes every thread of the process): the daemon's
// threads stay root while the client connects as someone else.
void SetThreadEuid(uid_t uid) { FUZZ_CHECK(::syscall(SYS_setresuid, -1, uid, -1) == 0); }

}  // namespace

FuzzDaemon::FuzzDaemon() {
  if (std::getenv("VFIOD_FUZZ_LOG") == nullptr) {
    spdlog::set_level(spdlog::level::off);
  }
  std::string tmpl = (fs::temp_directory_path() / "vfiod-fuzz-XXXXXX").string();
  FUZZ_CHECK(::mkdtemp(tmpl.data()) != nullptr);
  dir_ = tmpl;
  // The client connects as uid 65534 with the process's gid 0.
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  tree::MakeTree(dir_ / "sys");
  auto config = service::ParseConfig(ConfigText(dir_));
  FUZZ_CHECK(config.has_value());
  socket_path_ = config->socket.path;
  const service::Limits limits = config->limits;
  service::KernelAndSysfs seam = service::MakeModelKernelAndSysfs(*config);
  service_ = std::make_unique<service::Service>(std::move(*config), std::move(seam.kernel),
                                                std::move(seam.sysfs));
  service::Service::FdStoreHooks hooks;
  hooks.store = [this](const std::string& name, int) {
    std::lock_guard lock(mu_);
    ++stored_[name];
  };
  hooks.remove = [this](const std::string& name) {
    std::lock_guard lock(mu_);
    stored_.erase(name);
  };
  service_->SetFdStoreHooks(std::move(hooks));
  registry_ = std::make_unique<rpc::MethodRegistry>();
  methods_ = std::make_unique<rpc::ServiceMethods>(*service_, kOpenRpcDocument);
  FUZZ_CHECK(methods_->Register(*registry_).has_value());
  // The transport limits as main.cc sets them (batch, output and timeouts included).
  server_ = std::make_unique<rpc::Server>(io_, *registry_, rpc::ServerConfigFromLimits(limits));
  server_->AddCloseHook([this](rpc::ConnectionId id, const rpc::PeerCredentials&) {
    methods_->OnConnectionClosed(id);
    std::lock_guard lock(mu_);
    ++closed_;
    closed_cv_.notify_all();
  });
  FUZZ_CHECK(server_->Listen(socket_path_, 0666).has_value());
  server_->Start();
  io_thread_ = std::thread([this] { io_.run(); });
}

FuzzDaemon::~FuzzDaemon() {
  server_->Stop();
  io_.stop();
  io_thread_.join();
  server_.reset();
  service_->Shutdown();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

UniqueFd FuzzDaemon::Connect() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  FUZZ_CHECK(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof(addr.sun_path) - 1);
  SetThreadEuid(kClientUid);  // SO_PEERCRED records the connecting thread's euid
  const int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int connect_errno = errno;
  SetThreadEuid(0);
  if (rc != 0) {
    (void)std::fprintf(stderr, "connect %s: %s\n", socket_path_.c_str(),
                       std::strerror(connect_errno));
  }
  FUZZ_CHECK(rc == 0);
  std::lock_guard lock(mu_);
  ++connected_;
  return fd;
}

bool FuzzDaemon::WaitAllClosed() {
  std::unique_lock lock(mu_);
  return closed_cv_.wait_for(lock, std::chrono::seconds(10),
                             [this] { return closed_ == connected_; });
}

bool FuzzDaemon::Restore() {
  const service::StatusView status = service_->Status();
  std::error_code ec;
  bool drivers_changed = false;
  for (const char* bdf : {tree::kEdu, tree::kIvshmem}) {
    fs::path link = dir_ / "sys/bus/pci/devices" / bdf / "driver";
    drivers_changed = drivers_changed || fs::read_symlink(link, ec).filename() != "vfio-pci";
  }
  if (status.containers == 0 && !drivers_changed) {
    return true;
  }
  service::Caller root{service_->OpenSession(service::Identity{}), service::Identity{}};
  bool named_only = true;
  for (const service::ContainerView& c : service_->ListContainers(root)) {
    named_only = named_only && !c.name.empty();
    (void)service_->DestroyContainer(root, c.id);
  }
  for (const char* bdf : {tree::kEdu, tree::kIvshmem}) {
    (void)service_->BindDevice(root, bdf);
  }
  service_->CloseSession(root.session);
  return named_only;
}

bool FuzzDaemon::StoreIsEmpty() {
  service_->RecordStored(service_->SnapshotState());
  if (service_->Status().stored_fds_charged != 0) {
    return false;
  }
  std::lock_guard lock(mu_);
  for (const auto& [name, count] : stored_) {
    (void)std::fprintf(stderr, "left in the fd store: %s (%zu)\n", name.c_str(), count);
  }
  return stored_.empty();
}

}  // namespace vfiod::fuzz
