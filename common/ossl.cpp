#include "common/ossl.hpp"

#include <openssl/err.h>

namespace federa::ossl {

std::string drain_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Error error(ErrorCode code, std::string what) {
  std::string detail = drain_errors();
  if (!detail.empty()) what += " (" + detail + ")";
  return make_error(code, std::move(what));
}

}  // namespace federa::ossl
