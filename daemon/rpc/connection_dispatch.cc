// Connection dispatch: from a received line to handler calls and replies.
#include <spdlog/spdlog.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <exception>

#include "proto/fd_passing.h"
#include "proto/jsonrpc.h"
#include "rpc/connection.h"
#include "rpc/request.h"

namespace vfiod::rpc {

using nlohmann::json;

/// The replies of one batch line, gathered until every element has finished.
/// Owned by the strand like the rest of the connection.
struct Connection::Batch {
  /// Per element, in order: its reply text (without '\n'; empty for a
  /// notification), or, when the reply carries fds, the reply itself: its fd
  /// references are offset when the line is put together.
  std::vector<std::string> texts;
  std::vector<std::optional<Outgoing>> with_fds;
  std::size_t remaining = 0;
  /// Bytes of the replies produced so far: max_batch_reply_bytes stops it.
  std::size_t reply_bytes = 0;
  /// Fds the batch line may still carry: elements are charged what their
  /// method declares, in order, and those past the limit never run.
  std::size_t reply_fd_budget = wire::kMaxFdsPerMessage;
};

namespace {

std::vector<std::size_t> ParamFdRefs(const json& element) {
  if (!element.is_object()) {
    return {};
  }
  auto params = element.find("params");
  return params == element.end() ? std::vector<std::size_t>{} : wire::CollectFdRefs(*params);
}

// The fd indexes any request of a line refers to (a single request or a batch).
std::vector<std::size_t> LineFdRefs(const json& doc) {
  if (!doc.is_array()) {
    return ParamFdRefs(doc);
  }
  std::vector<std::size_t> refs;
  for (const json& element : doc) {
    auto more = ParamFdRefs(element);
    refs.insert(refs.end(), more.begin(), more.end());
  }
  return refs;
}

// Shared by every line that carried no fds, so such a line allocates nothing
// for them. Thread-safe like any ReceivedFds; it stays empty.
const std::shared_ptr<ReceivedFds>& NoFds() {
  static const auto kNone = std::make_shared<ReceivedFds>(std::vector<UniqueFd>{});
  return kNone;
}

std::string BatchFdLimitDetail() {
  return "a batch reply carries at most " + std::to_string(wire::kMaxFdsPerMessage) +
         " fds: split the batch";
}

HandlerResult Invoke(const MethodRegistry::Method& method, CallContext& ctx, const json& params) {
  try {
    return method.handler(ctx, params);
  } catch (const std::exception& e) {  // JSON access in handlers may throw
    return std::unexpected(wire::MakeError(wire::kInternalError, e.what()));
  } catch (...) {
    return std::unexpected(wire::MakeError(wire::kInternalError, "unknown exception"));
  }
}

// Runs a call on a worker and frees its context and params before the reply
// leaves: the received fds no handler took close here, so they are closed
// before the connection can be reported closed (before the close hooks run).
HandlerResult InvokeOnWorker(const MethodRegistry::Method& method, CallContext&& ctx,
                             json&& params) {
  CallContext call = std::move(ctx);
  const json owned = std::move(params);
  return Invoke(method, call, owned);
}

// Closes a result's fds now, not when the caller's frame ends.
void DropResult(HandlerResult&& result) { [[maybe_unused]] HandlerResult gone = std::move(result); }

}  // namespace

void Connection::OnFrame(wire::Frame frame) {
  line_taken_ = Clock::now();  // the parse stage of its calls (CallContext::SetTimes)
  if (frame.line.find_first_not_of(" \t\r") == std::string::npos) {
    return;  // blank line: nothing to answer; its fds (if any) close here
  }
  auto refuse = [&](int code, std::string detail) {
    Send({wire::MakeErrorResponse(nullptr, wire::MakeError(code, std::move(detail))), {}, nullptr});
  };
  // nlohmann's parser takes a NUL byte for the end of the input and would
  // accept what precedes it; JSON text never holds one (RFC 8259).
  if (frame.line.find('\0') != std::string::npos) {
    return refuse(wire::kParseError, "the line holds a NUL byte");
  }
  wire::JsonOutline outline = wire::OutlineJson(frame.line);
  if (outline.depth > wire::kMaxJsonDepth) {
    return refuse(wire::kParseError, "nesting deeper than " + std::to_string(wire::kMaxJsonDepth));
  }
  // Counted before parsing: an over-long batch never becomes a JSON value,
  // and none of it runs.
  if (outline.array_elements > env_.config.max_batch) {
    return refuse(wire::kInvalidRequest,
                  "a batch of " + std::to_string(outline.array_elements) + " requests; at most " +
                      std::to_string(env_.config.max_batch) + " (limits.max_batch)");
  }
  // Strict: anything but blanks after the value is a parse error.
  json doc = json::parse(frame.line, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return refuse(wire::kParseError, "the line is not valid JSON");
  }
  std::shared_ptr<ReceivedFds> fds = NoFds();
  if (!frame.fds.empty()) {
    fds = std::make_shared<ReceivedFds>(std::move(frame.fds));
    fds->CloseAllBut(LineFdRefs(doc));  // unreferenced fds never reach a handler
  }
  if (doc.is_array()) {
    return OnBatch(doc, fds, frame.fd_error);
  }
  Dispatch(std::move(doc), fds, frame.fd_error, /*batch=*/nullptr, Done());
}

void Connection::OnBatch(json& doc, const std::shared_ptr<ReceivedFds>& fds, bool fd_error) {
  if (doc.empty()) {
    Send({wire::MakeErrorResponse(nullptr, wire::MakeError(wire::kInvalidRequest, "empty batch")),
          {},
          nullptr});
    return;
  }
  auto batch = std::make_shared<Batch>();
  batch->texts.resize(doc.size());
  batch->with_fds.resize(doc.size());
  batch->remaining = doc.size();
  for (std::size_t i = 0; i < doc.size(); ++i) {
    // Non-blocking elements answer within Dispatch, so the reply budget is
    // charged in array order before the next element runs.
    Dispatch(std::move(doc[i]), fds, fd_error, batch.get(),
             [this, batch, i](std::optional<Outgoing> out) {
               if (out && out->fds.empty()) {
                 batch->texts[i] = out->Line(/*newline=*/false);
                 batch->reply_bytes += batch->texts[i].size() + 1;
               } else if (out) {
                 batch->reply_bytes += out->message.dump().size() + 1;
                 batch->with_fds[i] = std::move(out);
               }
               if (--batch->remaining == 0) {
                 SendBatch(*batch);
               }
             });
  }
}

void Connection::SendBatch(Batch& batch) {
  std::string line = "[";
  std::vector<UniqueFd> all_fds;
  for (std::size_t i = 0; i < batch.texts.size(); ++i) {
    std::string text = std::move(batch.texts[i]);
    if (std::optional<Outgoing>& slot = batch.with_fds[i]) {
      if (all_fds.size() + slot->fds.size() > wire::kMaxFdsPerMessage) {
        // Unreachable while handlers keep to their declared reply_fds (Finish
        // enforces it); kept so a bug can never make the whole line unsendable.
        spdlog::error("rpc: connection {}: batch reply over {} fds", info_->id,
                      wire::kMaxFdsPerMessage);
        slot->message = wire::MakeErrorResponse(
            slot->message["id"], wire::MakeError(wire::kInternalError, BatchFdLimitDetail()));
        slot->fds.clear();
      }
      if (auto result = slot->message.find("result"); result != slot->message.end()) {
        wire::OffsetFdRefs(*result, all_fds.size());
      }
      for (auto& fd : slot->fds) {
        all_fds.push_back(std::move(fd));
      }
      text = slot->Line(/*newline=*/false);
    }
    if (text.empty()) {
      continue;  // a notification
    }
    if (line.size() > 1) {
      line.push_back(',');
    }
    line += text;
  }
  if (line.size() > 1) {
    line += "]\n";
    SendLine(std::move(line), std::move(all_fds));
  }
}

void Connection::Dispatch(json element, const std::shared_ptr<ReceivedFds>& fds, bool fd_error,
                          Batch* batch, Done done) {
  auto req = ParseRequest(std::move(element));
  if (!req) {
    return Deliver(
        done, Outgoing{wire::MakeErrorResponse(req.error().id, req.error().error), {}, nullptr});
  }
  auto answer_error = [&](const wire::RpcError& error) {
    if (!req->id) {
      spdlog::debug("rpc: connection {}: notification {} dropped: {}", info_->id, req->method,
                    error.Describe());
      return Deliver(done, std::nullopt);
    }
    Deliver(done, Outgoing{wire::MakeErrorResponse(*req->id, error), {}, nullptr});
  };
  auto answer = [&](int code, std::string detail) {
    answer_error(wire::MakeError(code, std::move(detail)));
  };
  if (batch != nullptr && batch->reply_bytes >= env_.config.max_batch_reply_bytes) {
    return answer_error(wire::MakeLimitError("max_batch_reply_bytes",
                                             "not run: the batch's replies passed " +
                                                 std::to_string(env_.config.max_batch_reply_bytes) +
                                                 " bytes (limits.max_batch_reply_bytes)"));
  }
  if (fd_error) {
    return answer(wire::kFdError, "fd control data truncated: at most " +
                                      std::to_string(wire::kMaxFdsPerMessage) +
                                      " fds per message; the ones received were closed");
  }
  const MethodRegistry::Method* method = env_.registry->Find(req->method);
  if (method == nullptr) {
    return answer(wire::kMethodNotFound, "no method \"" + req->method + "\"");
  }
  if (req->params.is_array() && !method->options.allow_array_params) {
    return answer(wire::kInvalidParams, "params must be an object");
  }
  for (std::size_t ref : wire::CollectFdRefs(req->params)) {
    if (ref >= fds->size()) {
      return answer(wire::kFdError, "params refer to fd " + std::to_string(ref) +
                                        " but the message carried " + std::to_string(fds->size()));
    }
  }
  bool busy = false;
  {
    std::lock_guard lock(out_mu_);
    busy = inflight_ >= env_.config.max_inflight_per_connection;
  }
  if (busy) {
    return answer(wire::kBusy, "more than " +
                                   std::to_string(env_.config.max_inflight_per_connection) +
                                   " requests in flight on this connection");
  }
  // A notification's reply (and its fds) is never sent, so it costs no budget.
  if (batch != nullptr && req->id) {
    if (method->options.reply_fds > batch->reply_fd_budget) {
      return answer(wire::kFdError, BatchFdLimitDetail());
    }
    batch->reply_fd_budget -= method->options.reply_fds;
  }
  CallContext ctx(info_, fds, req->id.value_or(nullptr));
  ctx.SetTimes(line_taken_, Clock::now());
  Run(*method, std::move(ctx), std::move(req->params), std::move(req->id), std::move(done));
}

void Connection::Deliver(const Done& done, std::optional<Outgoing> out) {
  if (done) {
    done(std::move(out));
  } else if (out) {
    Send(std::move(*out));
  }
}

void Connection::Run(const MethodRegistry::Method& method, CallContext ctx, json params,
                     std::optional<json> id, Done done) {
  if (!method.options.blocking) {
    // It ends before anything else of this connection runs: never in flight.
    Finish(method, std::move(id), Invoke(method, ctx, params), done, /*counted=*/false);
    return;
  }
  {
    std::lock_guard lock(out_mu_);
    ++inflight_;
  }
  // The method lives in the registry, which is read-only while serving. The
  // call waits in its user's queue: one user's flood cannot hold back others.
  env_.workers->Post(info_->peer.uid, [self = shared_from_this(), &method, ctx = std::move(ctx),
                                       params = std::move(params), id = std::move(id),
                                       done = std::move(done)]() mutable {
    HandlerResult result = InvokeOnWorker(method, std::move(ctx), std::move(params));
    if (!done) {
      // A single request: its reply leaves from this thread, waking only the
      // client (the strand is not involved unless the socket is full).
      self->FinishOnWorker(method, std::move(id), std::move(result));
      return;
    }
    asio::post(self->strand_, [self, &method, id = std::move(id), result = std::move(result),
                               done = std::move(done)]() mutable {
      self->Finish(method, std::move(id), std::move(result), done, /*counted=*/true);
    });
  });
}

Connection::Outgoing Connection::MakeReply(const MethodRegistry::Method& method, const json& id,
                                           HandlerResult result) const {
  if (!result) {
    return Outgoing{wire::MakeErrorResponse(id, result.error()), {}, nullptr};
  }
  if (result->result_text) {
    if (!result->fds.empty()) {
      spdlog::error("rpc: connection {}: a pre-serialised result with fds", info_->id);
      return Outgoing{
          wire::MakeErrorResponse(id, wire::MakeError(wire::kInternalError, "bad reply fds")),
          {},
          nullptr};
    }
    return Outgoing{wire::MakeResult(id, nullptr), {}, std::move(result->result_text)};
  }
  std::size_t fd_count = result->fds.size();
  bool refs_ok = fd_count <= method.options.reply_fds;
  for (std::size_t ref : wire::CollectFdRefs(result->result)) {
    refs_ok = refs_ok && ref < fd_count;
  }
  if (refs_ok) {
    return Outgoing{wire::MakeResult(id, std::move(result->result)), std::move(result->fds),
                    nullptr};
  }
  spdlog::error(
      "rpc: connection {}: handler returned {} fds (declared at most {}) or bad fd references",
      info_->id, fd_count, method.options.reply_fds);
  return Outgoing{
      wire::MakeErrorResponse(id, wire::MakeError(wire::kInternalError, "bad reply fds")),
      {},
      nullptr};
}

void Connection::Finish(const MethodRegistry::Method& method, std::optional<json> id,
                        HandlerResult result, const Done& done, bool counted) {
  if (counted) {
    std::lock_guard lock(out_mu_);
    --inflight_;
  }
  if (closed_) {
    // Everything the call leaves is dropped before the close can be reported
    // (before the close hooks run): the result's fds, and through `done` a
    // batch's gathered replies and their fds once its last element ends.
    DropResult(std::move(result));
    Deliver(done, std::nullopt);
    MaybeReportClosed();
    return;
  }
  if (!id) {
    Deliver(done, std::nullopt);
  } else {
    const Clock::time_point begin = Clock::now();
    Outgoing out = MakeReply(method, *id, std::move(result));
    if (method.options.on_reply) {
      method.options.on_reply(info_->peer.uid, Clock::now() - begin);
    }
    Deliver(done, std::move(out));
  }
  if (stop_reading_ && Idle()) {
    CloseNow();
  }
}

void Connection::FinishOnWorker(const MethodRegistry::Method& method, std::optional<json> id,
                                HandlerResult result) {
  std::optional<OutFrame> frame;
  if (id && !info_->closed.load(std::memory_order_acquire)) {
    // Built and serialised here, off the io thread.
    const Clock::time_point begin = Clock::now();
    Outgoing out = MakeReply(method, *id, std::move(result));
    frame = OutFrame{out.Line(), std::move(out.fds), 0};
    if (method.options.on_reply) {
      method.options.on_reply(info_->peer.uid, Clock::now() - begin);
    }
  } else {
    DropResult(std::move(result));  // closed: its fds close before the close is reported
  }
  SendFromAnyThread(std::move(frame), /*call_finished=*/true);
}

}  // namespace vfiod::rpc
