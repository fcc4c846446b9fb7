#include "coordinator/admin/audit_log.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

namespace federa::admin {

std::string utc_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
}

Result<AuditLog> AuditLog::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(
        ErrorCode::failed_precondition,
        "cannot open the admin audit log " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 022) != 0) {
    ::close(fd);
    return make_error(ErrorCode::failed_precondition,
                      "the admin audit log " + path.string() +
                          " is not a regular file only its owner may write (chmod 600 it)");
  }
  return AuditLog(path, fd);
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::write(const AuditEntry& e) {
  boost::json::object o;
  o["time"] = utc_timestamp(std::chrono::system_clock::now());
  o["who"] = e.who;
  o["role"] = e.role;
  o["via"] = e.via;
  o["address"] = e.address;
  o["action"] = e.action;
  o["target"] = e.target;
  o["status"] = e.status;
  o["outcome"] = e.outcome;
  o["reason"] = e.reason;
  const std::string line = boost::json::serialize(o) + "\n";
  std::lock_guard lk(*mu_);
  // O_APPEND and one write(2): concurrent writers (even other processes) never interleave a line.
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size()))
    return make_error(ErrorCode::internal, "cannot append to the admin audit log " +
                                               path_.string() + ": " +
                                               (n < 0 ? std::strerror(errno) : "short write"));
  if (::fdatasync(fd_) != 0)
    return make_error(ErrorCode::internal, "cannot sync the admin audit log " + path_.string() +
                                               ": " + std::strerror(errno));
  return {};
}

}  // namespace federa::admin
