#include "common/doctor_checks.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

#include "common/pki_files.hpp"

namespace federa {

namespace fs = std::filesystem;
using pki_detail::quoted;

CheckResult check_ok(std::string name, std::string detail) {
  return {CheckLevel::ok, std::move(name), std::move(detail), {}};
}
CheckResult check_warn(std::string name, std::string detail, std::string fix) {
  return {CheckLevel::warn, std::move(name), std::move(detail), std::move(fix)};
}
CheckResult check_fail(std::string name, std::string detail, std::string fix) {
  return {CheckLevel::fail, std::move(name), std::move(detail), std::move(fix)};
}
CheckResult check_skip(std::string name, std::string detail) {
  return {CheckLevel::skip, std::move(name), std::move(detail), {}};
}

void DoctorReport::add(const CheckResult& r) {
  const char* tag = "ok  ";
  switch (r.level) {
    case CheckLevel::ok:
      break;
    case CheckLevel::warn:
      tag = "WARN";
      ++warnings_;
      break;
    case CheckLevel::fail:
      tag = "FAIL";
      ++failures_;
      break;
    case CheckLevel::skip:
      tag = "skip";
      break;
  }
  std::string name = r.name;
  if (name.size() < 12) name.resize(12, ' ');
  out_ << tag << "  " << name << " " << r.detail;
  if (!r.fix.empty()) out_ << " -> fix: " << r.fix;
  out_ << "\n";
  out_.flush();
}

int DoctorReport::exit_status() {
  if (failures_ > 0) {
    out_ << failures_ << (failures_ == 1 ? " check failed" : " checks failed");
    if (warnings_ > 0) out_ << ", " << warnings_ << (warnings_ == 1 ? " warning" : " warnings");
    out_ << "\n";
    return 1;
  }
  out_ << "all checks passed";
  if (warnings_ > 0)
    out_ << " (" << warnings_ << (warnings_ == 1 ? " warning" : " warnings") << ")";
  out_ << "\n";
  return 0;
}

std::optional<po::variables_map> parse_doctor_options(
    int argc, char** argv, po::options_description& desc,
    const std::map<std::string, PathResolver>& paths, std::ostream& out, std::string& config_file) {
  auto vm = parse_options(argc, argv, desc, paths);
  if (!vm) {
    out << desc << "\n";
    return vm;
  }
  if (vm->count("config")) config_file = (*vm)["config"].as<std::string>();
  const auto& level = (*vm)["log-level"];
  setup_logging(level.defaulted() ? "warn" : level.as<std::string>(), "doctor");
  return vm;
}

CheckResult check_config_parsed(const std::string& config_file) {
  return check_ok("config",
                  config_file.empty() ? "the flags parse" : config_file + " and the flags parse");
}

CheckResult check_config_failed(const std::string& why, const std::string& config_file,
                                const std::string& program) {
  return check_fail("config", why,
                    (config_file.empty() ? "correct the flags" : "edit " + config_file) +
                        " (see `" + program + " --help`; every flag is also a config key)");
}

std::string format_date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

namespace {

// mkstemp + unlink in `dir`: 0, or the errno that stopped it.
int probe_create(const fs::path& dir) {
  std::string templ = (dir / ".federa-doctor-XXXXXX").string();
  int fd = ::mkstemp(templ.data());
  if (fd < 0) return errno;
  ::close(fd);
  ::unlink(templ.c_str());
  return 0;
}

// The probe in a child with `user`'s ids. Everything that may allocate or take locks (the
// user database) happens before fork, so the child only makes system calls.
int probe_create_as(const fs::path& dir, const std::string& user) {
  struct passwd* pw = ::getpwnam(user.c_str());
  if (pw == nullptr) return ENOENT;
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  int ngroups = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(ngroups));
  if (::getgrouplist(user.c_str(), gid, groups.data(), &ngroups) < 0) ngroups = 0;
  groups.resize(static_cast<std::size_t>(std::max(ngroups, 0)));
  std::string templ = (dir / ".federa-doctor-XXXXXX").string();
  const pid_t pid = ::fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)
      ::_exit(EPERM);
    int fd = ::mkstemp(templ.data());
    if (fd < 0) ::_exit(errno);
    ::close(fd);
    ::unlink(templ.c_str());
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return errno;
  return WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
}

}  // namespace

CheckResult check_files_present(const std::string& name, const std::vector<fs::path>& files,
                                const std::string& fix) {
  std::string missing, present;
  std::error_code ec;
  for (const auto& f : files) {
    std::string& list = fs::exists(f, ec) ? present : missing;
    list += (list.empty() ? "" : ", ") + quoted(f);
  }
  if (!missing.empty())
    return check_fail(name, missing + (files.size() > 1 ? " missing" : " is missing"), fix);
  return check_ok(name, present + (files.size() > 1 ? " are there" : " is there"));
}

