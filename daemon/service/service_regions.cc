// Registered client memory regions (dma.register / dma.unregister) and the
// resolution of dma.map_fd's source (an fd or a region). See service.h for
// ownership and locking.
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "lifecycle/stored_fds.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

wire::Backing RegionBacking(const dma::Backing& b) {
  if (b.page_size() == vfiod::kPage1G) {
    return wire::Backing::kHugetlb1G;
  }
  return b.page_size() == vfiod::kPage2M ? wire::Backing::kHugetlb2M : wire::Backing::kMemfd;
}

RegionView ViewOf(RegionId id, const dma::Backing& b) {
  return RegionView{id, b.fd_offset(), b.size(), b.page_size(),
                    std::string(wire::BackingName(RegionBacking(b)))};
}

/// The bytes of the file past `offset` (for a size of 0: "the rest").
/// kBadFd when the fd cannot be read or is no regular file; kInvalidParams
/// when nothing is left past `offset`.
SResult<uint64_t> RestOfFile(int fd, uint64_t offset, const char* op) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return std::unexpected(
        ServiceError(ErrorKind::kBadFd, ErrnoError(std::string(op) + ": fstat of the fd").error()));
  }
  if (!S_ISREG(st.st_mode)) {
    return Refuse(ErrorKind::kBadFd, EINVAL, std::string(op) + ": fd",
                  "not a regular file: pass a memfd or hugetlbfs file");
  }
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (offset >= file_size) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, op,
                  "params.offset: " + std::to_string(offset) +
                      " is not before the end of the file (" + std::to_string(file_size) +
                      " bytes)");
  }
  return file_size - offset;
}

}  // namespace

SResult<RegionView> Service::RegisterRegion(const Caller& caller, RegisterRequest request) {
  constexpr const char* kOp = "dma.register";
  // A client maps slices of the region by its id: the reply waits for the
  // state record that names it, so a restart keeps the id valid.
  ChangeNote note{*this, true};
  {
    std::lock_guard lock(mu_);
    auto session = sessions_.find(caller.session);
    if (session == sessions_.end()) {
      return Refuse(ErrorKind::kNotFound, ECONNRESET, kOp, "the session closed");
    }
    if (session->second.regions >= config_.limits.max_regions) {
      return Refuse(ErrorKind::kQuota, EDQUOT, kOp,
                    "regions: " + std::to_string(session->second.regions) +
                        " registered on this connection, limit " +
                        std::to_string(config_.limits.max_regions) + " (limits.max_regions)");
    }
    ++session->second.regions;  // reserved while the fd is adopted
  }
  auto adopt = [&]() -> SResult<dma::Backing> {
    if (request.size == 0 && request.fd.valid()) {
      request.size = VFIOD_TRY(RestOfFile(request.fd.get(), request.offset, kOp));
    }
    Result<dma::Backing> backing =
        dma::AdoptClientFd(std::move(request.fd), request.offset, request.size);
    if (!backing) {
      return std::unexpected(ServiceError(ErrorKind::kBadFd, std::move(backing).error()));
    }
    return std::move(*backing);
  };
  // Declared before the lock, so a refused region is released after it.
  SResult<dma::Backing> adopted = adopt();
  std::shared_ptr<const dma::Backing> over_budget;
  std::unique_lock lock(mu_);
  auto session = sessions_.find(caller.session);
  SResult<std::shared_ptr<const dma::Backing>> backing =
      Refuse(ErrorKind::kNotFound, ECONNRESET, kOp, "the session closed");
  if (!adopted) {
    backing = std::unexpected(std::move(adopted).error());
  } else if (session != sessions_.end()) {
    backing = ChargeRegionLocked(caller, *adopted);
  }
  FdBudget::Ticket ticket;  // given back unless the region is registered
  if (backing) {
    auto charged = ChargeStoredFds(caller, (*backing)->fd() >= 0 ? 1 : 0, kOp);
    if (charged) {
      ticket = std::move(*charged);
    } else {
      over_budget = std::move(*backing);
      backing = std::unexpected(std::move(charged).error());
    }
  }
  if (!backing) {
    if (session != sessions_.end()) {
      --session->second.regions;
    }
    return std::unexpected(std::move(backing).error());
  }
  const RegionId id = next_id_++;
  ticket.Assign(lifecycle::RegionFdName(id));  // given back once its fd leaves the store
  regions_.emplace(id, RegionSlot{caller.session, caller.identity.uid, *backing});
  spdlog::debug("region {}: session {} registered {:#x} bytes ({})", id, caller.session,
                (*backing)->size(), wire::BackingName(RegionBacking(**backing)));
  RegionView view = ViewOf(id, **backing);
  lock.unlock();  // the store is a sendmsg
  StoreRegionFd(id, caller.identity.uid, *backing);
  return view;
}

