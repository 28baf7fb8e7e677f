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
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace vfiod::service {

/// What one mapping may keep: its memory's fd ("m-<id>") and its own record
/// ("r-m-<id>") until a state record covers it.
inline constexpr uint64_t kStoredFdsPerMapping = 2;

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
    Ticket(FdBudget* budget, uint64_t fds) : budget_(budget), fds_(fds) {}
    FdBudget* budget_ = nullptr;  // null: nothing charged
    uint64_t fds_ = 0;
  };

  explicit FdBudget(uint64_t max) : max_(max) {}
  FdBudget(const FdBudget&) = delete;
  FdBudget& operator=(const FdBudget&) = delete;

  /// Charges `fds`; nullopt (nothing charged) when charged() + fds would pass
  /// max(). Zero fds: an empty ticket.
  [[nodiscard]] std::optional<Ticket> Charge(uint64_t fds);
  /// Charges `name` `fds` without a check: an object a restart took over,
  /// whose fds are in the store already (a lower cap than before refuses new
  /// objects until enough are gone, and takes nothing away).
  void Adopt(const std::string& name, uint64_t fds);
  /// Gives back `name`'s charge, once its fds have left the store; nothing
  /// when it has none (never charged, or given back already).
  void Release(const std::string& name);
  /// Sets the cap; before serving (the service manager's own limit is known
  /// only then).
  void SetMax(uint64_t max);

  [[nodiscard]] uint64_t charged() const;
  [[nodiscard]] uint64_t max() const;

 private:
  void Give(uint64_t fds);

  // A leaf lock: taken under the service's mu_, never takes another.
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> by_name_;  // guarded by mu_; no zero entries
  uint64_t charged_ = 0;                     // named and ticketed; guarded by mu_
  uint64_t max_;                             // guarded by mu_
};

}  // namespace vfiod::service
