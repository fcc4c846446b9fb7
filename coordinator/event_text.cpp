#include "coordinator/event_text.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace federa {

std::string printable(std::string_view text, std::size_t max_bytes) {
  const std::string_view shown = text.substr(0, std::min(text.size(), max_bytes));
  std::string out;
  out.reserve(shown.size() + 16);
  for (unsigned char c : shown) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      default:
        if (c >= 0x20 && c < 0x7f)
          out += static_cast<char>(c);
        else
          out += fmt::format("\\x{:02x}", c);
    }
  }
  if (shown.size() < text.size()) out += fmt::format("...({} bytes)", text.size());
  return out;
}

bool plain_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::optional<std::uint64_t> LogLimiter::allow() {
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  if (any_ && now - last_ < interval_) {
    ++suppressed_;
    return std::nullopt;
  }
  any_ = true;
  last_ = now;
  const std::uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

}  // namespace federa
