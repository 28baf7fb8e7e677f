// Locked bytes charged for as long as some memory is held, rather than for
// the life of one mapping: the hugetlb pages of a registered region (see
// Service::RegisterRegion). The charge travels with the memory, so it is
// given back exactly when the memory is, on whichever path and thread drops
// the memory's last reference.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

namespace vfiod::service {

class LockedCharges : public std::enable_shared_from_this<LockedCharges> {
 public:
  /// A charge; gives its bytes back when destroyed. Move-only.
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept;
    Hold& operator=(Hold&& other) noexcept;
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold();

   private:
    friend class LockedCharges;
    Hold(std::shared_ptr<LockedCharges> owner, uid_t uid, uint64_t bytes)
        : owner_(std::move(owner)), uid_(uid), bytes_(bytes) {}
    void Release();
    std::shared_ptr<LockedCharges> owner_;  // kept alive by its holds
    uid_t uid_ = 0;
    uint64_t bytes_ = 0;
  };

  /// Charges `bytes` to `uid` until the returned Hold is destroyed. The caller
  /// has checked the quota and the daemon-wide cap (no check here). The object
  /// must be owned by a shared_ptr.
  [[nodiscard]] Hold Charge(uid_t uid, uint64_t bytes);
  /// Bytes held for `uid`.
  [[nodiscard]] uint64_t Of(uid_t uid) const;
  /// Bytes held for everyone.
  [[nodiscard]] uint64_t Total() const;
  /// Bytes held, by uid (no zero entries).
  [[nodiscard]] std::map<uid_t, uint64_t> ByUid() const;

 private:
  void Release(uid_t uid, uint64_t bytes);

  // A leaf lock: taken under the service's mu_ or a container's mutex (where
  // a Hold may be destroyed), it never takes another lock.
  mutable std::mutex mu_;
  std::map<uid_t, uint64_t> by_uid_;  // guarded by mu_; no zero entries
  uint64_t total_ = 0;                // guarded by mu_
};

}  // namespace vfiod::service
