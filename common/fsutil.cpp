#include "common/fsutil.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace federa {

ErrorCode file_error_code(int err) {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return ErrorCode::permission_denied;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
      return ErrorCode::resource_exhausted;
    case ENOENT:
    case ENOTDIR:
      return ErrorCode::not_found;
    case EEXIST:
      return ErrorCode::already_exists;
    default:
      return ErrorCode::unavailable;
  }
}

namespace {
// Reads errno: call it right after the failed call.
Error sys_error(const std::string& what, const std::filesystem::path& p) {
  const int err = errno;
  return make_error(file_error_code(err), what + " " + p.string() + ": " + std::strerror(err));
}
}  // namespace

Status write_file_atomic(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  return write_file_atomic(
      path, [data](const ByteSink& sink) { return sink(data); }, mode);
}

namespace {
Status write_all(int fd, std::string_view data, const std::filesystem::path& tmp) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("cannot write", tmp);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

Status sync_folder(const std::filesystem::path& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return sys_error("cannot open folder", dir);
  const int synced = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (synced != 0 && err != EINVAL) {  // EINVAL: this file system cannot sync folders
    errno = err;
    return sys_error("cannot fsync folder", dir);
  }
  return {};
}

Status write_file_atomic(const std::filesystem::path& path,
                         const std::function<Status(const ByteSink&)>& produce, mode_t mode) {
  // A unique name beside the target: pid, a counter and random bits, so concurrent writers and
  // stale leftovers never collide and nobody can plant the file in advance.
  static std::atomic<std::uint64_t> counter{0};
  std::random_device rd;
  char suffix[80];
  std::snprintf(suffix, sizeof suffix, ".tmp.%ld.%llu.%08x%08x", static_cast<long>(::getpid()),
                static_cast<unsigned long long>(counter.fetch_add(1)), rd(), rd());
  auto tmp = path;
  tmp += suffix;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return sys_error("cannot create", tmp);
  auto fail = [&](Error e) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  if (Status s = produce([&](std::string_view part) { return write_all(fd, part, tmp); }); !s)
    return fail(s.error());
  if (::fsync(fd) != 0) return fail(sys_error("cannot fsync", tmp));
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) return fail(sys_error("cannot close", tmp));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = sys_error("cannot rename onto", path);
    ::unlink(tmp.c_str());
    return e;
  }
  // The rename is durable only once the folder's entry is on disk.
  const auto dir = path.parent_path();
  return sync_folder(dir.empty() ? std::filesystem::path(".") : dir);
}

Result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return sys_error("cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return sys_error("cannot read", path);
  return ss.str();
}

}  // namespace federa
