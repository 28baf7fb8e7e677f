// Who may do what: decisions over the config's policy rules.
//
// A rule applies to a caller when its "users" list holds the caller's uid (or
// "*"), or its "groups" list holds the caller's primary gid or one of the
// supplementary groups. Root (uid 0) is allowed everything, with no quota.
//
//  - Device access: allowed when some applying rule lists the device (by PCI
//    address, by vendor:device id, or "*").
//  - Binding to vfio-pci: allowed when some applying rule lists the device AND
//    sets may_bind. (may_bind in one rule does not extend to devices that only
//    another rule lists.)
//  - Root-only methods: the names in policy.root_only are refused to non-root.
//  - Quota: the per-field MAXIMUM over the applying rules (the most permissive
//    rule wins, field by field; rules do not add up, so splitting one grant in
//    two rules never doubles it). No applying rule: a zero quota.
//
// A Policy is immutable after construction; its methods are pure functions of
// the config and their arguments, safe to call from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"
#include "service/config.h"

namespace vfiod::service {

/// The caller, as the kernel reports it for the socket peer.
struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  ///< supplementary groups (may repeat gid)
};

/// A device as the policy sees it.
struct DeviceId {
  std::string bdf;  ///< "dddd:bb:dd.f", any hex case
  uint16_t vendor = 0;
  uint16_t device = 0;
};

class Policy {
 public:
  explicit Policy(PolicyConfig config);

  /// Ok when `who` may open `dev`. Errors: EACCES with a reason naming the rule
  /// that is missing; EINVAL when dev.bdf is not a PCI address.
  [[nodiscard]] Result<void> MayUseDevice(const Identity& who, const DeviceId& dev) const;

  /// Ok when `who` may bind `dev` to vfio-pci (or unbind it). Errors: as MayUseDevice;
  /// EACCES also when the rules granting the device do not set may_bind.
  [[nodiscard]] Result<void> MayBind(const Identity& who, const DeviceId& dev) const;

  /// True when `method` is listed in policy.root_only.
  [[nodiscard]] bool IsRootOnly(std::string_view method) const;

  /// Ok unless `method` is root-only and `who` is not root: then EPERM.
  [[nodiscard]] Result<void> MayCall(const Identity& who, std::string_view method) const;

  /// The quota of `who` (see the file comment): all kUnlimited for root.
  [[nodiscard]] Quota QuotaFor(const Identity& who) const;

  /// Indexes into Settings().rules of the rules that apply to `who`, ascending.
  [[nodiscard]] std::vector<size_t> RulesFor(const Identity& who) const;

  /// The rules and root-only list this policy decides by.
  [[nodiscard]] const PolicyConfig& Settings() const { return config_; }

 private:
  PolicyConfig config_;
};

/// "uid 1000 (gid 1000, groups 27,100)", for messages and logs.
[[nodiscard]] std::string Describe(const Identity& who);

}  // namespace vfiod::service
