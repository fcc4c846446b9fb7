// init, issue, issue_coordinator, verification, and the TLS contexts built on the kits.
#include <doctest/doctest.h>

#include "tests/common/test_pki_util.hpp"

using namespace federa;
using namespace federa::test;

TEST_CASE("init and issue write the documented files, keys mode 0600") {
  Federation f;
  for (const char* name :
       {"ca.pem", "ca.key", "coordinator/ca.pem", "coordinator/cert.pem", "coordinator/key.pem",
        "clients/hospital-a/ca.pem", "clients/hospital-a/cert.pem", "clients/hospital-a/key.pem"})
    CHECK_MESSAGE(fs::is_regular_file(f.pki / name), name);
  CHECK(file_mode(f.pki / "ca.key") == 0600);
  CHECK(file_mode(f.pki / "coordinator/key.pem") == 0600);
  CHECK(file_mode(f.kit() / "key.pem") == 0600);
  CHECK(contains(read_text(f.pki / "ca.key"), "BEGIN PRIVATE KEY"));
  // Every copy of the CA certificate is the same certificate.
  CHECK(read_text(f.kit() / "ca.pem") == read_text(f.ca()));
  CHECK(read_text(f.coordinator() / "ca.pem") == read_text(f.ca()));
}

TEST_CASE("certificates carry the roles, names and CA flags the trust model relies on") {
  Federation f;
  auto ca = read_certificate_info(f.ca());
  REQUIRE(ca.ok());
  CHECK(ca->common_name == "federa federation CA");
  CHECK(ca->is_ca);

  auto coord = read_certificate_info(f.coordinator() / "cert.pem");
  REQUIRE(coord.ok());
  CHECK(coord->common_name == "coordinator");
  CHECK(coord->issuer_common_name == "federa federation CA");
  CHECK_FALSE(coord->is_ca);
  CHECK(coord->server_auth);
  CHECK_FALSE(coord->client_auth);
  CHECK(coord->ip_addresses == std::vector<std::string>{"127.0.0.1"});
  CHECK(coord->dns_names == std::vector<std::string>{"localhost"});

  auto client = read_certificate_info(f.kit() / "cert.pem");
  REQUIRE(client.ok());
  CHECK(client->common_name == "hospital-a");
  CHECK_FALSE(client->is_ca);
  CHECK(client->client_auth);
  CHECK_FALSE(client->server_auth);
  CHECK(client->serial_hex != coord->serial_hex);
  CHECK(client->serial_hex.size() >= 24);  // ~128 random bits, not a counter
}

TEST_CASE("the coordinator's SANs are the requested hosts, IPs as IP SANs") {
  Federation f({"fl.example.org", "10.0.0.5", "::1", "fl.example.org"});
  auto coord = read_certificate_info(f.coordinator() / "cert.pem");
  REQUIRE(coord.ok());
  CHECK(coord->dns_names == std::vector<std::string>{"fl.example.org"});
  CHECK(coord->ip_addresses == std::vector<std::string>{"10.0.0.5", "::1"});
}

TEST_CASE("init rejects a host that is neither an IP nor a DNS name, and writes nothing") {
  TempDir tmp;
  auto r = init_pki(tmp.path / "pki", {"localhost", "evil,DNS:attacker.example"});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "evil,DNS:attacker.example"));
  CHECK_FALSE(fs::exists(tmp.path / "pki" / "ca.key"));
  CHECK_FALSE(fs::exists(tmp.path / "pki" / "ca.pem"));
}

TEST_CASE("init rejects a mistyped IP address instead of making it a DNS name") {
  TempDir tmp;
  auto r = init_pki(tmp.path / "pki", {"10.0.0.256"});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "10.0.0.256"));
}

