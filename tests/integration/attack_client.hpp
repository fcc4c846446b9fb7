// A scripted federation member (tests/coordinator/attack_member.hpp) over real mutual TLS and
// WebSocket, against a real coordinator: the federa-test-member program, and in-process tests.
//
//   Member m(Attack::poison);
//   TlsMemberOptions o{.host = "127.0.0.1", .port = 8443, .kit = "pki/clients/evil"};
//   Result<TlsMemberEnd> end = run_tls_member(o, m);   // until Bye, a close or the time limit
#pragma once

#include <chrono>
#include <string>

#include "common/result.hpp"
#include "tests/coordinator/attack_member.hpp"

namespace federa::testing {

struct TlsMemberOptions {
  std::string host = "127.0.0.1";
  unsigned short port = 8443;
  std::string kit;  // folder with ca.pem, cert.pem, key.pem
  std::chrono::seconds limit{300};
};

struct TlsMemberEnd {
  bool federation_complete = false;  // a Bye with federation_complete arrived
  std::string closed_with;           // the last Error the coordinator sent, if any
  std::size_t received = 0;          // envelopes received
};

Result<TlsMemberEnd> run_tls_member(const TlsMemberOptions& options, Member& member);

}  // namespace federa::testing