CheckResult check_certificate_chain(const std::string& name, const fs::path& ca_pem,
                                    const fs::path& cert_pem, CertificateKind kind,
                                    const std::string& issue_hint) {
  auto cn = verify_certificate(ca_pem, cert_pem);
  if (!cn) {
    const std::string& why = cn.error().message;
    std::string fix = "use a certificate issued by this federation's CA: " + issue_hint;
    if (why.find("expired") != std::string::npos) fix = "renew it (see the expiry line)";
    if (why.find("not signed by the CA") != std::string::npos)
      fix = quoted(ca_pem) +
            " and the certificate come from different federations; install the CA and kit "
            "from the same `federa-pki` folder (" +
            issue_hint + ")";
    return check_fail(name, why, fix);
  }
  auto info = read_certificate_info(cert_pem);
  if (!info) return check_fail(name, info.error().message, issue_hint);
  std::string detail = quoted(cert_pem) + ": '" + *cn + "', signed by the CA in " + quoted(ca_pem);
  if (info->kind != kind)
    return check_fail(name,
                      quoted(cert_pem) + " is a " + std::string(certificate_kind_name(info->kind)) +
                          " certificate, not a " + std::string(certificate_kind_name(kind)) +
                          " one",
                      issue_hint);
  if (kind == CertificateKind::coordinator) {
    std::string names;
    for (const auto& n : info->dns_names) names += (names.empty() ? "" : ", ") + n;
    for (const auto& n : info->ip_addresses) names += (names.empty() ? "" : ", ") + n;
    detail += "; members must dial one of: " + names;
  }
  return check_ok(name, detail);
}

CheckResult check_certificate_expiry(const std::string& name, const fs::path& cert_pem,
                                     const std::string& renew_hint) {
  auto expiry = read_certificate_expiry(cert_pem);
  if (!expiry) return check_fail(name, expiry.error().message, renew_hint);
  const long days = days_until(*expiry);
  const std::string when = format_date(*expiry);
  if (days < 0)
    return check_fail(
        name,
        quoted(cert_pem) + " expired on " + when + " (" + std::to_string(-days) + " days ago)",
        renew_hint);
  if (days < kExpiryWarningDays)
    return check_warn(
        name, quoted(cert_pem) + " expires on " + when + ", in " + std::to_string(days) + " days",
        renew_hint);
  return check_ok(
      name, quoted(cert_pem) + " valid until " + when + " (" + std::to_string(days) + " days)");
}

CheckResult check_private_key(const std::string& name, const fs::path& key_pem,
                              const fs::path& cert_pem) {
  struct stat st {};
  if (::stat(key_pem.c_str(), &st) != 0)
    return check_fail(name, quoted(key_pem) + ": " + std::strerror(errno),
                      "install the kit's key.pem there (root:root, mode 0600)");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return check_fail(
        name, quoted(key_pem) + " has mode " + mode + ": others may read the private key",
        "chmod 600 " + key_pem.string() + " (and treat the key as exposed if others did read it)");
  }
  if (::access(key_pem.c_str(), R_OK) != 0)
    return check_fail(
        name, quoted(key_pem) + ": " + std::strerror(errno),
        "run doctor as root (the service gets the key from systemd's LoadCredential=)");
  if (Status s = check_key_matches_certificate(key_pem, cert_pem); !s)
    return check_fail(name, s.error().message,
                      "install key.pem and cert.pem of the same kit (a renewed kit replaces both)");
  return check_ok(name,
                  quoted(key_pem) + " is private (owner only) and matches " + quoted(cert_pem));
}

CheckResult check_writable_folder(const std::string& name, const fs::path& dir,
                                  const std::optional<std::string>& user) {
  std::error_code ec;
  fs::path existing = fs::absolute(dir, ec);
  while (!existing.empty() && !fs::exists(existing, ec) && existing != existing.root_path())
    existing = existing.parent_path();
  if (!fs::is_directory(existing, ec))
    return check_fail(name, quoted(existing) + " is not a folder",
                      "choose a folder for " + quoted(dir));
  const bool as_user = user && ::geteuid() == 0;
  const int err = as_user ? probe_create_as(existing, *user) : probe_create(existing);
  const std::string who = as_user ? "user " + *user : "this user";
  const std::string what =
      existing == dir ? quoted(dir) : quoted(existing) + " (to create " + quoted(dir) + ")";
  if (err != 0)
    return check_fail(
        name, what + " is not writable for " + who + ": " + std::strerror(err),
        (as_user ? "chown -R " + *user + " " + existing.string()
                 : "make " + existing.string() + " writable for the user that runs the service") +
            ", or choose a folder under /var/lib/federa (the only one the packaged units may "
            "write)");
  return check_ok(name, what + " is writable for " + who);
}

std::optional<std::string> service_user_for_probes(const std::string& user) {
  if (::geteuid() != 0 || user.empty() || ::getpwnam(user.c_str()) == nullptr) return std::nullopt;
  return user;
}

}  // namespace federa
