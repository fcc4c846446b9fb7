// `federa-coordinator doctor [flags]`: checks a coordinator's setup before (or instead of)
// starting it, with the same flags and --config as the coordinator itself, and prints one line
// per check with what to do when it fails (common/doctor_checks.hpp):
//
//   $ federa-coordinator doctor --config /etc/federa/coordinator.json
//   ok    config       /etc/federa/coordinator.json parses
//   ok    certificate  '/etc/federa/pki/coordinator/cert.pem': 'coordinator', signed by ...
//   FAIL  listen       cannot listen on 0.0.0.0:8443: Address already in use -> fix: ...
//   ...
//   1 check failed
//
// Checks: the config parses; the PKI (coordinator certificate chain and kind, its and the CA's
// expiry, the key's permissions and match, the TLS context); the member list; the listen address
// is free; the state folder is writable (as the service user `--service-user`, default federa,
// when run as root) and its committed state fits the flags; the model and --eval-data; the
// aggregation device (a usable GPU when --device cuda).
//
//   int main(int argc, char** argv) { if (is doctor) return run_coordinator_doctor(argc - 1, argv +
//   1, std::cout); }
#pragma once

#include <ostream>

namespace federa {

// argv[0] is "doctor". Returns the exit status: 0 when no check failed (warnings allowed), 1 when
// one did; --help prints the flags and returns 0.
int run_coordinator_doctor(int argc, char** argv, std::ostream& out);

}  // namespace federa