TEST_CASE("issue_coordinator replaces the coordinator certificate from the same CA") {
  Federation f;
  auto refused = issue_coordinator(f.pki, {"fl.example.org"});
  REQUIRE_FALSE(refused.ok());
  CHECK(contains(refused.error().message, "already exists"));

  const std::string old_key = read_text(f.coordinator() / "key.pem");
  fs::rename(f.coordinator(), f.tmp.path / "old-coordinator");
  auto bad_host = issue_coordinator(f.pki, {"not a host"});
  REQUIRE_FALSE(bad_host.ok());
  CHECK_FALSE(fs::exists(f.coordinator()));  // rolled back

  auto w = issue_coordinator(f.pki, {"fl.example.org", "10.1.2.3"});
  REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().message));
  CHECK(w->size() == 3);
  CHECK(file_mode(f.coordinator() / "key.pem") == 0600);
  CHECK(read_text(f.coordinator() / "key.pem") != old_key);
  auto cn = verify_certificate(f.ca(), f.coordinator() / "cert.pem");
  REQUIRE(cn.ok());
  CHECK(*cn == "coordinator");
  auto info = read_certificate_info(f.coordinator() / "cert.pem");
  REQUIRE(info.ok());
  CHECK(info->server_auth);
  CHECK(info->dns_names == std::vector<std::string>{"fl.example.org"});
  CHECK(info->ip_addresses == std::vector<std::string>{"10.1.2.3"});

  // Existing member kits keep working with the new coordinator certificate.
  auto server_ctx = server_context(f);
  auto client_ctx = client_context(f.kit() / "ca.pem", f.kit());
  Outcome out = connect_once(*server_ctx, *client_ctx, "fl.example.org");
  CHECK_MESSAGE(!out.client_ec, out.client_said);
  CHECK(out.server_saw_cn == std::optional<std::string>("hospital-a"));
}

TEST_CASE("verify_certificate accepts the federation's certificates and returns the CN") {
  Federation f;
  auto cn = verify_certificate(f.ca(), f.kit() / "cert.pem");
  REQUIRE_MESSAGE(cn.ok(), (cn.ok() ? "" : cn.error().message));
  CHECK(*cn == "hospital-a");
  auto coord = verify_certificate(f.kit() / "ca.pem", f.coordinator() / "cert.pem");
  REQUIRE(coord.ok());
  CHECK(*coord == "coordinator");
}

TEST_CASE("verify_certificate rejects a certificate from a different CA") {
  Federation ours;
  Federation theirs;  // same names, different CA key
  auto r = verify_certificate(ours.ca(), theirs.kit() / "cert.pem");
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "not signed by the CA"));
  CHECK(r.error().code == ErrorCode::failed_precondition);
  auto missing = verify_certificate(ours.ca(), ours.pki / "no-such.pem");
  REQUIRE_FALSE(missing.ok());
  CHECK(contains(missing.error().message, "does not exist"));
  CHECK(missing.error().code == ErrorCode::not_found);
  auto not_a_cert = verify_certificate(ours.ca(), ours.pki / "ca.key");
  REQUIRE_FALSE(not_a_cert.ok());
  CHECK(contains(not_a_cert.error().message, "no PEM certificate"));
}

TEST_CASE("init refuses to overwrite an existing CA and leaves it intact") {
  Federation f;
  const std::string key_before = read_text(f.pki / "ca.key");
  const std::string ca_before = read_text(f.ca());
  auto again = init_pki(f.pki, {});
  REQUIRE_FALSE(again.ok());
  CHECK(contains(again.error().message, "already"));
  CHECK(again.error().code == ErrorCode::already_exists);
  CHECK(read_text(f.pki / "ca.key") == key_before);
  CHECK(read_text(f.ca()) == ca_before);

  // Only the key left behind still counts as an existing CA.
  fs::remove(f.ca());
  auto key_only = init_pki(f.pki, {});
  REQUIRE_FALSE(key_only.ok());
  CHECK(read_text(f.pki / "ca.key") == key_before);
}

