#include "common/pki_files.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace federa::pki_detail {

namespace fs = std::filesystem;

namespace {

Error sys_error(ErrorCode code, const std::string& what, const fs::path& p, int err) {
  return make_error(code, what + " " + quoted(p) + ": " + std::strerror(err));
}

ErrorCode code_of(int err) {
  switch (err) {
    case EACCES:
    case EPERM:
      return ErrorCode::permission_denied;
    case ENOENT:
      return ErrorCode::not_found;
    case EEXIST:
      return ErrorCode::already_exists;
    case ENOSPC:
    case EDQUOT:
      return ErrorCode::resource_exhausted;
    default:
      return ErrorCode::unavailable;
  }
}

Status write_all(int fd, std::string_view data, const fs::path& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      return sys_error(code_of(err), "cannot write", path, err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    return sys_error(code_of(err), "cannot write", path, err);
  }
  return Status::success();
}

}  // namespace

std::string quoted(const fs::path& p) {
  // Appended rather than "'" + p.string() + "'", which trips GCC 12's -Wrestrict (bug 105329).
  std::string out = "'";
  out += p.string();
  out += '\'';
  return out;
}

Rollback::~Rollback() {
  if (committed_) return;
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    std::error_code ec;
    fs::remove(*it, ec);
  }
}

Status write_new_file(const fs::path& path, std::string_view data, mode_t mode, Rollback& rb) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST)
      return make_error(ErrorCode::already_exists,
                        quoted(path) + " already exists; refusing to overwrite it");
    return sys_error(code_of(err), "cannot create", path, err);
  }
  rb.add(path);
  Status written = write_all(fd, data, path);
  if (::close(fd) != 0 && written.ok()) {
    int err = errno;
    return sys_error(code_of(err), "cannot write", path, err);
  }
  return written;
}

Status make_dir(const fs::path& dir, mode_t mode, bool must_be_new, Rollback& rb) {
  if (::mkdir(dir.c_str(), mode) == 0) {
    rb.add(dir);
    return Status::success();
  }
  int err = errno;
  if (err != EEXIST) return sys_error(code_of(err), "cannot create folder", dir, err);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return make_error(ErrorCode::already_exists, quoted(dir) + " exists and is not a folder");
  if (must_be_new)
    return make_error(ErrorCode::already_exists,
                      quoted(dir) + " already exists; refusing to overwrite it");
  return Status::success();
}

Status refuse_existing(const std::vector<fs::path>& paths, const std::string& why) {
  for (const fs::path& p : paths) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(p, ec)))
      return make_error(ErrorCode::already_exists,
                        quoted(p) + " already exists" + why + "; refusing to overwrite it");
  }
  return Status::success();
}

void sync_dir(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  static_cast<void>(::fsync(fd));
  ::close(fd);
}

Result<fs::path> make_staging_dir(const fs::path& target) {
  std::string name = ".";  // appended, not "." + …: see quoted()
  name += target.filename().string();
  name += ".tmp-XXXXXX";
  std::string tmpl = (target.parent_path() / name).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    int err = errno;
    return sys_error(code_of(err), "cannot create a folder beside", target, err);
  }
  return fs::path(tmpl);
}

Result<fs::path> replace_folder(const fs::path& fresh, const fs::path& current) {
  sync_dir(fresh);
  fs::path old_contents = fresh;  // after the exchange
  if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, current.c_str(), RENAME_EXCHANGE) != 0) {
    int err = errno;
    if (err != EINVAL && err != ENOSYS && err != EOPNOTSUPP)
      return sys_error(code_of(err), "cannot put the new folder in place of", current, err);
    // No RENAME_EXCHANGE on this file system: move the old folder aside, then the new one in.
    old_contents += ".old";
    if (::rename(current.c_str(), old_contents.c_str()) != 0) {
      err = errno;
      return sys_error(code_of(err), "cannot move aside", current, err);
    }
    if (::rename(fresh.c_str(), current.c_str()) != 0) {
      err = errno;
      static_cast<void>(::rename(old_contents.c_str(), current.c_str()));
      return sys_error(code_of(err), "cannot put the new folder in place of", current, err);
    }
  }
  sync_dir(current.parent_path());
  return old_contents;
}

Status append_line_private(const fs::path& path, std::string_view line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    int err = errno;
    return sys_error(code_of(err), "cannot open", path, err);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 022) != 0) {
    ::close(fd);
    return make_error(
        ErrorCode::failed_precondition,
        quoted(path) + " is not a regular file that only its owner may write to (chmod 600 it)");
  }
  std::string text(line);
  text += '\n';
  Status written = write_all(fd, text, path);
  ::close(fd);
  return written;
}

}  // namespace federa::pki_detail
