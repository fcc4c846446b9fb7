// doctor's shared checks (common/doctor_checks.hpp) on real kits: a good one, one from another
// CA, a coordinator certificate where a client one is expected, expired and nearly expired
// certificates, a key others may read, a key from another kit, and folders we cannot write.
#include <pwd.h>
#include <unistd.h>

#include <sstream>

#include "common/doctor_checks.hpp"
#include "common/pki_x509.hpp"
#include "tests/common/test_pki_util.hpp"

using namespace federa;
using namespace federa::test;

namespace {

// A client kit for `name` valid for `days` (negative: already expired), signed by f's CA.
fs::path kit_with_validity(const Federation& f, const std::string& name, int days) {
  auto ca = pki_detail::load_ca(f.pki);
  REQUIRE_MESSAGE(ca.ok(), message_of(ca));
  pki_detail::CertSpec spec{name, days, false, "clientAuth", {}, {}};
  auto kit = pki_detail::make_kit(spec, *ca);
  REQUIRE_MESSAGE(kit.ok(), message_of(kit));
  const fs::path dir = f.tmp.path / ("kit-" + name);
  fs::create_directories(dir);
  std::ofstream(dir / "cert.pem") << kit->cert;
  std::ofstream(dir / "ca.pem") << kit->ca;
  std::ofstream(dir / "key.pem") << kit->key;
  fs::permissions(dir / "key.pem", fs::perms::owner_read | fs::perms::owner_write);
  return dir;
}

CheckResult chain(const Federation& f, const fs::path& ca, const fs::path& cert,
                  CertificateKind kind) {
  return check_certificate_chain("certificate", ca, cert, kind, "federa-pki issue");
}

}  // namespace

TEST_CASE(
    "doctor report: one line per check, the fix after a failure, exit status from failures only") {
  std::ostringstream out;
  DoctorReport report(out);
  report.add(check_ok("config", "parses"));
  report.add(check_warn("expiry", "expires in 3 days", "renew it"));
  report.add(check_skip("eval-data", "none"));
  CHECK(report.failures() == 0);
  CHECK(report.warnings() == 1);
  report.add(check_fail("listen", "cannot listen", "choose a free port"));
  CHECK(report.exit_status() == 1);
  CHECK(out.str() ==
        "ok    config       parses\n"
        "WARN  expiry       expires in 3 days -> fix: renew it\n"
        "skip  eval-data    none\n"
        "FAIL  listen       cannot listen -> fix: choose a free port\n"
        "1 check failed, 1 warning\n");

  std::ostringstream quiet;
  DoctorReport fine(quiet);
  fine.add(check_warn("members", "no members file", "add one"));
  CHECK(fine.exit_status() == 0);
  CHECK(contains(quiet.str(), "all checks passed (1 warning)"));
}

TEST_CASE("doctor: a kit's chain and kind") {
  Federation f({"fl.example.org", "10.0.0.5"});
  auto good = chain(f, f.ca(), f.kit() / "cert.pem", CertificateKind::client);
  CHECK(good.level == CheckLevel::ok);
  CHECK(contains(good.detail, "'hospital-a'"));

  auto coord = chain(f, f.ca(), f.coordinator() / "cert.pem", CertificateKind::coordinator);
  CHECK(coord.level == CheckLevel::ok);
  CHECK(contains(coord.detail, "members must dial one of: fl.example.org, 10.0.0.5"));

  auto wrong_kind = chain(f, f.ca(), f.coordinator() / "cert.pem", CertificateKind::client);
  CHECK(wrong_kind.level == CheckLevel::fail);
  CHECK(contains(wrong_kind.detail, "is a coordinator certificate, not a client one"));

  Federation other;
  auto wrong_ca = chain(f, other.ca(), f.kit() / "cert.pem", CertificateKind::client);
  CHECK(wrong_ca.level == CheckLevel::fail);
  CHECK(contains(wrong_ca.detail, "not signed by the CA"));
  CHECK(contains(wrong_ca.fix, "come from different federations"));
}

TEST_CASE("doctor: certificate expiry fails once past, warns under 30 days") {
  Federation f;
  auto fresh = check_certificate_expiry("expiry", f.kit() / "cert.pem", "renew");
  CHECK(fresh.level == CheckLevel::ok);
  CHECK(contains(fresh.detail, "(364 days)"));

  const fs::path soon = kit_with_validity(f, "soon", 10);
  auto warned =
      check_certificate_expiry("expiry", soon / "cert.pem", "federa-pki renew --client soon");
  CHECK(warned.level == CheckLevel::warn);
  CHECK(contains(warned.detail, "in 9 days"));
  CHECK(warned.fix == "federa-pki renew --client soon");

  const fs::path old = kit_with_validity(f, "old", -2);
  auto expired = check_certificate_expiry("expiry", old / "cert.pem", "renew");
  CHECK(expired.level == CheckLevel::fail);
  CHECK(contains(expired.detail, "expired on"));
  auto chain_of_expired = chain(f, f.ca(), old / "cert.pem", CertificateKind::client);
  CHECK(chain_of_expired.level == CheckLevel::fail);
  CHECK(contains(chain_of_expired.detail, "certificate has expired"));
}

TEST_CASE("doctor: the private key is private and belongs to the certificate") {
  Federation f;
  const fs::path key = f.kit() / "key.pem", cert = f.kit() / "cert.pem";
  auto good = check_private_key("key", key, cert);
  CHECK_MESSAGE(good.level == CheckLevel::ok, good.detail);

  fs::permissions(key, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  auto loose = check_private_key("key", key, cert);
  CHECK(loose.level == CheckLevel::fail);
  CHECK(contains(loose.detail, "has mode 0644"));
  CHECK(contains(loose.fix, "chmod 600 " + key.string()));
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);

  auto mismatch = check_private_key("key", f.coordinator() / "key.pem", cert);
  CHECK(mismatch.level == CheckLevel::fail);
  CHECK(contains(mismatch.detail, "does not match"));

  auto missing = check_private_key("key", f.kit() / "nope.pem", cert);
  CHECK(missing.level == CheckLevel::fail);
  CHECK(contains(missing.detail, "No such file"));
}

TEST_CASE("doctor: a folder the service writes, probed as the service user when root") {
  TempDir tmp;
  auto here = check_writable_folder("state", tmp.path / "a" / "b", std::nullopt);
  CHECK_MESSAGE(here.level == CheckLevel::ok, here.detail);
  CHECK(contains(here.detail, "(to create"));
  CHECK(!fs::exists(tmp.path / "a"));  // a probe creates nothing that stays

  const fs::path locked = tmp.path / "locked";
  fs::create_directory(locked);
  fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
  std::optional<std::string> as;
  if (::geteuid() == 0) {
    // Root writes anywhere; the check then probes as the unit's user, as the service would run.
    REQUIRE_MESSAGE(::getpwnam("nobody") != nullptr, "needs the user 'nobody'");
    as = service_user_for_probes("nobody");
    REQUIRE(as == std::optional<std::string>("nobody"));
    CHECK(!service_user_for_probes("no-such-user-federa-test").has_value());
  }
  auto refused = check_writable_folder("state", locked, as);
  CHECK(refused.level == CheckLevel::fail);
  CHECK(contains(refused.detail, "Permission denied"));
  CHECK(contains(refused.fix, "/var/lib/federa"));
  fs::permissions(locked, fs::perms::owner_all, fs::perm_options::replace);
  CHECK(fs::is_empty(locked));
}
