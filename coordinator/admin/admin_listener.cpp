#include "coordinator/admin/admin_listener.hpp"

#include <spdlog/spdlog.h>

#include <fstream>

#include "common/tls.hpp"

namespace federa::admin {

namespace {

// The committed rounds' lines of --metrics-out (already reconciled with the state on --resume).
std::vector<std::string> metrics_lines(const std::string& path) {
  std::vector<std::string> lines;
  if (path.empty()) return lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

Status AdminListener::start(const CoordinatorConfig& cfg, Orchestrator& orch,
                            AdminApi::StopHook stop,
                            std::function<std::uint64_t()> bytes_received) {
  if (!cfg.admin_listen) return {};
  auto tls = make_admin_server_tls_context(cfg.pki + "/ca.pem", cfg.pki + "/coordinator/cert.pem",
                                           cfg.key_file);
  if (!tls) return make_error(tls.error().code, "--pki: " + tls.error().message);
  std::error_code ec;
  std::filesystem::create_directories(
      std::filesystem::path(cfg.admin_audit_log).parent_path().empty()
          ? std::filesystem::path(".")
          : std::filesystem::path(cfg.admin_audit_log).parent_path(),
      ec);
  auto audit = AuditLog::open(cfg.admin_audit_log);
  if (!audit) return make_error(audit.error().code, "--admin-audit-log: " + audit.error().message);
  audit_.emplace(std::move(*audit));

  AdminSettings settings;
  settings.federation = cfg.orchestrator.federation;
  settings.total_rounds = cfg.orchestrator.rounds;
  settings.min_clients = std::max(cfg.orchestrator.min_clients, cfg.orchestrator.min_available);
  settings.secure = !cfg.orchestrator.secure_aggregation.empty();
  bytes_ = std::move(bytes_received);
  state_ = std::make_unique<AdminState>(settings, [this](std::string_view event, std::string json) {
    if (server_) server_->publish(event, std::move(json));
  });
  if (cfg.resume) state_->seed_rounds(metrics_lines(cfg.metrics_out));
  api_ = std::make_unique<AdminApi>(orch, *state_, AdminApiOptions{cfg.state_dir, cfg.members_file},
                                    &*audit_, std::move(stop));
  AdminServerOptions so;
  so.listen = *cfg.admin_listen;
  api_->add_facts([this](LiveFacts& f) { f.bytes_received = bytes_ ? bytes_() : 0; });
  server_ = std::make_unique<AdminServer>(*api_, std::move(*tls), so, cfg.admin_token_file);
  if (Status s = server_->start(); !s) return s;
  orch.add_observer(state_.get());
  spdlog::info("admin listener on https://{}:{}/ (TLS 1.3; admin certificates{}); audit log {}",
               so.listen.host, server_->bound_port(),
               cfg.admin_token_file.empty() ? "" : " or bearer tokens", cfg.admin_audit_log);
  return {};
}

void AdminListener::stop() {
  if (server_) server_->stop();
}

}  // namespace federa::admin
