// The admin listener as federa-coordinator uses it: one object that owns the view of the
// federation (AdminState, an orchestrator observer), the API, the audit log and the HTTPS
// server, built from the coordinator's flags.
//
//   admin::AdminListener admin;                // declared before the orchestrator: it observes it
//   Orchestrator orch(...);
//   if (cfg.admin_listen)
//     if (Status s = admin.start(cfg, orch, [&] { stopped = true; orch.stop(); },
//                                [&] { return server.bytes_received(); }); !s) fail(s);
//   orch.run();
//   admin.stop();                              // before the orchestrator goes away
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "common/result.hpp"
#include "coordinator/admin/admin_api.hpp"
#include "coordinator/admin/admin_server.hpp"
#include "coordinator/admin/admin_state.hpp"
#include "coordinator/cli.hpp"

namespace federa::admin {

class AdminListener {
 public:
  AdminListener() = default;
  ~AdminListener() { stop(); }

  // Opens the audit log, loads the tokens, seeds the round history from --metrics-out when
  // resuming, adds the observer and starts listening. Call before the federation listener
  // starts, so no client event is missed.
  Status start(const CoordinatorConfig& cfg, Orchestrator& orchestrator, AdminApi::StopHook stop,
               std::function<std::uint64_t()> bytes_received);
  void stop();
  unsigned short bound_port() const { return server_ ? server_->bound_port() : 0; }

 private:
  std::unique_ptr<AdminState> state_;
  std::optional<AuditLog> audit_;
  std::unique_ptr<AdminApi> api_;
  std::unique_ptr<AdminServer> server_;
  std::function<std::uint64_t()> bytes_;
};

}  // namespace federa::admin
