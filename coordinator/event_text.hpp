// Text that a peer chose, made safe to log and to pass on in events; and a limiter for log lines
// a peer (or a flood of peers) can trigger at will. A client's Error.message, its metric names
// and its software string may hold newlines, ANSI escape sequences or megabytes: logged
// verbatim they forge log lines, repaint terminals and fill disks.
//
//   spdlog::warn("client '{}' reported: {}", id, printable(msg.error().message()));
//   static LogLimiter accept_errors(std::chrono::seconds(10));
//   if (auto n = accept_errors.allow()) spdlog::warn("accept failed: {} ({} suppressed)", why, *n);
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace federa {

// Printable ASCII kept; backslash, quotes and every other byte escaped (\n, \t, \xNN); cut to
// `max_bytes` of input with "...(N bytes)" appended when longer.
std::string printable(std::string_view text, std::size_t max_bytes = 200);

// True for names a metrics line or an event may carry: [A-Za-z0-9_.-]{1,64}.
bool plain_name(std::string_view name);

// At most one line per `interval`; allow() returns how many were suppressed since the last one
// allowed (0 or more), or nullopt when this one must be suppressed. Thread-safe.
class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogLimiter(Clock::duration interval) : interval_(interval) {}
  std::optional<std::uint64_t> allow();

 private:
  Clock::duration interval_;
  std::mutex mu_;
  Clock::time_point last_{};
  bool any_ = false;
  std::uint64_t suppressed_ = 0;
};

}  // namespace federa