TEST_CASE("issue refuses an existing client and bad names") {
  Federation f;
  const std::string cert_before = read_text(f.kit() / "cert.pem");
  auto again = issue_client(f.pki, "hospital-a");
  REQUIRE_FALSE(again.ok());
  CHECK(contains(again.error().message, "already has a kit"));
  CHECK(again.error().code == ErrorCode::already_exists);
  CHECK(read_text(f.kit() / "cert.pem") == cert_before);

  for (const std::string& bad :
       {std::string(""), std::string(".hidden"), std::string("a/b"), std::string(".."),
        std::string("x y"), std::string("ü"), std::string(65, 'x')}) {
    CAPTURE(bad);
    auto r = issue_client(f.pki, bad);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "name"));
    CHECK(r.error().code == ErrorCode::invalid_argument);
  }
  CHECK(validate_client_name(std::string(64, 'x')).ok());
  CHECK(validate_client_name("Agency_7.north-2").ok());
  // Nothing was created for the refused names.
  size_t kits = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(f.pki / "clients")) ++kits;
  CHECK(kits == 1);

  TempDir empty;
  auto no_ca = issue_client(empty.path, "hospital-b");
  REQUIRE_FALSE(no_ca.ok());
  CHECK(contains(no_ca.error().message, "federa-pki init"));
  CHECK(no_ca.error().code == ErrorCode::not_found);
}

TEST_CASE("TLS contexts name the file that is missing, not PEM, or mismatched") {
  Federation f;
  const std::string ca = f.ca().string();
  const std::string cert = (f.kit() / "cert.pem").string();
  const std::string key = (f.kit() / "key.pem").string();
  const std::string missing = (f.pki / "nope.pem").string();

  auto r1 = make_client_tls_context(missing, cert, key);
  REQUIRE_FALSE(r1.ok());
  CHECK(contains(r1.error().message, missing));
  CHECK(contains(r1.error().message, "does not exist"));

  auto r2 = make_server_tls_context(ca, cert, (f.coordinator() / "key.pem").string());
  REQUIRE_FALSE(r2.ok());
  CHECK(contains(r2.error().message, "does not match"));

  auto r3 = make_client_tls_context(ca, key, key);  // a key where the certificate should be
  REQUIRE_FALSE(r3.ok());
  CHECK(contains(r3.error().message, key));

  auto r4 = make_client_tls_context(key, cert, key);  // no certificate in the CA file
  REQUIRE_FALSE(r4.ok());
  CHECK(contains(r4.error().message, "CA certificate file"));

  CHECK(make_client_tls_context(ca, cert, key).ok());
}

TEST_CASE("mutual TLS 1.3 handshake: the coordinator reads the client's CN") {
  Federation f;
  auto server_ctx = server_context(f);
  auto client_ctx = client_context(f.kit() / "ca.pem", f.kit());
  Outcome out = connect_once(*server_ctx, *client_ctx);
  CHECK_MESSAGE(!out.server_ec, out.server_said);
  CHECK_MESSAGE(!out.client_ec, out.client_said);
  CHECK(out.client_got_byte);
  REQUIRE(out.server_saw_cn.has_value());
  CHECK(*out.server_saw_cn == "hospital-a");
  REQUIRE(out.client_saw_cn.has_value());
  CHECK(*out.client_saw_cn == "coordinator");

  // By DNS name too (sent as SNI, matched against the DNS SAN).
  Outcome by_name = connect_once(*server_ctx, *client_ctx, "localhost");
  CHECK_MESSAGE(!by_name.client_ec, by_name.client_said);
  CHECK(by_name.client_got_byte);
}

TEST_CASE("the negotiated protocol is TLS 1.3") {
  Federation f;
  auto server_ctx = server_context(f);
  auto client_ctx = client_context(f.ca(), f.kit());
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ssl::stream<tcp::socket> server(io, *server_ctx), client(io, *client_ctx);
  REQUIRE(set_client_tls_hostname(client.native_handle(), "127.0.0.1").ok());
  boost::system::error_code sec, cec;
  acceptor.async_accept(server.next_layer(), [&](boost::system::error_code ec) {
    if (!ec) server.async_handshake(ssl::stream_base::server, [&](auto e) { sec = e; });
  });
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](boost::system::error_code ec) {
    if (!ec) client.async_handshake(ssl::stream_base::client, [&](auto e) { cec = e; });
  });
  io.run_for(std::chrono::seconds(5));
  REQUIRE(!sec);
  REQUIRE(!cec);
  CHECK(SSL_version(server.native_handle()) == TLS1_3_VERSION);
  CHECK(SSL_version(client.native_handle()) == TLS1_3_VERSION);
}

