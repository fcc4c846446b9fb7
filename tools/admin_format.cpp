#include "tools/admin_format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <iostream>
#include <vector>

namespace federa::admin_cli {

namespace json = boost::json;

namespace {

std::string text(const json::value* v, int digits = 4) {
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) return v->as_string().empty() ? "-" : std::string(v->as_string());
  if (v->is_bool()) return v->as_bool() ? "yes" : "no";
  if (v->is_double()) return fmt::format("{:.{}f}", v->as_double(), digits);
  if (v->is_int64()) return std::to_string(v->as_int64());
  if (v->is_uint64()) return std::to_string(v->as_uint64());
  return json::serialize(*v);
}

std::string field(const json::object& o, const char* key, int digits = 4) {
  return text(o.if_contains(key), digits);
}

void table(const std::vector<std::string>& head,
           const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i)
      out += i + 1 == cells.size() ? cells[i] : fmt::format("{:<{}}  ", cells[i], width[i]);
    std::cout << out << "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
}

}  // namespace

void print_status(const json::value& v) {
  const json::object& s = v.as_object();
  std::cout << "federation " << field(s, "federation") << ": " << field(s, "phase");
  if (const auto* r = s.if_contains("round"); r && r->is_object()) {
    const json::object& o = r->as_object();
    std::cout << ", round " << field(o, "round") << " of " << field(s, "rounds_total")
              << " (attempt " << field(o, "attempt") << "), " << o.at("selected").as_array().size()
              << " selected, " << field(o, "accepted") << " accepted, deadline "
              << field(o, "deadline");
  }
  std::cout << "\nrounds committed: " << field(s, "rounds_completed") << " of "
            << field(s, "rounds_total") << "\nclients connected: " << field(s, "clients_connected")
            << " (a round needs " << field(s, "min_clients") << ")\nmembers: "
            << (s.at("open_membership").as_bool() ? "any client the CA signed (no --members)"
                                                  : field(s, "members"))
            << "\n";
  if (const auto* j = s.if_contains("job_result"); j && j->is_object())
    std::cout << "job: "
              << (j->as_object().at("ok").as_bool() ? "finished" : field(j->as_object(), "reason"))
              << "\n";
}

void print_clients(const json::value& v) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : v.at("clients").as_array()) {
    const json::object& o = c.as_object();
    const bool seen = o.at("seen").as_bool(), up = o.at("connected").as_bool();
    std::string last = field(o, "last_outcome");
    if (last != "-") last += " (round " + field(o, "last_round") + ")";
    rows.push_back({field(o, "name") + (o.at("member").as_bool() ? "" : " (not a member)"),
                    up     ? "connected"
                    : seen ? "left"
                           : "never",
                    up     ? field(o, "connected_since")
                    : seen ? field(o, "left_at")
                           : "-",
                    seen ? field(o, "address") : "-",
                    seen ? field(o, "rounds_accepted") + "/" + field(o, "rounds_selected") : "-",
                    last, seen ? (up ? field(o, "last_reason") : field(o, "left_reason")) : "-"});
  }
  table({"NAME", "STATE", "SINCE", "ADDRESS", "ROUNDS", "LAST", "REASON"}, rows);
  const auto& refused = v.at("refused").as_array();
  if (!refused.empty()) std::cout << "\nrecently refused:\n";
  for (const auto& r : refused)
    std::cout << "  " << field(r.as_object(), "time") << "  " << field(r.as_object(), "client")
              << " " << field(r.as_object(), "address") << ": " << field(r.as_object(), "reason")
              << "\n";
}

void print_rounds(const json::value& v) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : v.at("rounds").as_array()) {
    const json::object& o = r.as_object();
    const auto* ms = o.if_contains("duration_ms");
    rows.push_back(
        {field(o, "round"), field(o, "clients") + "/" + field(o, "selected"), field(o, "loss"),
         field(o, "accuracy"), field(o, "fed_loss"), field(o, "fed_accuracy"),
         ms && ms->is_number() ? fmt::format("{:.2f} s", ms->to_number<double>() / 1000) : "-",
         field(o, "committed_at")});
  }
  table({"ROUND", "ACCEPTED", "LOSS", "ACCURACY", "FED_LOSS", "FED_ACCURACY", "DURATION",
         "COMMITTED"},
        rows);
}

void print_round(const json::value& v) {
  const json::object& o = v.as_object();
  std::cout << "round " << field(o, "round") << " (attempt " << field(o, "attempt") << "): loss "
            << field(o, "loss") << ", accuracy " << field(o, "accuracy") << "\n";
  std::vector<std::vector<std::string>> rows;
  if (const auto* cs = o.if_contains("clients"))
    for (const auto& c : cs->as_array()) {
      const json::object& x = c.as_object();
      rows.push_back(
          {field(x, "client"), field(x, "outcome"), field(x, "num_examples"), field(x, "reason")});
    }
  table({"CLIENT", "OUTCOME", "EXAMPLES", "REASON"}, rows);
  if (const auto* f = o.if_contains("failed_attempts"))
    for (const auto& a : f->as_array())
      std::cout << "attempt " << field(a.as_object(), "attempt")
                << " failed: " << field(a.as_object(), "reason") << "\n";
}

void print_members(const json::value& v) {
  const json::object& o = v.as_object();
  if (o.contains("added")) std::cout << field(o, "added") << " added\n";
  if (o.contains("removed"))
    std::cout << field(o, "removed") << " removed; its session was closed\n";
  if (const auto* open = o.if_contains("open_membership"); open && open->as_bool()) {
    std::cout << "no member list: any client the CA signed is admitted\n";
    return;
  }
  std::cout << "members:";
  for (const auto& m : o.at("members").as_array()) std::cout << " " << std::string(m.as_string());
  std::cout << "\n";
}

void print_control(const std::string& command, bool after_round) {
  if (command == "pause")
    std::cout << "paused: the open round finishes, no new round starts until resume\n";
  else if (command == "resume")
    std::cout << "resumed\n";
  else
    std::cout << (after_round ? "stopping after the open round commits\n"
                              : "stopping: the open round is abandoned; committed rounds stay\n");
}

}  // namespace federa::admin_cli
