// Small file-system helpers with the guarantees the state store needs.
//
//   Status s = write_file_atomic(dir / "state.json", bytes);  // temp, fsync, rename, fsync dir
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace federa {

// Writes `data` to `path` so that a crash leaves either the old file or the new one, never a
// torn one: write to a temp file beside it, fsync it, rename over `path`, fsync the folder.
// The temp file has a name no one can predict and is created with O_EXCL | O_NOFOLLOW, so a
// planted file or symlink is never written through; the new file gets `mode` (owner-only by
// default: federation state is nobody else's business). Every close and fsync is checked.
Status write_file_atomic(const std::filesystem::path& path, std::string_view data,
                         mode_t mode = 0600);

// The same, for contents too large to hold twice: `produce` hands the file's bytes, in order, to
// the sink it is given (each call is written before it returns); an error from either side
// removes the temp file and leaves `path` as it was.
using ByteSink = std::function<Status(std::string_view)>;
Status write_file_atomic(const std::filesystem::path& path,
                         const std::function<Status(const ByteSink&)>& produce, mode_t mode = 0600);

Result<std::string> read_file(const std::filesystem::path& path);

// fsync of a folder, so that renames and links made in it survive a crash. A file system that
// cannot sync folders (EINVAL) counts as done. Errors name the folder.
Status sync_folder(const std::filesystem::path& dir);

// The code for a failed file-system call's errno: permission_denied (EACCES, EPERM, EROFS),
// resource_exhausted (ENOSPC, EDQUOT, EMFILE, ENFILE), not_found (ENOENT, ENOTDIR),
// already_exists (EEXIST), unavailable for the rest (an I/O error, a file system gone).
ErrorCode file_error_code(int err);

}  // namespace federa