TEST_CASE("a client whose certificate comes from another CA is refused") {
  Federation ours;
  Federation theirs;
  auto server_ctx = server_context(ours);
  // The impostor knows our public CA certificate, so it trusts our coordinator; its own
  // certificate is signed by a CA of its making.
  auto impostor_ctx = client_context(ours.ca(), theirs.kit());
  Outcome out = connect_once(*server_ctx, *impostor_ctx);
  CHECK(out.server_ec);
  CHECK_FALSE(out.server_saw_cn.has_value());
  CHECK(contains(out.server_said, "not signed by this federation's CA"));
  CHECK(out.client_ec);
  CHECK_FALSE(out.client_got_byte);
  CHECK(contains(out.client_said, "refused our certificate"));
}

TEST_CASE("a client without a certificate is refused") {
  Federation f;
  auto server_ctx = server_context(f);
  ssl::context bare(ssl::context::tls_client);
  bare.load_verify_file(f.ca().string());
  bare.set_verify_mode(ssl::verify_peer);
  Outcome out = connect_once(*server_ctx, bare);
  CHECK(out.server_ec);
  CHECK_FALSE(out.server_saw_cn.has_value());
  CHECK(contains(out.server_said, "offered no certificate"));
  CHECK(out.client_ec);
  CHECK_FALSE(out.client_got_byte);
}

TEST_CASE("a client limited to TLS 1.2 is refused") {
  Federation f;
  auto server_ctx = server_context(f);
  auto old_ctx = client_context(f.ca(), f.kit());
  REQUIRE(SSL_CTX_set_min_proto_version(old_ctx->native_handle(), TLS1_2_VERSION) == 1);
  REQUIRE(SSL_CTX_set_max_proto_version(old_ctx->native_handle(), TLS1_2_VERSION) == 1);
  Outcome out = connect_once(*server_ctx, *old_ctx);
  CHECK(out.server_ec);
  CHECK_FALSE(out.server_saw_cn.has_value());
  CHECK(contains(out.server_said, "TLS 1.3 required"));
  CHECK(out.client_ec);
  CHECK(contains(out.client_said, "TLS 1.3 required"));
}

TEST_CASE("the client refuses a coordinator that does not match the CA, the role or the name") {
  Federation ours;
  Federation theirs;
  auto client_ctx = client_context(ours.ca(), ours.kit());

  SUBCASE("coordinator certificate from another CA") {
    auto fake = server_context(theirs);
    Outcome out = connect_once(*fake, *client_ctx);
    CHECK(out.client_ec);
    CHECK(contains(out.client_said,
                   "the coordinator's certificate is not signed by this "
                   "federation's CA"));
  }
  SUBCASE("a client certificate used as the coordinator's") {
    auto wrong_role = make_server_tls_context(
        ours.ca().string(), (ours.kit() / "cert.pem").string(), (ours.kit() / "key.pem").string());
    REQUIRE(wrong_role.ok());
    Outcome out = connect_once(**wrong_role, *client_ctx);
    CHECK(out.client_ec);
    CHECK(contains(out.client_said, "not meant for this role"));
  }
  SUBCASE("an address the coordinator's certificate does not name") {
    auto server_ctx = server_context(ours);
    Outcome out = connect_once(*server_ctx, *client_ctx, "fl.example.org");
    CHECK(out.client_ec);
    CHECK(contains(out.client_said, "does not name the address"));
  }
}

TEST_CASE("peer_common_name and set_client_tls_hostname handle the edge cases") {
  CHECK_FALSE(peer_common_name(nullptr).has_value());
  CHECK_FALSE(set_client_tls_hostname(nullptr, "127.0.0.1").ok());
  Federation f;
  auto client_ctx = client_context(f.ca(), f.kit());
  asio::io_context io;
  ssl::stream<tcp::socket> s(io, *client_ctx);
  CHECK_FALSE(set_client_tls_hostname(s.native_handle(), "").ok());
  CHECK(set_client_tls_hostname(s.native_handle(), "[::1]").ok());
  CHECK_FALSE(peer_common_name(s.native_handle()).has_value());  // no handshake yet
}
