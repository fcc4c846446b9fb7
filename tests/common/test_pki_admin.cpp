// Admin certificates (role inside, kept apart from member certificates) and bearer tokens.
#include <doctest/doctest.h>

#include <set>

#include "common/crypto.hpp"
#include "common/pki_admin.hpp"
#include "common/pki_x509.hpp"
#include "tests/common/test_pki_util.hpp"

using namespace federa;
using namespace federa::test;

namespace {

ossl::X509Ptr load(const fs::path& cert_pem) {
  auto cert = pki_detail::load_certificate(cert_pem, "certificate");
  REQUIRE_MESSAGE(cert.ok(), message_of(cert));
  return std::move(*cert);
}

std::shared_ptr<ssl::context> admin_server_context(const Federation& f) {
  auto ctx = make_admin_server_tls_context(f.ca().string(), (f.coordinator() / "cert.pem").string(),
                                           (f.coordinator() / "key.pem").string());
  REQUIRE_MESSAGE(ctx.ok(), message_of(ctx));
  return *ctx;
}

// Connects with `client_ctx` to an admin listener and returns what peer_admin_identity said.
Result<AdminIdentity> admin_login(const Federation& f, ssl::context& client_ctx) {
  auto server_ctx = admin_server_context(f);
  std::optional<Result<AdminIdentity>> who;
  Outcome out = connect_once(*server_ctx, client_ctx, "127.0.0.1",
                             [&](SSL* ssl) { who = peer_admin_identity(ssl); });
  REQUIRE_MESSAGE(!out.server_ec, out.server_said);
  CHECK_MESSAGE(!out.client_ec, out.client_said);
  REQUIRE(who.has_value());
  return *who;
}

}  // namespace

TEST_CASE("issue_admin writes an admin kit whose certificate carries the role") {
  Federation f;
  auto w = issue_admin(f.pki, "alice", AdminRole::operate);
  REQUIRE_MESSAGE(w.ok(), message_of(w));
  CHECK(*w == std::vector<fs::path>{f.admin_kit("alice") / "key.pem",
                                    f.admin_kit("alice") / "cert.pem",
                                    f.admin_kit("alice") / "ca.pem"});
  CHECK(file_mode(f.admin_kit("alice") / "key.pem") == 0600);
  CHECK(file_mode(f.admin_kit("alice")) == 0700);
  CHECK(verify_certificate(f.ca(), f.admin_kit("alice") / "cert.pem").ok());
  auto info = read_certificate_info(f.admin_kit("alice") / "cert.pem");
  REQUIRE(info.ok());
  CHECK(info->common_name == "alice");
  CHECK(info->kind == CertificateKind::admin);
  CHECK(info->admin_role == "operator");
  // Never clientAuth: the federation listener's TLS refuses it without any extra check.
  CHECK_FALSE(info->client_auth);
  CHECK_FALSE(info->server_auth);

  REQUIRE(issue_admin(f.pki, "bob", AdminRole::view).ok());
  auto bob = admin_identity(load(f.admin_kit("bob") / "cert.pem").get());
  REQUIRE_MESSAGE(bob.ok(), message_of(bob));
  CHECK(bob->name == "bob");
  CHECK(bob->role == AdminRole::view);

  auto again = issue_admin(f.pki, "alice", AdminRole::view);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == ErrorCode::already_exists);
  CHECK(read_certificate_info(f.admin_kit("alice") / "cert.pem")->admin_role == "operator");
  CHECK(issue_admin(f.pki, "../alice", AdminRole::view).error().code ==
        ErrorCode::invalid_argument);
}

TEST_CASE("certificate_kind and admin_identity tell admin, client, coordinator and CA apart") {
  Federation f;
  REQUIRE(issue_admin(f.pki, "alice", AdminRole::view).ok());
  auto admin = load(f.admin_kit("alice") / "cert.pem");
  auto client = load(f.kit() / "cert.pem");
  auto coordinator = load(f.coordinator() / "cert.pem");
  auto ca = load(f.ca());
  CHECK(certificate_kind(admin.get()) == CertificateKind::admin);
  CHECK(certificate_kind(client.get()) == CertificateKind::client);
  CHECK(certificate_kind(coordinator.get()) == CertificateKind::coordinator);
  CHECK(certificate_kind(ca.get()) == CertificateKind::ca);
  CHECK(certificate_kind(nullptr) == CertificateKind::other);

  CHECK(admin_identity(admin.get()).ok());
  for (X509* not_admin : {client.get(), coordinator.get(), ca.get()}) {
    auto r = admin_identity(not_admin);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::permission_denied);
    CHECK(contains(r.error().message, "is not an admin certificate"));
  }
  CHECK(admin_identity(nullptr).error().code == ErrorCode::not_found);
}

