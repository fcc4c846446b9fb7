// Who may use the coordinator's admin listener, and with which role: an admin certificate from
// the federation CA (the role travels inside it) or a bearer token whose SHA-256 sits in
// DIR/admin-tokens. What the admin listener calls per request:
//
//   auto ctx = make_admin_server_tls_context(ca, cert, key);           // common/tls.hpp
//   auto tokens = AdminTokens::load("pki/admin-tokens");             // at start and on SIGHUP
//   Result<AdminIdentity> who = peer_admin_identity(ssl);
//   if (!who && who.error().code == ErrorCode::not_found)            // no certificate offered
//     who = tokens->verify(bearer);                                  // "Authorization: Bearer …"
//   if (!who) return reply(401 or 403, who.error().message);        // unauthenticated / denied
//   if (!role_allows(who->role, AdminRole::operate)) return reply(403, "operators only");
//
// An admin certificate carries the admin key purpose (an extended key usage under federa's OID
// arc, see certs/README.md) and never clientAuth, so the federation listener's TLS refuses it;
// a client certificate lacks the admin purpose, so peer_admin_identity refuses it. Tokens are
// 256 random bits, so one unsalted SHA-256 is as strong as the token; the file never holds one.
#pragma once

#include <openssl/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"

namespace federa {

// The two roles, named by what they allow: view (the "viewer" role) reads status, clients,
// rounds, metrics and events; operate (the "operator" role) also changes things: members,
// pause/resume/stop. Outside C++ (CLI, certificates, token file) they are "viewer"/"operator".
enum class AdminRole { view, operate };

std::string_view admin_role_name(AdminRole role);  // "viewer", "operator"
Result<AdminRole> parse_admin_role(std::string_view text);
// Whether `have` may do what needs `need`: an operator may do everything a viewer may.
bool role_allows(AdminRole have, AdminRole need);

struct AdminIdentity {
  std::string name;
  AdminRole role = AdminRole::view;
};

// The identity in a certificate that has already been verified against the federation CA:
// permission_denied when it is not an admin certificate (a member's or the coordinator's),
// invalid_argument when its role extension is missing or unknown.
Result<AdminIdentity> admin_identity(const X509* cert);

// The admin behind a TLS connection accepted by make_admin_server_tls_context: not_found when
// the peer offered no certificate (try its bearer token), unauthenticated when the certificate
// does not verify against the federation CA (expired, another CA; the reason is in the
// message), permission_denied for a certificate that is not an admin's.
Result<AdminIdentity> peer_admin_identity(const SSL* ssl);

// A new bearer token for NAME with ROLE: 256 bits from OpenSSL's CSPRNG, printed as "fdt_" and 64
// hex digits. Appends "sha256:HEX ROLE NAME" to DIR/admin-tokens (created 0600; refused when
// others may write to it) and returns the token, which is stored nowhere: show it once.
Result<std::string> create_admin_token(const std::filesystem::path& dir, const std::string& name,
                                       AdminRole role);

// The file create_admin_token appends to, loaded once and checked per request.
//   sha256:<64 hex digits> <viewer|operator> <name>      one token per line; '#' comments
// Remove a line to revoke that token (and reload). A name may have several tokens (rotation).
class AdminTokens {
 public:
  struct Entry {
    std::string name;
    AdminRole role = AdminRole::view;
    crypto::Key32 digest{};
  };

  // invalid_argument naming the line for a malformed entry; not_found for a missing file;
  // failed_precondition when others may write to it.
  static Result<AdminTokens> load(const std::filesystem::path& file);

  // The identity whose token `presented` is, or unauthenticated. The presented token is hashed
  // and compared with every entry in constant time, whatever matches.
  Result<AdminIdentity> verify(std::string_view presented) const;

  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
};

}  // namespace federa
