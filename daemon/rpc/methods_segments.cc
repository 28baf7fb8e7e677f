// Reading dma.map_fd's scatter list (see methods_params.h).
#include <algorithm>
#include <numeric>

#include "proto/page_sizes.h"
#include "rpc/methods_params.h"

namespace vfiod::rpc {

namespace {

dma::ScatterPiece ReadSegment(const nlohmann::json& item, const std::string& path) {
  ParamReader p(item, path);
  dma::ScatterPiece s;
  s.offset = p.U64("offset");
  s.size = p.U64("size");
  s.iova = p.OptU64("iova");
  p.Finish();
  if (s.size == 0) {
    throw ParamError(p.Path("size") + ": must be greater than zero");
  }
  CheckAligned(p.Path("offset"), s.offset, kPage4K);
  CheckAligned(p.Path("size"), s.size, kPage4K);
  CheckNoWrap(p.Path("offset"), s.offset, s.size);
  if (s.iova) {
    CheckAligned(p.Path("iova"), *s.iova, kPage4K);
    CheckNoWrap(p.Path("iova"), *s.iova, s.size);
  }
  return s;
}

/// Throws when two named IOVA ranges overlap, naming the later one.
void CheckIovasApart(const std::vector<dma::ScatterPiece>& list, const std::string& path) {
  std::vector<size_t> order(list.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return list[a].iova.value_or(0) < list[b].iova.value_or(0);
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const dma::ScatterPiece& before = list[order[k - 1]];
    // Every segment names its IOVA here (checked by the caller).
    if (list[order[k]].iova.value_or(0) - before.iova.value_or(0) < before.size) {
      const size_t later = std::max(order[k], order[k - 1]);
      const size_t earlier = std::min(order[k], order[k - 1]);
      throw ParamError(path + "[" + std::to_string(later) + "].iova: overlaps segment " +
                       std::to_string(earlier) + " in IOVA space");
    }
  }
}

}  // namespace

std::vector<dma::ScatterPiece> ReadSegments(ParamReader& p, const char* key) {
  const nlohmann::json* raw = p.Raw(key);
  if (raw == nullptr || raw->is_null()) {
    return {};
  }
  const std::string path = p.Path(key);
  if (!raw->is_array()) {
    throw ParamError(path + ": expected an array of {offset, size, iova?}");
  }
  if (raw->empty()) {
    throw ParamError(path + ": must list at least one segment");
  }
  if (raw->size() > kMaxSegments) {
    throw ParamError(path + ": " + std::to_string(raw->size()) + " segments, at most " +
                     std::to_string(kMaxSegments));
  }
  std::vector<dma::ScatterPiece> list;
  list.reserve(raw->size());
  for (size_t i = 0; i < raw->size(); ++i) {
    list.push_back(ReadSegment((*raw)[i], path + "[" + std::to_string(i) + "]"));
    if (list[i].iova.has_value() != list[0].iova.has_value()) {
      throw ParamError(path + "[" + std::to_string(i) +
                       "].iova: either every segment names its iova or none does");
    }
  }
  if (list[0].iova) {
    CheckIovasApart(list, path);
  }
  return list;
}

}  // namespace vfiod::rpc