TEST_CASE("admin roles: names, parsing, and what each may do") {
  CHECK(admin_role_name(AdminRole::view) == "viewer");
  CHECK(admin_role_name(AdminRole::operate) == "operator");
  CHECK(parse_admin_role("viewer").value() == AdminRole::view);
  CHECK(parse_admin_role("operator").value() == AdminRole::operate);
  for (const char* bad : {"", "Operator", "admin", "operator_", "viewer "}) {
    CAPTURE(bad);
    CHECK(parse_admin_role(bad).error().code == ErrorCode::invalid_argument);
  }
  CHECK(role_allows(AdminRole::operate, AdminRole::operate));
  CHECK(role_allows(AdminRole::operate, AdminRole::view));
  CHECK(role_allows(AdminRole::view, AdminRole::view));
  CHECK_FALSE(role_allows(AdminRole::view, AdminRole::operate));
}

TEST_CASE("the federation listener refuses an admin certificate") {
  Federation f;
  REQUIRE(issue_admin(f.pki, "alice", AdminRole::operate).ok());
  auto server_ctx = server_context(f);
  auto admin_ctx = client_context(f.ca(), f.admin_kit("alice"));
  Outcome out = connect_once(*server_ctx, *admin_ctx);
  CHECK(out.server_ec);
  CHECK_FALSE(out.server_saw_cn.has_value());
  CHECK(contains(out.server_said, "not meant for this role"));
  CHECK(out.client_ec);
  CHECK_FALSE(out.client_got_byte);
}

TEST_CASE("the admin listener admits admins with their role and says why it refuses others") {
  Federation f;
  Federation other;
  REQUIRE(issue_admin(f.pki, "alice", AdminRole::operate).ok());
  REQUIRE(issue_admin(other.pki, "mallory", AdminRole::operate).ok());

  SUBCASE("an admin certificate") {
    auto who = admin_login(f, *client_context(f.ca(), f.admin_kit("alice")));
    REQUIRE_MESSAGE(who.ok(), message_of(who));
    CHECK(who->name == "alice");
    CHECK(who->role == AdminRole::operate);
  }
  SUBCASE("a member's certificate") {
    auto who = admin_login(f, *client_context(f.ca(), f.kit()));
    REQUIRE_FALSE(who.ok());
    CHECK(who.error().code == ErrorCode::permission_denied);
    CHECK(contains(who.error().message, "client certificate is not an admin certificate"));
  }
  SUBCASE("no certificate: the caller falls back to the bearer token") {
    ssl::context bare(ssl::context::tls_client);
    bare.load_verify_file(f.ca().string());
    bare.set_verify_mode(ssl::verify_peer);
    auto who = admin_login(f, bare);
    REQUIRE_FALSE(who.ok());
    CHECK(who.error().code == ErrorCode::not_found);
  }
  SUBCASE("an admin certificate from another federation's CA") {
    auto who = admin_login(f, *client_context(f.ca(), other.admin_kit("mallory")));
    REQUIRE_FALSE(who.ok());
    CHECK(who.error().code == ErrorCode::unauthenticated);
  }
  SUBCASE("an expired admin certificate") {
    auto ca = pki_detail::load_ca(f.pki);
    REQUIRE(ca.ok());
    auto kit = pki_detail::make_kit(
        {"old-admin", -1, false, pki_detail::kAdminPurposeOid, {}, "operator"}, *ca);
    REQUIRE(kit.ok());
    const fs::path dir = f.admin_kit("old-admin");
    fs::create_directories(dir);
    std::ofstream(dir / "cert.pem") << kit->cert;
    std::ofstream(dir / "key.pem") << kit->key;
    auto who = admin_login(f, *client_context(f.ca(), dir));
    REQUIRE_FALSE(who.ok());
    CHECK(who.error().code == ErrorCode::unauthenticated);
    CHECK(contains(who.error().message, "expired"));
  }
}

