// Request targets of the admin listener, parsed strictly: every parameter that reaches a file
// name or a lookup comes out of here, so traversal ("..", "%2e%2e", "%2F", "\"), control bytes
// and malformed escapes are refused before any handler sees them.
//
//   Result<Target> t = parse_target("/api/v1/rounds/3?detail=1");
//   t->segments == {"api", "v1", "rounds", "3"};  t->query.at("detail") == "1"
//   parse_target("/api/v1/members/..%2Fetc").error().code == ErrorCode::invalid_argument
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace federa::admin {

struct Target {
  std::vector<std::string> segments;  // percent-decoded path segments, none empty, "." or ".."
  std::map<std::string, std::string> query;
};

constexpr std::size_t kMaxTargetLength = 2048;

Result<Target> parse_target(std::string_view target);

// A whole number written with digits only (no sign, no spaces), at most 19 digits.
std::optional<std::uint64_t> parse_uint(std::string_view text);

// {"error": message, "code": "not_found"} as a string.
std::string error_json(const Error& e);

}  // namespace federa::admin
