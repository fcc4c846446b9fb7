#include "common/result.hpp"

namespace federa {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::unknown:
      return "unknown";
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::failed_precondition:
      return "failed_precondition";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::already_exists:
      return "already_exists";
    case ErrorCode::permission_denied:
      return "permission_denied";
    case ErrorCode::unauthenticated:
      return "unauthenticated";
    case ErrorCode::resource_exhausted:
      return "resource_exhausted";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::deadline_exceeded:
      return "deadline_exceeded";
    case ErrorCode::cancelled:
      return "cancelled";
    case ErrorCode::aborted:
      return "aborted";
    case ErrorCode::data_loss:
      return "data_loss";
    case ErrorCode::internal:
      return "internal";
  }
  return "unknown";
}

}  // namespace federa
