// The checks `federa-coordinator doctor` and `federa-client doctor` share: a report that prints
// one line per check with what to do when it fails, and the checks of a kit (certificate chain,
// expiry, the private key's permissions and match) and of a folder the service writes.
//
//   DoctorReport report(std::cout);
//   report.add(check_certificate_chain("certificate", kit + "/ca.pem", kit + "/cert.pem",
//                                      CertificateKind::client, "federa-pki issue --dir pki
//                                      --client NAME"));
//   report.add(check_certificate_expiry("expiry", kit + "/cert.pem", "federa-pki renew ..."));
//   report.add(check_private_key("key", kit + "/key.pem", kit + "/cert.pem"));
//   return report.exit_status();   // 1 when any check failed; warnings alone give 0
//
// Why a report of lines rather than the first error: an operator setting up a service fixes
// several things at once, and each line says what to do in the words of the deployment guide.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/options.hpp"
#include "common/pki.hpp"

namespace federa {

enum class CheckLevel { ok, warn, fail, skip };

struct CheckResult {
  CheckLevel level = CheckLevel::ok;
  std::string name;    // short, e.g. "certificate", "listen", "state"
  std::string detail;  // what was found
  std::string fix;     // what to do about it (for warn and fail)
};

CheckResult check_ok(std::string name, std::string detail);
CheckResult check_warn(std::string name, std::string detail, std::string fix);
CheckResult check_fail(std::string name, std::string detail, std::string fix);
CheckResult check_skip(std::string name, std::string detail);

// Prints each check as it is added: "ok    certificate  ..." or "FAIL  key  ... -> fix: ...".
class DoctorReport {
 public:
  explicit DoctorReport(std::ostream& out) : out_(out) {}
  void add(const CheckResult& result);
  int failures() const { return failures_; }
  int warnings() const { return warnings_; }
  // Prints the closing line; 0 when nothing failed, 1 otherwise.
  int exit_status();

 private:
  std::ostream& out_;
  int failures_ = 0;
  int warnings_ = 0;
};

// A doctor's command line, parsed as the program parses its own (parse_options with the
// program's `paths`), and logging set to warnings only unless --log-level is given. nullopt
// when --help was asked for (the flags are printed to `out`). `config_file` gets --config's
// value. Throws OptionsError, like parse_options.
std::optional<po::variables_map> parse_doctor_options(
    int argc, char** argv, po::options_description& desc,
    const std::map<std::string, PathResolver>& paths, std::ostream& out, std::string& config_file);

// The "config" line; `config_file` is empty when only flags were given.
CheckResult check_config_parsed(const std::string& config_file);
CheckResult check_config_failed(const std::string& why, const std::string& config_file,
                                const std::string& program);

// Days before expiry from which `doctor` warns (and the coordinator logs a warning).
inline constexpr long kExpiryWarningDays = 30;
// "2027-11-30" (UTC), as the expiry lines print a date.
std::string format_date(std::chrono::system_clock::time_point t);

// Every file in `files` exists (the checks of their contents would only repeat "missing");
// the fail line names the missing ones and says `fix`.
CheckResult check_files_present(const std::string& name,
                                const std::vector<std::filesystem::path>& files,
                                const std::string& fix);

// `cert_pem` chains to `ca_pem` (signature, validity dates) and is of `kind`; `issue_hint` is
// the command that makes a right one.
CheckResult check_certificate_chain(const std::string& name, const std::filesystem::path& ca_pem,
                                    const std::filesystem::path& cert_pem, CertificateKind kind,
                                    const std::string& issue_hint);

// Fails once `cert_pem` has expired, warns under kExpiryWarningDays days before.
CheckResult check_certificate_expiry(const std::string& name, const std::filesystem::path& cert_pem,
                                     const std::string& renew_hint);

// The key exists, is readable by us, gives nobody but its owner access (mode 0600 or 0400),
// and belongs to the certificate.
CheckResult check_private_key(const std::string& name, const std::filesystem::path& key_pem,
                              const std::filesystem::path& cert_pem);

// A folder the service writes (created if missing, as the programs do): the nearest existing
// folder on the way must let `user` (or us, when nullopt or when not running as root) create a
// file. As root the probe runs in a child process with that user's ids, as the service would.
CheckResult check_writable_folder(const std::string& name, const std::filesystem::path& dir,
                                  const std::optional<std::string>& user);

// Whom to probe folders as: `user` (the units' User=, "federa" by default) when we are root and
// it exists; nullopt ("as ourselves") otherwise.
std::optional<std::string> service_user_for_probes(const std::string& user);

}  // namespace federa
