// Renewal, listing, expiry and key/certificate pairs.
#include <doctest/doctest.h>

#include <algorithm>

#include "common/pki_x509.hpp"
#include "tests/common/test_pki_util.hpp"

using namespace federa;
using namespace federa::test;
using std::chrono::days;
using std::chrono::seconds;
using std::chrono::system_clock;

namespace {

std::vector<std::string> folder_names(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

const PkiEntry* find_entry(const std::vector<PkiEntry>& entries, const std::string& name) {
  for (const PkiEntry& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

}  // namespace

TEST_CASE("renew_kit gives a client a new key and certificate under the same name and CA") {
  Federation f;
  auto before = read_certificate_info(f.kit() / "cert.pem");
  REQUIRE(before.ok());
  const std::string old_key = read_text(f.kit() / "key.pem");
  const fs::path old_copy = f.tmp.path / "old-kit";
  fs::copy(f.kit(), old_copy);

  auto renewed = renew_kit(f.pki, KitKind::client, "hospital-a");
  REQUIRE_MESSAGE(renewed.ok(), message_of(renewed));
  CHECK(*renewed ==
        std::vector<fs::path>{f.kit() / "key.pem", f.kit() / "cert.pem", f.kit() / "ca.pem"});
  auto after = read_certificate_info(f.kit() / "cert.pem");
  REQUIRE(after.ok());
  CHECK(after->common_name == "hospital-a");
  CHECK(after->kind == CertificateKind::client);
  CHECK(after->serial_hex != before->serial_hex);
  CHECK(read_text(f.kit() / "key.pem") != old_key);
  CHECK(file_mode(f.kit() / "key.pem") == 0600);
  CHECK(file_mode(f.kit()) == 0700);
  CHECK(read_text(f.kit() / "ca.pem") == read_text(f.ca()));
  CHECK(verify_certificate(f.ca(), f.kit() / "cert.pem").ok());
  CHECK(check_key_matches_certificate(f.kit() / "key.pem", f.kit() / "cert.pem").ok());
  // The old key belongs to the old certificate only.
  CHECK_FALSE(check_key_matches_certificate(old_copy / "key.pem", f.kit() / "cert.pem").ok());
  // Nothing is left beside the kit: no staging folder, no old copy.
  CHECK(folder_names(f.pki / "clients") == std::vector<std::string>{"hospital-a"});

  // The renewed kit connects as the same member.
  auto server_ctx = server_context(f);
  auto client_ctx = client_context(f.kit() / "ca.pem", f.kit());
  Outcome out = connect_once(*server_ctx, *client_ctx);
  CHECK_MESSAGE(!out.client_ec, out.client_said);
  CHECK(out.server_saw_cn == std::optional<std::string>("hospital-a"));
}

TEST_CASE("renew_kit keeps an admin's role and the coordinator's names") {
  Federation f({"fl.example.org", "10.0.0.5"});
  REQUIRE(issue_admin(f.pki, "alice", AdminRole::operate).ok());
  auto admin = renew_kit(f.pki, KitKind::admin, "alice");
  REQUIRE_MESSAGE(admin.ok(), message_of(admin));
  auto info = read_certificate_info(f.admin_kit("alice") / "cert.pem");
  REQUIRE(info.ok());
  CHECK(info->kind == CertificateKind::admin);
  CHECK(info->admin_role == "operator");

  const std::string old_serial = read_certificate_info(f.coordinator() / "cert.pem")->serial_hex;
  auto coordinator = renew_kit(f.pki, KitKind::coordinator, "ignored");
  REQUIRE_MESSAGE(coordinator.ok(), message_of(coordinator));
  auto coord = read_certificate_info(f.coordinator() / "cert.pem");
  REQUIRE(coord.ok());
  CHECK(coord->serial_hex != old_serial);
  CHECK(coord->kind == CertificateKind::coordinator);
  CHECK(coord->dns_names == std::vector<std::string>{"fl.example.org"});
  CHECK(coord->ip_addresses == std::vector<std::string>{"10.0.0.5"});
  CHECK(check_key_matches_certificate(f.coordinator() / "key.pem", f.coordinator() / "cert.pem")
            .ok());
}

TEST_CASE(
    "renew_kit refuses a missing kit, a foreign certificate and a swapped one, changing nothing") {
  Federation ours;
  Federation theirs;
  auto missing = renew_kit(ours.pki, KitKind::client, "hospital-b");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::not_found);
  CHECK(contains(missing.error().message, "federa-pki issue"));
  CHECK(renew_kit(ours.pki, KitKind::client, "../clients/hospital-a").error().code ==
        ErrorCode::invalid_argument);

  // A kit holding another federation's certificate under our member's name.
  fs::copy_file(theirs.kit() / "cert.pem", ours.kit() / "cert.pem",
                fs::copy_options::overwrite_existing);
  const std::string planted = read_text(ours.kit() / "cert.pem");
  auto foreign = renew_kit(ours.pki, KitKind::client, "hospital-a");
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.error().code == ErrorCode::failed_precondition);
  CHECK(contains(foreign.error().message, "not issued by this folder's CA"));
  CHECK(read_text(ours.kit() / "cert.pem") == planted);

  // hospital-b's certificate in hospital-a's folder.
  REQUIRE(issue_client(ours.pki, "hospital-b").ok());
  fs::copy_file(ours.kit("hospital-b") / "cert.pem", ours.kit() / "cert.pem",
                fs::copy_options::overwrite_existing);
  auto swapped = renew_kit(ours.pki, KitKind::client, "hospital-a");
  REQUIRE_FALSE(swapped.ok());
  CHECK(contains(swapped.error().message, "'hospital-b'"));
  // A client kit renewed as an admin's.
  fs::create_directories(ours.pki / "admins");
  fs::copy(ours.kit("hospital-b"), ours.admin_kit("hospital-b"));
  auto wrong_kind = renew_kit(ours.pki, KitKind::admin, "hospital-b");
  REQUIRE_FALSE(wrong_kind.ok());
  CHECK(contains(wrong_kind.error().message, "client certificate"));
  CHECK(folder_names(ours.pki / "clients") == std::vector<std::string>{"hospital-a", "hospital-b"});
}

TEST_CASE("certificate expiry: read from the file, from X509, and counted in whole days") {
  Federation f;
  const auto now = system_clock::now();
  auto expiry = read_certificate_expiry(f.kit() / "cert.pem");
  REQUIRE_MESSAGE(expiry.ok(), message_of(expiry));
  // Issued just now for kClientValidityDays; the certificate stores whole seconds.
  const auto expected = now + days(kClientValidityDays);
  CHECK(*expiry <= expected + seconds(1));
  CHECK(*expiry >= expected - seconds(60));
  CHECK(days_until(*expiry, now) == kClientValidityDays - 1);  // 364 days and some hours

  auto ca_expiry = read_certificate_expiry(f.ca());
  REQUIRE(ca_expiry.ok());
  CHECK(days_until(*ca_expiry, now) == kCaValidityDays - 1);
  auto info = read_certificate_info(f.kit() / "cert.pem");
  REQUIRE(info.ok());
  CHECK(info->expiry == *expiry);

  const auto t = system_clock::from_time_t(1'800'000'000);
  CHECK(days_until(t + days(30) + seconds(1), t) == 30);
  CHECK(days_until(t + days(30) - seconds(1), t) == 29);
  CHECK(days_until(t, t) == 0);
  CHECK(days_until(t - seconds(1), t) == -1);
  CHECK(days_until(t - days(2), t) == -2);

  CHECK(certificate_expiry(nullptr).error().code == ErrorCode::invalid_argument);
  CHECK(read_certificate_expiry(f.pki / "nope.pem").error().code == ErrorCode::not_found);
  CHECK(read_certificate_expiry(f.kit() / "key.pem").error().code == ErrorCode::invalid_argument);
}

TEST_CASE("an expired certificate is reported as such by expiry, list and verify") {
  Federation f;
  auto ca = pki_detail::load_ca(f.pki);
  REQUIRE(ca.ok());
  // Valid from an hour ago until two days ago: expired on arrival.
  auto kit = pki_detail::make_kit({"old-agency", -2, false, "clientAuth", {}, {}}, *ca);
  REQUIRE(kit.ok());
  fs::create_directories(f.kit("old-agency"));
  std::ofstream(f.kit("old-agency") / "cert.pem") << kit->cert;
  auto expiry = read_certificate_expiry(f.kit("old-agency") / "cert.pem");
  REQUIRE(expiry.ok());
  CHECK(days_until(*expiry) == -3);  // 2 days and a few milliseconds ago: floor(-2.00…) = -3
  auto verified = verify_certificate(f.ca(), f.kit("old-agency") / "cert.pem");
  REQUIRE_FALSE(verified.ok());
  CHECK(contains(verified.error().message, "expired"));
  auto listed = list_pki(f.pki);
  REQUIRE(listed.ok());
  const PkiEntry* e = find_entry(*listed, "old-agency");
  REQUIRE(e != nullptr);
  CHECK(e->days_left == -3);
  CHECK(e->problem == "expired");
}

TEST_CASE("check_key_matches_certificate tells matching pairs from mixed kits") {
  Federation f;
  REQUIRE(issue_client(f.pki, "hospital-b").ok());
  CHECK(check_key_matches_certificate(f.kit() / "key.pem", f.kit() / "cert.pem").ok());
  Status mixed =
      check_key_matches_certificate(f.kit("hospital-b") / "key.pem", f.kit() / "cert.pem");
  REQUIRE_FALSE(mixed.ok());
  CHECK(mixed.code() == ErrorCode::failed_precondition);
  CHECK(contains(mixed.message(), (f.kit("hospital-b") / "key.pem").string()));
  CHECK(contains(mixed.message(), (f.kit() / "cert.pem").string()));
  Status no_key = check_key_matches_certificate(f.kit() / "gone.pem", f.kit() / "cert.pem");
  CHECK(no_key.code() == ErrorCode::not_found);
  Status not_a_key = check_key_matches_certificate(f.kit() / "cert.pem", f.kit() / "cert.pem");
  CHECK(not_a_key.code() == ErrorCode::invalid_argument);
  CHECK(contains(not_a_key.message(), "not an unencrypted PEM private key"));
}

TEST_CASE("list_pki lists the CA, the coordinator, clients and admins with serials and days left") {
  Federation f;
  Federation other;
  REQUIRE(issue_client(f.pki, "agency-b").ok());
  REQUIRE(issue_admin(f.pki, "bob", AdminRole::view).ok());
  // Noise the listing must cope with: a staging folder, a kit without a certificate, a kit from
  // another CA.
  fs::create_directories(f.pki / "clients" / ".agency-b.tmp-abc123");
  fs::create_directories(f.kit("empty"));
  fs::copy(other.kit(), f.kit("planted"));

  const auto now = system_clock::now();
  auto listed = list_pki(f.pki, now);
  REQUIRE_MESSAGE(listed.ok(), message_of(listed));
  std::vector<std::string> names;
  for (const PkiEntry& e : *listed) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"federa federation CA", "coordinator", "agency-b",
                                          "empty", "hospital-a", "planted", "bob"});
  const auto kind_of = [&](const std::string& n) { return find_entry(*listed, n)->kind; };
  CHECK(kind_of("federa federation CA") == CertificateKind::ca);
  CHECK(kind_of("coordinator") == CertificateKind::coordinator);
  CHECK(kind_of("hospital-a") == CertificateKind::client);
  CHECK(kind_of("bob") == CertificateKind::admin);
  CHECK(find_entry(*listed, "bob")->admin_role == "viewer");
  const PkiEntry* a = find_entry(*listed, "hospital-a");
  CHECK(a->serial_hex == read_certificate_info(f.kit() / "cert.pem")->serial_hex);
  CHECK(a->days_left == kClientValidityDays - 1);
  CHECK(a->problem.empty());
  CHECK(contains(find_entry(*listed, "empty")->problem, "does not exist"));
  CHECK(find_entry(*listed, "planted")->problem == "not signed by this folder's CA");

  // Four hundred days on, the clients' certificates have expired, the CA's has not.
  auto later = list_pki(f.pki, now + days(400));
  REQUIRE(later.ok());
  CHECK(find_entry(*later, "hospital-a")->days_left == kClientValidityDays - 401);
  CHECK(find_entry(*later, "hospital-a")->problem == "expired");
  CHECK(find_entry(*later, "federa federation CA")->problem.empty());

  TempDir empty;
  CHECK(list_pki(empty.path).error().code == ErrorCode::not_found);
}
