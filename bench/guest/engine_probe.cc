#include "guest/engine_probe.h"

#include "common/stats.h"

namespace vfiod::bench {

Result<std::unique_ptr<TimingReader>> TimingReader::Open() {
  auto real = VFIOD_TRY(dma::ProcPageInfoReader::Open());
  return std::unique_ptr<TimingReader>(new TimingReader(std::move(real)));
}

Result<void> TimingReader::ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) {
  Result<void> done = Ok();
  counts_.seconds += TimeSeconds([&] { done = real_->ReadPagemap(first_vpn, out); });
  ++counts_.calls;
  counts_.entries += out.size();
  return done;
}

Result<void> TimingReader::ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) {
  Result<void> done = Ok();
  counts_.seconds += TimeSeconds([&] { done = real_->ReadKpageflags(first_pfn, out); });
  ++counts_.calls;
  counts_.entries += out.size();
  return done;
}

ReadCounts TimingReader::Take() {
  const ReadCounts out = counts_;
  counts_ = {};
  return out;
}

Result<EngineRig> OpenEngine(const GuestRig& rig) {
  auto reader = VFIOD_TRY(TimingReader::Open());
  TimingReader* observed = reader.get();
  auto space = VFIOD_TRY(dma::DmaSpace::Create(rig.container(), {}, std::move(reader)));
  return EngineRig{.space = std::move(space), .reader = observed};
}

Result<EngineMap> EngineMapTimed(EngineRig& engine, std::shared_ptr<const dma::Backing> backing) {
  dma::MapRequest request;
  request.backing = std::move(backing);
  EngineMap out;
  (void)engine.reader->Take();
  Result<std::unique_ptr<dma::MapJob>> job = Fail(EINVAL, "begin map");
  out.plan_s = TimeSeconds([&] { job = engine.space->BeginMap(std::move(request)); });
  out.reads = engine.reader->Take();
  std::unique_ptr<dma::MapJob> running = VFIOD_TRY(std::move(job));
  Result<bool> done = false;
  out.map_s = TimeSeconds([&] {
    do {
      done = running->Step();
    } while (done && !*done);
  });
  VFIOD_TRY(done);
  const dma::MappingReport& report = running->report();
  out.id = report.id;
  out.iova = report.iova;
  out.chunks = report.chunks;
  out.congruence = report.congruence;
  return out;
}

Result<double> EngineUnmapTimed(EngineRig& engine, uint64_t id) {
  Result<dma::UnmapReport> done = Fail(EINVAL, "unmap");
  const double seconds = TimeSeconds([&] { done = engine.space->Unmap(id); });
  VFIOD_TRY(done);
  return seconds;
}

}  // namespace vfiod::bench
