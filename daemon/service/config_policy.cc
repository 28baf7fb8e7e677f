// The "policy" section of the config: rules and root-only methods.
#include <algorithm>
#include <cctype>
#include <string>

#include "service/config.h"
#include "service/config_reader.h"

namespace vfiod::service {

using config_detail::Json;

namespace {

using config_detail::Bad;
using config_detail::CheckObject;
using config_detail::IfPresent;
using config_detail::Index;
using config_detail::ReadInteger;
using config_detail::ReadString;

uint64_t ReadCountOrUnlimited(const Json& value, const std::string& path) {
  if (value.is_string() && value.get_ref<const std::string&>() == "unlimited") {
    return kUnlimited;
  }
  if (value.is_number()) {
    return ReadInteger(value, path, 0, kUnlimited - 1);
  }
  Bad(path, "expected a non-negative integer or \"unlimited\"");
}

Quota ReadQuota(const Json& j, const std::string& path) {
  CheckObject(j, path, {"locked_bytes", "mappings", "containers"});
  Quota quota = kDefaultRuleQuota;
  IfPresent(j, path, "locked_bytes", [&](const Json& v, const std::string& p) {
    quota.locked_bytes = config_detail::ReadSize(v, p, /*allow_unlimited=*/true);
  });
  IfPresent(j, path, "mappings", [&](const Json& v, const std::string& p) {
    quota.mappings = ReadCountOrUnlimited(v, p);
  });
  IfPresent(j, path, "containers", [&](const Json& v, const std::string& p) {
    quota.containers = ReadCountOrUnlimited(v, p);
  });
  return quota;
}

// "vvvv:dddd", exactly four hex digits each.
bool ParseVendorDevice(const std::string& text, DevicePattern& pattern) {
  auto hex4 = [](std::string_view s) {
    return s.size() == 4 &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
  };
  std::string_view view = text;
  if (view.size() != 9 || view[4] != ':' || !hex4(view.substr(0, 4)) || !hex4(view.substr(5))) {
    return false;
  }
  pattern.vendor = static_cast<uint16_t>(std::stoul(text.substr(0, 4), nullptr, 16));
  pattern.device = static_cast<uint16_t>(std::stoul(text.substr(5), nullptr, 16));
  return true;
}

DevicePattern ReadDevicePattern(const Json& value, const std::string& path) {
  DevicePattern pattern;
  pattern.text = ReadString(value, path);
  if (pattern.text == "*") {
    pattern.kind = DevicePattern::Kind::kAny;
  } else if (auto bdf = CanonicalBdf(pattern.text)) {
    pattern.kind = DevicePattern::Kind::kBdf;
    pattern.bdf = *bdf;
  } else if (ParseVendorDevice(pattern.text, pattern)) {
    pattern.kind = DevicePattern::Kind::kId;
  } else {
    Bad(path,
        "expected \"*\", a PCI address such as \"0000:00:03.0\" or a vendor:device id "
        "such as \"1234:11e8\", not \"" +
            pattern.text + "\"");
  }
  return pattern;
}

PolicyRule ReadRule(const Json& j, const std::string& path, const NameResolver& names) {
  CheckObject(j, path, {"users", "groups", "devices", "may_bind", "quota"});
  PolicyRule rule;
  IfPresent(j, path, "users", [&](const Json& v, const std::string& p) {
    for (size_t i = 0; i < config_detail::RequireArray(v, p).size(); ++i) {
      if (v[i].is_string() && v[i].get_ref<const std::string&>() == "*") {
        rule.any_user = true;
      } else {
        rule.uids.push_back(config_detail::ReadUserId(v[i], Index(p, i), names));
      }
    }
  });
  IfPresent(j, path, "groups", [&](const Json& v, const std::string& p) {
    for (size_t i = 0; i < config_detail::RequireArray(v, p).size(); ++i) {
      rule.gids.push_back(config_detail::ReadGroupId(v[i], Index(p, i), names));
    }
  });
  if (!rule.any_user && rule.uids.empty() && rule.gids.empty()) {
    Bad(path, "a rule must name at least one user (or \"*\") or group");
  }
  IfPresent(j, path, "devices", [&](const Json& v, const std::string& p) {
    for (size_t i = 0; i < config_detail::RequireArray(v, p).size(); ++i) {
      rule.devices.push_back(ReadDevicePattern(v[i], Index(p, i)));
    }
  });
  IfPresent(j, path, "may_bind", [&](const Json& v, const std::string& p) {
    rule.may_bind = config_detail::ReadBool(v, p);
  });
  IfPresent(j, path, "quota",
            [&](const Json& v, const std::string& p) { rule.quota = ReadQuota(v, p); });
  return rule;
}

// Method names as the API spells them: "ping", "dma.map_fd".
bool IsMethodName(const std::string& name) {
  bool ok = std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::islower(c) != 0 || std::isdigit(c) != 0 || c == '_' || c == '.';
  });
  return ok && name.front() != '.' && name.back() != '.' && name.find("..") == std::string::npos;
}

}  // namespace

PolicyConfig ReadPolicySection(const Json& j, const std::string& path, const NameResolver& names) {
  CheckObject(j, path, {"rules", "root_only"});
  PolicyConfig policy;
  IfPresent(j, path, "rules", [&](const Json& v, const std::string& p) {
    for (size_t i = 0; i < config_detail::RequireArray(v, p).size(); ++i) {
      policy.rules.push_back(ReadRule(v[i], Index(p, i), names));
    }
  });
  IfPresent(j, path, "root_only", [&](const Json& v, const std::string& p) {
    for (size_t i = 0; i < config_detail::RequireArray(v, p).size(); ++i) {
      std::string name = ReadString(v[i], Index(p, i));
      if (!IsMethodName(name)) {
        Bad(Index(p, i), "expected a method name such as \"device.bind\", not \"" + name + "\"");
      }
      policy.root_only.push_back(std::move(name));
    }
  });
  return policy;
}

}  // namespace vfiod::service
