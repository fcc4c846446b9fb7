// File-system steps of the PKI (internal to common/pki*.cpp): every file is created, never
// overwritten; a call that fails removes what it created; a renewed kit replaces the old one in
// one rename.
//
//   Rollback rb;                                         // undoes everything unless committed
//   if (Status s = make_dir(kit, 0700, /*must_be_new=*/true, rb); !s) return s;
//   if (Status s = write_new_file(kit / "key.pem", pem, 0600, rb); !s) return s;
//   rb.commit();
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace federa::pki_detail {

std::string quoted(const std::filesystem::path& p);

// Files and folders a call created, removed again (newest first) unless the call succeeds, so a
// failed init or issue can simply be retried.
class Rollback {
 public:
  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback();
  void add(std::filesystem::path p) { created_.push_back(std::move(p)); }
  void commit() { committed_ = true; }

 private:
  std::vector<std::filesystem::path> created_;
  bool committed_ = false;
};

// Creates `path` with `mode` and writes `data`, fsynced. O_EXCL makes "never overwrite" atomic,
// and the mode is set at creation, so a private key is never readable by others, not even for
// an instant between create and chmod. EEXIST is already_exists.
Status write_new_file(const std::filesystem::path& path, std::string_view data, mode_t mode,
                      Rollback& rb);

// Creates `dir` with `mode` unless it exists. `must_be_new` turns an existing folder into an
// already_exists error (mkdir's EEXIST is then the atomic "exists already" check).
Status make_dir(const std::filesystem::path& dir, mode_t mode, bool must_be_new, Rollback& rb);

// already_exists when any of `paths` exists (a dangling symlink counts); `why` follows the path.
Status refuse_existing(const std::vector<std::filesystem::path>& paths, const std::string& why);

// Puts the folder `fresh` where `current` is in one step: with renameat2(RENAME_EXCHANGE) a
// reader sees either the whole old folder or the whole new one. File systems without it get two
// renames (the old folder moved aside first, moved back if the second fails). Both must be in
// the same parent folder. On success returns where the old contents now are (for the caller to
// remove); on failure nothing has changed.
Result<std::filesystem::path> replace_folder(const std::filesystem::path& fresh,
                                             const std::filesystem::path& current);

// A new, empty, 0700 folder beside `target` named ".NAME.tmp-XXXXXX". Names starting with '.'
// are never member names, so it cannot collide with a kit.
Result<std::filesystem::path> make_staging_dir(const std::filesystem::path& target);

// Appends `line` + '\n' to `path` in one write, creating it with mode 0600; refuses a file that
// others may write to, which would let them add entries. fsynced.
Status append_line_private(const std::filesystem::path& path, std::string_view line);

// fsync of a folder, so a rename or a new entry in it survives a crash. Best effort.
void sync_dir(const std::filesystem::path& dir);

}  // namespace federa::pki_detail
