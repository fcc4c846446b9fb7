#include "coordinator/admin/members_file.hpp"

#include <vector>

#include "common/fsutil.hpp"
#include "coordinator/cli.hpp"

namespace federa::admin {

namespace {

// The name a members-file line holds: the text before '#', trimmed (as read_members_file reads it).
std::string_view line_name(std::string_view line) {
  if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
  const auto first = line.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = line.find_last_not_of(" \t\r");
  return line.substr(first, last - first + 1);
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

}  // namespace

Result<std::string> members_text_add(std::string_view text, const std::string& name,
                                     const std::string& note) {
  for (std::string_view line : split_lines(text))
    if (line_name(line) == name)
      return make_error(ErrorCode::already_exists, "'" + name + "' is already a member");
  std::string out(text);
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += name;
  if (!note.empty()) {
    std::string clean = note;
    for (char& c : clean)
      if (c == '\n' || c == '\r') c = ' ';
    out += "  # " + clean;
  }
  out += '\n';
  return out;
}

Result<std::string> members_text_remove(std::string_view text, const std::string& name) {
  std::string out;
  bool found = false, others = false;
  for (std::string_view line : split_lines(text)) {
    const std::string_view n = line_name(line);
    if (n == name) {
      found = true;
      continue;
    }
    if (!n.empty()) others = true;
    out.append(line);
    out += '\n';
  }
  if (!found) return make_error(ErrorCode::not_found, "'" + name + "' is not a member");
  if (!others)
    return make_error(
        ErrorCode::failed_precondition,
        "'" + name +
            "' is the last member; an empty member list would admit any client the CA signed");
  return out;
}

template <typename Edit>
Result<std::set<std::string>> MembersFile::edit(Edit&& edit) const {
  auto text = read_file(path_);
  if (!text)
    return make_error(ErrorCode::failed_precondition,
                      "cannot read the members file: " + text.error().message);
  Result<std::string> next = edit(*text);
  if (!next) return next.error();
  if (Status s = write_file_atomic(path_, *next); !s)
    return make_error(ErrorCode::internal,
                      "cannot rewrite the members file " + path_.string() + ": " + s.message());
  auto members = read_members_file(path_.string());
  if (!members)
    return make_error(ErrorCode::internal,
                      "the rewritten members file does not read back: " + members.error().message);
  return members;
}

Result<std::set<std::string>> MembersFile::add(const std::string& name,
                                               const std::string& note) const {
  return edit([&](const std::string& text) { return members_text_add(text, name, note); });
}

Result<std::set<std::string>> MembersFile::remove(const std::string& name) const {
  return edit([&](const std::string& text) { return members_text_remove(text, name); });
}

}  // namespace federa::admin
