// The fixture most model-kernel scenarios share: one vfiod on the model with
// one client connection, shut down cleanly at the end of every test.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <string>

#include "daemon_harness.h"

namespace vfiod::itest {

class ModelDaemonTest : public ::testing::Test {
 protected:
  /// Skips in the VM (the VM runs the real-kernel scenarios instead), starts
  /// the daemon made by MakeDaemon() and connects.
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "model-kernel scenario; the VM runs VmEduTest";
    }
    daemon_ = MakeDaemon();
    client_ = std::make_unique<client::Client>(daemon_->Connect());
  }
  /// Every scenario ends with a clean shutdown (exit 0: under the sanitizers
  /// that also means no leak or memory error in the daemon).
  void TearDown() override {
    if (daemon_) {
      client_.reset();
      EXPECT_EQ(daemon_->Stop(), 0) << ReadAll(daemon_->log_path());
    }
  }
  /// The daemon to test; override for another policy, hugepage pool or limits.
  virtual std::unique_ptr<Daemon> MakeDaemon() { return std::make_unique<Daemon>(); }

  client::CallResult Call(const std::string& method, const json& params = json::object(),
                          std::span<const int> fds = {}) {
    return client_->Call(method, params, fds);
  }
  json Status() {
    auto r = Call("status");
    return r ? r->result : json();
  }

  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<client::Client> client_;
};

}  // namespace vfiod::itest