void Service::StoreRegionFd(RegionId id, uid_t uid,
                            const std::shared_ptr<const dma::Backing>& backing) {
  if (!fd_store_.store || backing->fd() < 0) {
    return;
  }
  fd_store_.store(lifecycle::RegionFdName(id), backing->fd());
  std::lock_guard lock(mu_);
  stored_regions_[id] = StoredRegion{uid, backing};
}

std::shared_ptr<const dma::Backing> Service::HoldRegion(uid_t uid, dma::Backing adopted) {
  // The charge is declared first, so it is given back only after the view is
  // unmapped and the file closed: the pages are back in the pool by then.
  struct Charged {
    LockedCharges::Hold charge;
    dma::Backing backing;
  };
  auto charged =
      std::make_shared<Charged>(Charged{held_->Charge(uid, adopted.size()), std::move(adopted)});
  const dma::Backing* view = &charged->backing;
  return {std::move(charged), view};
}

SResult<std::shared_ptr<const dma::Backing>> Service::ChargeRegionLocked(const Caller& caller,
                                                                         dma::Backing& adopted) {
  if (!IsChargedRegion(adopted)) {
    return std::make_shared<const dma::Backing>(std::move(adopted));
  }
  VFIOD_TRY(CheckLockedLocked(caller, adopted.size()));
  return HoldRegion(caller.identity.uid, std::move(adopted));
}

SResult<void> Service::UnregisterRegion(const Caller& caller, RegionId region) {
  ChangeNote note{*this, true};  // declared first: runs after the release below
  // Declared before the lock, so it is released after it: if this was the
  // region's last reference, the munmap of its view must not hold mu_.
  std::shared_ptr<const dma::Backing> released;
  std::lock_guard lock(mu_);
  released = VFIOD_TRY(FindRegionLocked(caller, region, "dma.unregister"));
  regions_.erase(region);
  if (auto session = sessions_.find(caller.session); session != sessions_.end()) {
    --session->second.regions;
  }
  return {};
}

std::vector<RegionView> Service::ListRegions(const Caller& caller) const {
  std::lock_guard lock(mu_);
  std::vector<RegionView> out;
  for (const auto& [id, slot] : regions_) {
    if (Authorize(caller, slot, Access::kUse, "dma.regions")) {
      out.push_back(ViewOf(id, *slot.backing));
    }
  }
  return out;
}

SResult<std::shared_ptr<const dma::Backing>> Service::FindRegionLocked(const Caller& caller,
                                                                       RegionId id,
                                                                       const char* op) const {
  auto it = regions_.find(id);
  if (it == regions_.end()) {
    return Refuse(ErrorKind::kNotFound, ENOENT, op,
                  "no region " + std::to_string(id) + " registered by this client");
  }
  VFIOD_TRY(Authorize(caller, it->second, Access::kUse, op));
  return it->second.backing;
}

SResult<std::shared_ptr<const dma::Backing>> Service::ResolveMapFd(const Caller& caller,
                                                                   MapFdRequest& request) {
  constexpr const char* kOp = "dma.map_fd";
  std::shared_ptr<const dma::Backing> backing;
  uint64_t limit = UINT64_MAX;  // bytes of the file or region
  std::string what = "the file";
  if (request.region) {
    std::lock_guard lock(mu_);
    backing = VFIOD_TRY(FindRegionLocked(caller, *request.region, kOp));
    limit = backing->size();
    what = "region " + std::to_string(*request.region);
  } else if (struct stat st{}; ::fstat(request.fd.get(), &st) == 0 && S_ISREG(st.st_mode)) {
    limit = static_cast<uint64_t>(st.st_size);
  }  // else AdoptClientFd says what is wrong with the fd
  auto outside = [&](const std::string& field, uint64_t offset, uint64_t size) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, kOp,
                  field + ": [" + std::to_string(offset) + ", +" + std::to_string(size) +
                      ") is not inside " + what + " (" + std::to_string(limit) + " bytes)");
  };
  if (!request.segments.empty()) {
    uint64_t total = 0;
    for (size_t i = 0; i < request.segments.size(); ++i) {
      const dma::ScatterPiece& piece = request.segments[i];
      if (piece.offset >= limit || piece.size > limit - piece.offset) {
        return outside("params.segments[" + std::to_string(i) + "]", piece.offset, piece.size);
      }
      total += piece.size;
    }
    request.size = total;
    return backing;
  }
  if (request.offset >= limit || request.size > limit - request.offset) {
    return outside("params.offset/size", request.offset, request.size);
  }
  if (request.size == 0) {
    if (limit == UINT64_MAX) {
      request.size = VFIOD_TRY(RestOfFile(request.fd.get(), request.offset, kOp));
    } else {
      request.size = limit - request.offset;
    }
  }
  return backing;
}

}  // namespace vfiod::service
