#include "service/policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <utility>

namespace vfiod::service {
namespace {

constexpr uid_t kRoot = 0;

bool Applies(const PolicyRule& rule, const Identity& who) {
  if (rule.any_user || std::ranges::find(rule.uids, who.uid) != rule.uids.end()) {
    return true;
  }
  auto in_rule = [&](gid_t gid) { return std::ranges::find(rule.gids, gid) != rule.gids.end(); };
  return in_rule(who.gid) || std::ranges::any_of(who.groups, in_rule);
}

bool Lists(const PolicyRule& rule, const std::string& bdf, const DeviceId& dev) {
  return std::ranges::any_of(rule.devices, [&](const DevicePattern& pattern) {
    switch (pattern.kind) {
      case DevicePattern::Kind::kAny:
        return true;
      case DevicePattern::Kind::kBdf:
        return pattern.bdf == bdf;
      case DevicePattern::Kind::kId:
        return pattern.vendor == dev.vendor && pattern.device == dev.device;
    }
    return false;
  });
}

std::string JoinIndexes(const std::vector<size_t>& indexes) {
  std::string text;
  for (size_t index : indexes) {
    text += (text.empty() ? "" : ", ") + std::to_string(index);
  }
  return text;
}

std::string DescribeDevice(const std::string& bdf, const DeviceId& dev) {
  return bdf + " (" + fmt::format("{:04x}:{:04x}", dev.vendor, dev.device) + ")";
}

std::string RuleWord(const std::vector<size_t>& indexes) {
  return indexes.size() == 1 ? "policy.rules[" + JoinIndexes(indexes) + "]"
                             : "policy.rules [" + JoinIndexes(indexes) + "]";
}

}  // namespace

std::string Describe(const Identity& who) {
  std::string text = "uid " + std::to_string(who.uid) + " (gid " + std::to_string(who.gid);
  if (!who.groups.empty()) {
    text += ", groups ";
    for (size_t i = 0; i < who.groups.size(); ++i) {
      text += (i == 0 ? "" : ",") + std::to_string(who.groups[i]);
    }
  }
  return text + ")";
}

Policy::Policy(PolicyConfig config) : config_(std::move(config)) {}

std::vector<size_t> Policy::RulesFor(const Identity& who) const {
  std::vector<size_t> applying;
  for (size_t i = 0; i < config_.rules.size(); ++i) {
    if (Applies(config_.rules[i], who)) {
      applying.push_back(i);
    }
  }
  return applying;
}

Result<void> Policy::MayUseDevice(const Identity& who, const DeviceId& dev) const {
  auto bdf = CanonicalBdf(dev.bdf);
  if (!bdf) {
    return Fail(EINVAL, "policy", "\"" + dev.bdf + "\" is not a PCI address");
  }
  if (who.uid == kRoot) {
    return Ok();
  }
  std::vector<size_t> applying = RulesFor(who);
  if (applying.empty()) {
    return Fail(EACCES, "policy", "no policy rule applies to " + Describe(who));
  }
  for (size_t i : applying) {
    if (Lists(config_.rules[i], *bdf, dev)) {
      return Ok();
    }
  }
  return Fail(EACCES, "policy",
              RuleWord(applying) + " apply to " + Describe(who) + " but no rule lists device " +
                  DescribeDevice(*bdf, dev));
}

Result<void> Policy::MayBind(const Identity& who, const DeviceId& dev) const {
  VFIOD_TRY(MayUseDevice(who, dev));
  if (who.uid == kRoot) {
    return Ok();
  }
  const std::optional<std::string> bdf = CanonicalBdf(dev.bdf);
  if (!bdf) {  // MayUseDevice refused it already
    return Fail(EINVAL, "policy", "\"" + dev.bdf + "\" is not a PCI address");
  }
  std::vector<size_t> granting;
  for (size_t i : RulesFor(who)) {
    if (Lists(config_.rules[i], *bdf, dev)) {
      if (config_.rules[i].may_bind) {
        return Ok();
      }
      granting.push_back(i);
    }
  }
  return Fail(EACCES, "policy",
              RuleWord(granting) + " grant " + Describe(who) + " device " +
                  DescribeDevice(*bdf, dev) + " but no such rule sets may_bind");
}

bool Policy::IsRootOnly(std::string_view method) const {
  return std::ranges::find(config_.root_only, method) != config_.root_only.end();
}

Result<void> Policy::MayCall(const Identity& who, std::string_view method) const {
  if (who.uid != kRoot && IsRootOnly(method)) {
    return Fail(EPERM, "policy",
                "method " + std::string(method) + " is listed in policy.root_only; " +
                    Describe(who) + " is not root");
  }
  return Ok();
}

Quota Policy::QuotaFor(const Identity& who) const {
  if (who.uid == kRoot) {
    return Quota{.locked_bytes = kUnlimited, .mappings = kUnlimited, .containers = kUnlimited};
  }
  Quota quota;  // zero: nothing applies
  for (size_t i : RulesFor(who)) {
    const Quota& granted = config_.rules[i].quota;
    quota.locked_bytes = std::max(quota.locked_bytes, granted.locked_bytes);
    quota.mappings = std::max(quota.mappings, granted.mappings);
    quota.containers = std::max(quota.containers, granted.containers);
  }
  return quota;
}

}  // namespace vfiod::service
