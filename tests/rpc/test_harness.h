// A running Server on a socket in a temp dir, and a raw wire-level peer.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "proto/framing.h"
#include "proto/unique_fd.h"
#include "rpc/method_registry.h"
#include "rpc/server.h"

namespace vfiod::rpc::testing {

/// A fresh directory, removed with its content on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A Server serving `registry` on <tmp>/s.sock, its io_context on one thread.
class RunningServer {
 public:
  explicit RunningServer(const MethodRegistry& registry, ServerConfig config = {},
                         std::vector<CloseHook> hooks = {});
  ~RunningServer();
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  [[nodiscard]] const std::string& socket_path() const { return socket_path_; }
  [[nodiscard]] Server& server() { return *server_; }

 private:
  TempDir dir_;
  std::string socket_path_;
  boost::asio::io_context io_;
  std::unique_ptr<Server> server_;
  std::thread io_thread_;
};

/// A wire-level peer with a blocking socket: writes raw bytes, reads frames.
class RawPeer {
 public:
  explicit RawPeer(const std::string& path);

  [[nodiscard]] int fd() const { return fd_.get(); }
  /// Writes all of `bytes`, with `fds` attached to the first byte.
  void Write(const std::string& bytes, const std::vector<int>& fds = {});
  /// Writes j as one line.
  void WriteJson(const nlohmann::json& j, const std::vector<int>& fds = {});
  /// The next frame, or a frame with line "<timeout>" / "<eof>".
  wire::Frame ReadFrame(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// The next frame parsed as JSON (a string "<timeout>"/"<eof>" on failure).
  nlohmann::json ReadJson(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// True if the server closed the connection within `timeout`.
  bool WaitEof(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Closes the socket.
  void Close() { fd_.reset(); }

 private:
  UniqueFd fd_;
  wire::LineFramer framer_{1 << 24};
};

/// Number of open fds in this process (entries of /proc/self/fd).
[[nodiscard]] int CountOpenFds();

/// A memfd holding `content`.
[[nodiscard]] UniqueFd MakeMemfd(const std::string& content);

/// One sendmsg of `bytes` carrying all of `fds` as SCM_RIGHTS, past the
/// limit SendWithFds keeps; returns what sendmsg returned.
[[nodiscard]] ssize_t SendWithAnyFdCount(int socket, std::string_view bytes,
                                         const std::vector<int>& fds);

/// Reads the whole content of `fd` from offset 0.
[[nodiscard]] std::string ReadAll(int fd);

/// Polls `pred` until true or ~10 s passed; returns the last value.
template <class Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace vfiod::rpc::testing
