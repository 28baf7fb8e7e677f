// The methods vfiod registers are exactly the methods proto/openrpc.json
// documents, and the document is well-formed OpenRPC 1.2.6.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "kernel/model_kernel.h"
#include "rpc/method_registry.h"
#include "rpc/methods.h"
#include "service/service.h"

namespace vfiod {
namespace {

using nlohmann::json;

json Document() {
  std::ifstream in(VFIOD_OPENRPC_JSON);
  return json::parse(in);
}

TEST(OpenRpcTest, RegisteredMethodsEqualDocumentedMethods) {
  service::Service service(service::Config{},
                           std::make_unique<kernel::ModelKernel>(kernel::ModelTopology{}),
                           vfio::PciSysfs("/nonexistent"));
  std::string text = Document().dump();
  rpc::ServiceMethods methods(service, text);
  rpc::MethodRegistry registry;
  ASSERT_TRUE(methods.Register(registry).has_value());

  std::set<std::string> registered;
  for (const auto& name : registry.Names()) {
    registered.insert(name);
  }
  std::set<std::string> documented;
  const json doc = Document();
  for (const auto& m : doc["methods"]) {
    documented.insert(m["name"].get<std::string>());
  }
  EXPECT_EQ(registered, documented);
  EXPECT_EQ(registered.size(), 31u);
}

TEST(OpenRpcTest, DocumentIsOpenRpcWithResultsAndErrorsResolvable) {
  json doc = Document();
  EXPECT_EQ(doc["openrpc"], "1.2.6");
  EXPECT_EQ(doc["info"]["version"], "0.1.0");
  const json& errors = doc["components"]["errors"];
  const json& schemas = doc["components"]["schemas"];
  for (const auto& m : doc["methods"]) {
    SCOPED_TRACE(m["name"].get<std::string>());
    EXPECT_TRUE(m.contains("result"));
    EXPECT_TRUE(m["params"].is_array());
    for (const auto& e : m["errors"]) {
      std::string ref = e["$ref"];
      EXPECT_TRUE(errors.contains(ref.substr(ref.rfind('/') + 1))) << ref;
    }
  }
  // Every schema reference points at a defined schema.
  std::function<void(const json&)> check = [&](const json& j) {
    if (j.is_object()) {
      if (j.contains("$ref") && j["$ref"].get<std::string>().starts_with("#/components/schemas/")) {
        std::string ref = j["$ref"];
        EXPECT_TRUE(schemas.contains(ref.substr(ref.rfind('/') + 1))) << ref;
      }
      for (const auto& [k, v] : j.items()) {
        check(v);
      }
    } else if (j.is_array()) {
      for (const auto& v : j) {
        check(v);
      }
    }
  };
  check(doc);
}

}  // namespace
}  // namespace vfiod
