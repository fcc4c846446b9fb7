#include "coordinator/admin/http_util.hpp"

#include <boost/json.hpp>

namespace federa::admin {

namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size())
        return make_error(ErrorCode::invalid_argument,
                          "malformed percent-escape in the request target");
      const int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0)
        return make_error(ErrorCode::invalid_argument,
                          "malformed percent-escape in the request target");
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return make_error(ErrorCode::invalid_argument,
                        "control characters are not allowed in the request target");
    out += c;
  }
  return out;
}

}  // namespace

Result<Target> parse_target(std::string_view target) {
  if (target.empty() || target.front() != '/')
    return make_error(ErrorCode::invalid_argument, "the request target must be an absolute path");
  if (target.size() > kMaxTargetLength)
    return make_error(ErrorCode::invalid_argument, "the request target is longer than " +
                                                       std::to_string(kMaxTargetLength) + " bytes");
  Target t;
  std::string_view path = target, query;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  if (auto h = query.find('#'); h != std::string_view::npos) query = query.substr(0, h);
  path.remove_prefix(1);
  while (!path.empty()) {
    const auto slash = path.find('/');
    std::string_view raw = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (raw.empty()) continue;  // "//" and a trailing "/" add nothing
    auto seg = decode(raw, false);
    if (!seg) return seg.error();
    if (*seg == "." || *seg == ".." || seg->find_first_of("/\\") != std::string::npos)
      return make_error(ErrorCode::invalid_argument,
                        "path traversal ('.', '..', '/' or '\\' in a path segment) is refused");
    t.segments.push_back(std::move(*seg));
  }
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto key = decode(pair.substr(0, eq), true);
    if (!key) return key.error();
    auto value =
        decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
    if (!value) return value.error();
    if (!t.query.emplace(std::move(*key), std::move(*value)).second)
      return make_error(ErrorCode::invalid_argument, "a query parameter is given twice");
  }
  return t;
}

std::optional<std::uint64_t> parse_uint(std::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

std::string error_json(const Error& e) {
  return boost::json::serialize(
      boost::json::object{{"error", e.message}, {"code", std::string(error_code_name(e.code))}});
}

}  // namespace federa::admin
