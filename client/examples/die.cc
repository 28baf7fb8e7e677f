#include "die.h"

#include <cstdio>
#include <cstdlib>

namespace vfiod::examples {
namespace {
const char* program_name = "example";
}  // namespace

void SetProgramName(const char* name) { program_name = name; }

void Die(const std::string& what) {
  (void)std::fprintf(stderr, "%s: %s\n", program_name, what.c_str());  // exiting either way
  std::exit(1);
}

client::Response CallOrDie(client::Client& c, const std::string& method,
                           const nlohmann::json& params) {
  auto reply = c.Call(method, params);
  if (!reply) {
    Die(method + ": " + reply.error().Describe());
  }
  return std::move(*reply);
}

}  // namespace vfiod::examples
