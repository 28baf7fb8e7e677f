#include "client/release.h"

namespace vfiod::client {

using nlohmann::json;

namespace {

/// A non-negative JSON integer (signed or unsigned in nlohmann's terms).
std::optional<uint64_t> U64(const json& v) {
  if (v.is_number_unsigned()) {
    return v.get<uint64_t>();
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(v.get<int64_t>());
  }
  return std::nullopt;
}

}  // namespace

std::optional<ReleaseNotice> ParseReleaseNotice(const std::string& method, const json& params) {
  const bool requested = method == "device.release_requested";
  if ((!requested && method != "device.revoked") || !params.is_object()) {
    return std::nullopt;
  }
  auto bdf = params.find("bdf");
  auto container = params.find("container");
  if (bdf == params.end() || !bdf->is_string() || container == params.end() || !U64(*container)) {
    return std::nullopt;
  }
  ReleaseNotice n;
  n.revoked = !requested;
  n.bdf = bdf->get<std::string>();
  n.container = U64(*container).value_or(0);  // checked above
  auto u64 = [&](const char* key) -> uint64_t {
    auto it = params.find(key);
    return it != params.end() ? U64(*it).value_or(0) : 0;
  };
  n.grace_ms = u64("grace_ms");
  n.unmapped_bytes = u64("unmapped_bytes");
  if (auto m = params.find("mappings"); m != params.end() && m->is_array()) {
    for (const json& id : *m) {
      if (auto v = U64(id)) {
        n.mappings.push_back(*v);
      }
    }
  }
  if (auto r = params.find("reason"); r != params.end() && r->is_string()) {
    n.reason = r->get<std::string>();
  }
  return n;
}

int DeviceReleaser::Keep(const std::string& bdf, UniqueFd fd) {
  const int raw = fd.get();
  fds_.emplace(bdf, std::move(fd));
  return raw;
}

int DeviceReleaser::fd(const std::string& bdf) const {
  auto it = fds_.find(bdf);
  return it == fds_.end() ? -1 : it->second.get();
}

NotificationHandler DeviceReleaser::Handler(NotificationHandler next) {
  return [this, next = std::move(next)](const std::string& method, const json& params) {
    if (auto notice = ParseReleaseNotice(method, params)) {
      Handle(*notice);
    } else if (next) {
      next(method, params);
    }
  };
}

void DeviceReleaser::Handle(const ReleaseNotice& notice) {
  if (!notice.revoked && fds_.contains(notice.bdf)) {
    if (before_) {
      before_(notice);
    }
    fds_.erase(notice.bdf);  // closes them: the kernel's unbind waits for every copy
  }
  notices_.push_back(notice);
}

std::vector<ReleaseNotice> DeviceReleaser::TakeNotices() { return std::exchange(notices_, {}); }

}  // namespace vfiod::client
