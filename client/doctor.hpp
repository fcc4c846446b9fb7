// `federa-client doctor [flags]`: checks a member's setup before (or instead of) starting the
// agent, with the same flags and --config as federa-client itself, and prints one line per check
// with what to do when it fails (common/doctor_checks.hpp):
//
//   $ federa-client doctor --config /etc/federa/client.json
//   ok    config       /etc/federa/client.json and the flags parse
//   ok    certificate  '/etc/federa/kit/cert.pem': 'hospital-a', signed by the CA in ...
//   FAIL  member       the coordinator refuses 'hospital-a': ... -> fix: ask the central team ...
//   ...
//
// Checks: the config parses; the kit (files, certificate chain and kind, its and the CA's
// expiry, the key's permissions and match); the coordinator's address resolves, accepts a TCP
// connection and the TLS 1.3 handshake both ways, and does not refuse this member's name; the
// data reads (and the partition flags fit it). The connection test upgrades to the protocol's
// WebSocket but sends no Hello, so the coordinator never counts it as a client ready to train;
// it is skipped while a federa-client runs on this host, because a second connection under the
// same name would replace the agent's.
//
//   if (argv[1] == "doctor") return run_client_doctor(argc - 1, argv + 1, std::cout);
#pragma once

#include <chrono>
#include <ostream>
#include <string>

#include "common/doctor_checks.hpp"
#include "common/options.hpp"

namespace federa {

// argv[0] is "doctor". Returns the exit status: 0 when no check failed (warnings allowed), 1 when
// one did; --help prints the flags and returns 0.
int run_client_doctor(int argc, char** argv, std::ostream& out);

// The connection test on its own (for run_client_doctor and tests): adds the lines
// "coordinator" (resolves), "reach" (TCP), "tls" (handshake both ways) and "member" (no refusal
// within `wait` after the WebSocket upgrade). Stops at the first failure.
void check_coordinator(DoctorReport& report, const HostPort& coordinator, const std::string& ca_pem,
                       const std::string& cert_pem, const std::string& key_pem,
                       const std::string& name,
                       std::chrono::milliseconds wait = std::chrono::seconds(3));

}  // namespace federa
