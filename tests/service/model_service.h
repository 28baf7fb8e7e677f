// The machine the service unit tests run on: a sysfs tree and a model
// kernel topology with edu (group 3) and ivshmem (group 4) on vfio-pci.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "kernel/fault_kernel.h"
#include "kernel/model_kernel.h"
#include "service/service.h"
#include "support/sysfs_tree.h"

namespace vfiod::service::model_service {

namespace fs = std::filesystem;
inline constexpr const char* kEdu = "0000:00:03.0";
inline constexpr const char* kIvshmem = "0000:00:04.0";

inline void Write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

/// A sysfs tree with edu (group 3) and ivshmem (group 4) bound to vfio-pci.
inline void MakeTree(const fs::path& root) {
  test::AddSysfsDevice(
      root,
      {.bdf = kEdu, .vendor = "0x1234", .device = "0x11e8", .group = 3, .driver = "vfio-pci"});
  test::AddSysfsDevice(
      root,
      {.bdf = kIvshmem, .vendor = "0x1af4", .device = "0x1110", .group = 4, .driver = "vfio-pci"});
}

inline kernel::ModelTopology Topology() {
  kernel::ModelTopology t;
  for (auto [bdf, group] : {std::pair{kEdu, 3}, std::pair{kIvshmem, 4}}) {
    kernel::ModelDevice d;
    d.bdf = bdf;
    d.vendor_id = 0x1234;
    d.device_id = 0x11e8;
    kernel::ModelRegion bar;
    bar.index = 0;
    bar.size = 1 << 20;
    d.regions.push_back(bar);
    t.groups.push_back(kernel::ModelGroup{group, {d}});
  }
  return t;
}

/// A config whose one policy rule lets `uid` use edu with `quota`, mapping in
/// chunks of 2 MiB.
inline Config EduConfig(uid_t uid, Quota quota) {
  Config config;
  config.limits.map_chunk_bytes = 2 << 20;
  PolicyRule rule;
  rule.uids = {uid};
  DevicePattern edu;
  edu.kind = DevicePattern::Kind::kBdf;
  edu.bdf = kEdu;
  rule.devices = {edu};
  rule.quota = quota;
  config.policy.rules = {rule};
  return config;
}

/// A fixture: a Service on the model kernel, seen through a fault-injecting
/// wrapper, over a fresh sysfs tree in a temporary folder (removed after).
class ModelServiceTest : public ::testing::Test {
 protected:
  explicit ModelServiceTest(kernel::ModelTopology topology = Topology())
      : model_(std::move(topology)) {}
  ~ModelServiceTest() override {
    service_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  /// Builds the tree and the service; call once, from the derived constructor.
  void Start(const Config& config) {
    std::string tmpl = (fs::temp_directory_path() / "vfiod-svc-XXXXXX").string();
    root_ = ::mkdtemp(tmpl.data());
    MakeTree(root_);
    auto faulty = std::make_unique<kernel::FaultInjectingKernel>(model_);
    faulty_ = faulty.get();
    service_ = std::make_unique<Service>(config, std::move(faulty), vfio::PciSysfs(root_));
  }

  /// A new session of `uid` (gid the same, no supplementary groups).
  Caller Open(uid_t uid) {
    Identity id{uid, uid, {}};
    return Caller{service_->OpenSession(id), id};
  }

  /// Maps [offset, +size) of the caller's registered `region` into container `c`.
  SResult<MapResult> Slice(const Caller& who, ContainerId c, RegionId region, uint64_t offset,
                           uint64_t size) {
    MapFdRequest r;
    r.container = c;
    r.region = region;
    r.offset = offset;
    r.size = size;
    return service_->MapFd(who, std::move(r), {});
  }

  kernel::ModelKernel model_;  // outlives the service, which uses it through faulty_
  kernel::FaultInjectingKernel* faulty_ = nullptr;
  fs::path root_;
  std::unique_ptr<Service> service_;
};

}  // namespace vfiod::service::model_service