TEST_CASE("create_admin_token prints a fresh token once and stores only its hash") {
  Federation f;
  auto t1 = create_admin_token(f.pki, "prometheus", AdminRole::view);
  REQUIRE_MESSAGE(t1.ok(), message_of(t1));
  auto t2 = create_admin_token(f.pki, "alice", AdminRole::operate);
  REQUIRE(t2.ok());
  CHECK(t1->size() == 4 + 64);
  CHECK(t1->rfind("fdt_", 0) == 0);
  CHECK(*t1 != *t2);
  const fs::path file = f.pki / "admin-tokens";
  CHECK(file_mode(file) == 0600);
  const std::string text = read_text(file);
  CHECK_FALSE(contains(text, t1->substr(4)));  // the token itself is nowhere on disk
  const crypto::Key32 digest = crypto::sha256(crypto::as_bytes(*t1));
  std::string hex;
  for (std::uint8_t b : digest) {
    static const char* d = "0123456789abcdef";
    hex += d[b >> 4];
    hex += d[b & 15];
  }
  CHECK(contains(text, "sha256:" + hex + " viewer prometheus\n"));

  auto tokens = AdminTokens::load(file);
  REQUIRE_MESSAGE(tokens.ok(), message_of(tokens));
  CHECK(tokens->entries().size() == 2);
  auto who = tokens->verify(*t2);
  REQUIRE(who.ok());
  CHECK(who->name == "alice");
  CHECK(who->role == AdminRole::operate);
  CHECK(tokens->verify(*t1)->name == "prometheus");
  std::string altered = *t1;
  altered.back() = altered.back() == '0' ? '1' : '0';
  for (const std::string& wrong : {altered, std::string(), t1->substr(4), *t1 + " "}) {
    auto r = tokens->verify(wrong);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::unauthenticated);
  }
}

TEST_CASE("tokens are 256 random bits: a hundred draws never repeat") {
  Federation f;
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto t = create_admin_token(f.pki, "load-test", AdminRole::view);
    REQUIRE(t.ok());
    seen.insert(*t);
  }
  CHECK(seen.size() == 100);
  CHECK(AdminTokens::load(f.pki / "admin-tokens")->entries().size() == 100);
}

TEST_CASE("create_admin_token and AdminTokens::load refuse bad input with a clear error") {
  Federation f;
  CHECK(create_admin_token(f.pki, "a b", AdminRole::view).error().code ==
        ErrorCode::invalid_argument);
  TempDir empty;
  auto no_pki = create_admin_token(empty.path, "x", AdminRole::view);
  CHECK(no_pki.error().code == ErrorCode::not_found);
  CHECK_FALSE(fs::exists(empty.path / "admin-tokens"));

  const fs::path file = f.pki / "admin-tokens";
  CHECK(AdminTokens::load(file).error().code == ErrorCode::not_found);
  REQUIRE(create_admin_token(f.pki, "ok", AdminRole::view).ok());
  fs::permissions(file, fs::perms::group_write, fs::perm_options::add);
  auto writable = AdminTokens::load(file);
  CHECK(writable.error().code == ErrorCode::failed_precondition);
  CHECK(contains(writable.error().message, "chmod 600"));
  CHECK(create_admin_token(f.pki, "more", AdminRole::view).error().code ==
        ErrorCode::failed_precondition);
  fs::permissions(file, fs::perms::group_write, fs::perm_options::remove);

  const std::string good = read_text(file);
  for (const std::string& bad :
       {std::string("sha256:abc viewer x"), "sha256:" + std::string(64, 'A') + " viewer x",
        "md5:" + std::string(64, 'a') + " viewer x", "sha256:" + std::string(64, 'a') + " boss x",
        "sha256:" + std::string(64, 'a') + " viewer",
        "sha256:" + std::string(64, 'a') + " viewer two words",
        "sha256:" + std::string(64, 'a') + " viewer ../x"}) {
    CAPTURE(bad);
    std::ofstream(file) << "# comment\n\n" << good << bad << "\n";
    auto r = AdminTokens::load(file);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::invalid_argument);
    CHECK(contains(r.error().message, "line 4"));
  }
}
