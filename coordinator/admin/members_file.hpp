// Live member changes that survive a restart: the --members file is edited line by line (the
// operator's comments and order stay), written atomically (temp, fsync, rename), then read back
// with the same parser the coordinator uses at start-up, so what the orchestrator gets is
// exactly what a restart would get.
//
//   MembersFile file("members.txt");
//   Result<std::set<std::string>> now = file.add("hospital-d", "added by alice via the admin API");
//   if (now) orchestrator.set_members(*now);
//   now = file.remove("hospital-b");   // not_found, or failed_precondition for the last member
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace federa::admin {

// The text with `name` appended as its own line ("NAME  # NOTE"); already_exists when a line
// names it. `name` must already be valid (validate_client_name).
Result<std::string> members_text_add(std::string_view text, const std::string& name,
                                     const std::string& note);
// The text without the lines naming `name`; not_found when none does, failed_precondition when
// no name would be left (an empty list would admit any client the CA signed).
Result<std::string> members_text_remove(std::string_view text, const std::string& name);

class MembersFile {
 public:
  explicit MembersFile(std::filesystem::path path) : path_(std::move(path)) {}
  const std::filesystem::path& path() const { return path_; }
  // Each edits the file as it is on disk now, rewrites it atomically and returns the member
  // set read back from it. On any error the file is unchanged.
  Result<std::set<std::string>> add(const std::string& name, const std::string& note) const;
  Result<std::set<std::string>> remove(const std::string& name) const;

 private:
  template <typename Edit>
  Result<std::set<std::string>> edit(Edit&& edit) const;
  std::filesystem::path path_;
};

}  // namespace federa::admin
