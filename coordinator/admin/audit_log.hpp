// The admin listener's audit trail: one JSON line per change requested through it (members,
// pause, resume, stop), whether it was made, refused or failed, with who asked, from where and
// when. The file is opened append-only (O_APPEND) with mode 0600 and never rewritten; each line is
// one write(2) followed by fdatasync, so a crash loses at most the line being written.
//
//   auto log = AuditLog::open("state/admin-audit.jsonl");
//   if (!log) fail(log.error());
//   log->write({.who = "alice", .role = "operator", .via = "certificate", .address =
//   "127.0.0.1:5123",
//               .action = "members.remove", .target = "hospital-b", .status = 200, .outcome =
//               "ok"});
//
//   {"time":"2025-05-01T12:00:00.123Z","who":"alice","role":"operator","via":"certificate",
//    "address":"127.0.0.1:5123","action":"members.remove","target":"hospital-b","status":200,
//    "outcome":"ok","reason":""}
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/result.hpp"

namespace federa::admin {

struct AuditEntry {
  std::string who;      // admin name, or "" when the caller could not be identified
  std::string role;     // "viewer" | "operator" | ""
  std::string via;      // "certificate" | "token" | ""
  std::string address;  // peer address
  std::string action;   // "members.add", "members.remove", "pause", "resume", "stop", ...
  std::string target;   // what the action was about (a member name), or ""
  unsigned status = 0;  // the HTTP status answered
  std::string outcome;  // "ok" | "refused" | "failed"
  std::string reason;   // why, when not ok
};

class AuditLog {
 public:
  // Creates the file (0600) or opens it for appending; failed_precondition when others may
  // write to it (they could forge entries).
  static Result<AuditLog> open(const std::filesystem::path& path);
  AuditLog(AuditLog&& o) noexcept
      : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), mu_(std::move(o.mu_)) {}
  AuditLog& operator=(AuditLog&&) = delete;
  ~AuditLog();
  // Thread-safe. The entry is stamped with the current UTC time.
  Status write(const AuditEntry& entry);
  const std::filesystem::path& path() const { return path_; }

 private:
  AuditLog(std::filesystem::path path, int fd)
      : path_(std::move(path)), fd_(fd), mu_(std::make_unique<std::mutex>()) {}
  std::filesystem::path path_;
  int fd_ = -1;
  std::unique_ptr<std::mutex> mu_;
};

// "2025-05-01T12:00:00.123Z"
std::string utc_timestamp(std::chrono::system_clock::time_point t);

}  // namespace federa::admin
