// How the example drivers stop on an error: one line on stderr naming the
// program, exit status 1. Examples only: a library never exits for its caller.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <utility>

#include "client/vfiod_client.h"
#include "proto/result.h"

namespace vfiod::examples {

/// The name Die puts before its message; main sets it first thing.
void SetProgramName(const char* name);

/// Prints "<program>: <what>" on stderr and exits with status 1.
[[noreturn]] void Die(const std::string& what);

/// The reply of `method`, or Die with the method and the error.
client::Response CallOrDie(client::Client& c, const std::string& method,
                           const nlohmann::json& params);

/// The value of `r`, or Die with its error.
template <class T>
T OrDie(Result<T> r) {
  if (!r) {
    Die(r.error().message());
  }
  if constexpr (!std::is_void_v<T>) {
    return std::move(*r);
  }
}

}  // namespace vfiod::examples
