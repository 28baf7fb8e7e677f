// The fd store's budget (limits.max_stored_fds). The service manager keeps
// at most FileDescriptorStoreMax= fds for a service, and what comes beyond it
// is dropped without a word back to the service: an object whose fd was
// dropped would not survive the next restart, and nobody would know until
// then. So every object that keeps fds in the store is charged, before it
// is created, the most it will ever keep there; a request whose charge would
// pass the cap is refused; and the charge is given back only after the
// object's fds have left the store. What the store holds for vfiod's objects
// is therefore never more than the charges, and the charges never more than
// the cap, at every moment and in any order of requests.
//
// The store is shared by every user, so one user must not fill it for the
// others: a non-root uid's objects are charged at most a share of it
// (limits.max_stored_fds_per_user), and all non-root users' together stop
// a reserve short of the cap (kRootReserveDivisor), so root can always make
// the objects it needs to look and clean up.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <map>
#include <mutex>
#include <string>

namespace vfiod::service {

/// What one mapping may keep: its memory's fd ("m-<id>") and its own record
/// ("r-m-<id>") until a state record covers it.
inline constexpr uint64_t kStoredFdsPerMapping = 2;
/// Root's reserve: the last max / kRootReserveDivisor fds of the budget
/// (rounded down) are for root's objects only.
inline constexpr uint64_t kRootReserveDivisor = 16;

class FdBudget {
 public:
  /// A charge for an object about to be made, whose name comes with it: the
  /// charge is given back when the ticket is destroyed, unless Assign gave it
  /// to the object first. Lives within one request, shorter than its budget.
  /// Move-only.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept;
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket();
    /// The charge is `name`'s (the object's FDNAME: "c-<id>", "m-<id>",
    /// "rg-<id>") until FdBudget::Release(name). Once; empty afterwards.
    void Assign(const std::string& name);

   private:
    friend class FdBudget;
    Ticket(FdBudget* budget, uid_t uid, uint64_t fds) : budget_(budget), uid_(uid), fds_(fds) {}
    FdBudget* budget_ = nullptr;  // null: nothing charged
    uid_t uid_ = 0;
    uint64_t fds_ = 0;
  };

  /// Which limit refused a charge.
  enum class Refusal {
    kUser,  ///< the uid's share, max_per_user()
    kAll,   ///< the budget (for non-root users: the budget less root's reserve)
  };

  FdBudget(uint64_t max, uint64_t max_per_user) : max_(max), max_per_user_(max_per_user) {}
  FdBudget(const FdBudget&) = delete;
  FdBudget& operator=(const FdBudget&) = delete;

  /// Charges `fds` to `uid`, or refuses (nothing charged) when that would
  /// pass max(), or for a non-root uid its share max_per_user() or what the
  /// non-root users may have together (max() less root_reserve()). Zero
  /// fds: an empty ticket.
  [[nodiscard]] std::expected<Ticket, Refusal> Charge(uid_t uid, uint64_t fds);
  /// Charges `name` `fds` to `uid` without a check: an object a restart took
  /// over, whose fds are in the store already (a lower cap than before
  /// refuses new objects until enough are gone, and takes nothing away).
  void Adopt(const std::string& name, uid_t uid, uint64_t fds);
  /// Gives back `name`'s charge, once its fds have left the store; nothing
  /// when it has none (never charged, or given back already).
  void Release(const std::string& name);
  /// Sets the cap; before serving (the service manager's own limit is known
  /// only then).
  void SetMax(uint64_t max);

  /// All users' charges, and one uid's.
  [[nodiscard]] uint64_t charged() const;
  [[nodiscard]] uint64_t charged(uid_t uid) const;
  [[nodiscard]] uint64_t max() const;
  [[nodiscard]] uint64_t max_per_user() const { return max_per_user_; }
  /// The part of max() only root's objects may use.
  [[nodiscard]] uint64_t root_reserve() const;

 private:
  struct Named {
    uid_t uid;
    uint64_t fds;
  };
  void Give(uid_t uid, uint64_t fds);
  void AddLocked(uid_t uid, uint64_t fds);
  void SubtractLocked(uid_t uid, uint64_t fds);
  [[nodiscard]] uint64_t ChargedLocked(uid_t uid) const;

  // A leaf lock: taken under the service's mu_, never takes another.
  mutable std::mutex mu_;
  std::map<std::string, Named> by_name_;  // guarded by mu_; no zero entries
  std::map<uid_t, uint64_t> by_uid_;      // named and ticketed; guarded by mu_; no zero entries
  uint64_t charged_ = 0;                  // all of by_uid_; guarded by mu_
  uint64_t max_;                          // guarded by mu_
  const uint64_t max_per_user_;
};

}  // namespace vfiod::service
