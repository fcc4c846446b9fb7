// The coordinator's certificate expiry warnings (coordinator/cert_expiry.hpp): its own
// certificate, and members' certificates as their TLS handshakes present them; at most one
// warning a day per member, only members when a member list is set.
#include "coordinator/cert_expiry.hpp"
#include "tests/common/test_pki_util.hpp"

using namespace federa;
using namespace federa::test;
using Clock = std::chrono::system_clock;

namespace {

constexpr auto kDay = std::chrono::hours(24);

bool any_contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines)
    if (contains(l, needle)) return true;
  return false;
}

}  // namespace

TEST_CASE("expiry watch: the coordinator's own certificate") {
  Federation f;
  const fs::path own = f.coordinator() / "cert.pem";
  CertificateExpiryWatch quiet({.own_cert = own, .pki_dir = "pki"});
  CHECK(quiet.check().empty());  // 730 days left

  CertificateExpiryWatch close({.own_cert = own, .pki_dir = "/etc/federa/pki", .warn_days = 800});
  auto lines = close.check();
  REQUIRE(lines.size() == 1);
  CHECK(contains(lines[0], "the coordinator's certificate"));
  CHECK(contains(lines[0], "in 729 days"));
  CHECK(contains(lines[0], "federa-pki renew --dir /etc/federa/pki --coordinator"));
  CHECK(close.check().size() == 1);  // checked on every daily call

  auto later = close.check(Clock::now() + 800 * kDay);
  REQUIRE(later.size() == 1);
  CHECK(contains(later[0], "expired on"));
}

TEST_CASE("expiry watch: members' certificates, once a day each, members only") {
  Federation f;
  const fs::path own = f.coordinator() / "cert.pem";
  CertificateExpiryWatch watch(
      {.own_cert = own, .pki_dir = "pki", .members = {"hospital-a", "hospital-b"}});
  const auto now = Clock::now();
  watch.record_member("hospital-a", now + 10 * kDay + std::chrono::hours(1),
                      now);                                  // warned as it connects
  watch.record_member("hospital-b", now + 200 * kDay, now);  // far away
  watch.record_member("stranger", now + 1 * kDay, now);      // not a member
  CHECK(watch.check(now).empty());  // hospital-a was warned about at its handshake, a moment ago

  auto next_day = watch.check(now + kDay);
  REQUIRE(next_day.size() == 1);
  CHECK(contains(next_day[0], "member 'hospital-a'"));
  CHECK(contains(next_day[0], "in 9 days"));
  CHECK(contains(next_day[0], "federa-pki renew --dir pki --client hospital-a"));
  CHECK(watch.check(now + kDay + std::chrono::hours(2)).empty());  // not twice the same day

  watch.set_members({"hospital-b", "stranger"});  // SIGHUP: hospital-a revoked
  watch.record_member("stranger", now + 1 * kDay, now + 2 * kDay);
  auto after_reload = watch.check(now + 3 * kDay);
  CHECK(!any_contains(after_reload, "hospital-a"));
  CHECK(any_contains(after_reload, "member 'stranger'"));
}

TEST_CASE("expiry watch: a member's certificate is recorded at its real TLS handshake") {
  Federation f;
  auto server = server_context(f);
  CertificateExpiryWatch watch(
      {.own_cert = f.coordinator() / "cert.pem", .pki_dir = "pki", .warn_days = 400});
  watch.attach(*server);
  Outcome out = connect_once(*server, *client_context(f.ca(), f.kit()));
  REQUIRE_MESSAGE(!out.server_ec, out.server_said);
  CHECK(out.server_saw_cn == std::optional<std::string>("hospital-a"));  // verification unchanged
  CHECK(out.client_got_byte);
  auto lines = watch.check(Clock::now() + kDay);
  CHECK(any_contains(lines, "member 'hospital-a': its certificate expires on"));

  // A client from another federation is still refused, and nothing is recorded for it.
  Federation other;
  CertificateExpiryWatch fresh(
      {.own_cert = f.coordinator() / "cert.pem", .pki_dir = "pki", .warn_days = 400});
  auto server2 = server_context(f);
  fresh.attach(*server2);
  Outcome refused = connect_once(*server2, *client_context(f.ca(), other.kit()));
  CHECK(refused.server_ec);
  CHECK(!any_contains(fresh.check(Clock::now() + kDay), "member"));
}
