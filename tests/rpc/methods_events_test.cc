// Which failed requests are key events, and what they carry: a policy or
// quota refusal, or a failed system call, as the service reports them.
#include "rpc/methods_events.h"

#include <gtest/gtest.h>

#include "rpc/methods.h"
#include "service/service_error.h"

namespace vfiod::rpc {
namespace {

using journal::Kind;
using nlohmann::json;
using service::ErrorKind;
using service::ServiceError;

wire::RpcError Refusal(ErrorKind kind, int code, const char* op, const char* detail) {
  return ToRpcError(ServiceError(kind, Error{code, op, detail}));
}

TEST(MethodsEventsTest, AQuotaRefusalNamesTheCallerAndWhatItAskedFor) {
  auto event =
      FailureEvent("dma.alloc", 1000, 77, json{{"container", 3}, {"size", 8 << 20}},
                   Refusal(ErrorKind::kQuota, EDQUOT, "quota", "uid 1000 may lock 4194304 bytes"));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->kind, Kind::kQuotaRefused);
  EXPECT_EQ(event->uid, 1000u);
  EXPECT_EQ(event->pid, 77);
  EXPECT_EQ(event->method, "dma.alloc");
  EXPECT_EQ(event->container, 3u);
  EXPECT_EQ(event->bytes, 8u << 20);
  EXPECT_EQ(event->error_number, EDQUOT);
  EXPECT_FALSE(event->mapping.has_value());
  // The form of the line every failed request has always had.
  EXPECT_EQ(event->message,
            "dma.alloc from uid 1000: " +
                Refusal(ErrorKind::kQuota, EDQUOT, "quota", "uid 1000 may lock 4194304 bytes")
                    .Describe());
}

TEST(MethodsEventsTest, APolicyRefusalCarriesTheDevices) {
  auto event = FailureEvent(
      "container.create", 1000, 1, json{{"devices", {"0000:00:03.0", "0000:00:04.0"}}},
      Refusal(ErrorKind::kPermission, EACCES, "container.create", "no rule allows 0000:00:04.0"));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->kind, Kind::kPolicyRefused);
  EXPECT_EQ(event->bdfs, (std::vector<std::string>{"0000:00:03.0", "0000:00:04.0"}));
  auto bind = FailureEvent("device.bind", 1000, 1, json{{"bdf", "0000:00:05.0"}},
                           Refusal(ErrorKind::kPermission, EACCES, "device.bind", "no"));
  ASSERT_TRUE(bind.has_value());
  EXPECT_EQ(bind->bdfs, std::vector<std::string>{"0000:00:05.0"});
}

TEST(MethodsEventsTest, AKernelErrorCarriesItsErrno) {
  auto event = FailureEvent("dma.free", 0, 1, json{{"mapping", 9}},
                            ToRpcError(ServiceError(Error{EIO, "VFIO_IOMMU_UNMAP_DMA", ""})));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->kind, Kind::kKernelError);
  EXPECT_EQ(event->mapping, 9u);
  EXPECT_EQ(event->error_number, EIO);
}

TEST(MethodsEventsTest, OtherFailuresAreNoKeyEvent) {
  for (ErrorKind kind :
       {ErrorKind::kInvalidParams, ErrorKind::kNotFound, ErrorKind::kBusy, ErrorKind::kBadFd}) {
    EXPECT_FALSE(FailureEvent("dma.info", 0, 1, json::object(), Refusal(kind, EINVAL, "x", "y"))
                     .has_value());
  }
}

TEST(MethodsEventsTest, IllTypedParamsAreLeftOut) {
  auto event = FailureEvent(
      "dma.alloc", 1000, 1,
      json{{"container", "3"}, {"size", -1}, {"bdf", 5}, {"devices", {1, "0000:00:03.0"}}},
      Refusal(ErrorKind::kQuota, EDQUOT, "quota", "over"));
  ASSERT_TRUE(event.has_value());
  EXPECT_FALSE(event->container.has_value());
  EXPECT_FALSE(event->bytes.has_value());
  EXPECT_EQ(event->bdfs, std::vector<std::string>{"0000:00:03.0"});
  EXPECT_TRUE(FailureEvent("x", 0, 1, json(nullptr), Refusal(ErrorKind::kQuota, EDQUOT, "q", ""))
                  .has_value());  // params absent
}

}  // namespace
}  // namespace vfiod::rpc
