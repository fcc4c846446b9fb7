// What a researcher reads after a simulation: the end summary and an SVG plot of accuracy and
// loss per round, both built from the orchestrator's metrics lines.
//
//   auto points = parse_metrics(report.metrics_lines);
//   Summary s = summarize(report, points, /*target_accuracy=*/0.85);
//   std::cout << format_summary(s, options);
//   write_text_file("run.svg", render_svg(points, "fedavg, dirichlet:0.5"));
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "sim/simulation.hpp"

namespace federa {

struct RoundPoint {
  std::uint64_t round = 0;
  std::optional<double> accuracy;  // central evaluation; absent without --eval-data
  std::optional<double> loss;      // evaluation loss, else the weighted train loss
  std::optional<double> train_loss;
  std::optional<double> fed_accuracy;  // federated evaluation on the clients' held-out rows
  double clients = 0, selected = 0, dropped = 0, dropped_out = 0, missed_deadline = 0;
  double sim_clock_s = 0;
};

// Lines that are not JSON objects with a "round" are skipped.
std::vector<RoundPoint> parse_metrics(const std::vector<std::string>& lines);

struct Summary {
  std::uint64_t rounds = 0;
  std::optional<double> final_accuracy, best_accuracy, final_loss;
  std::optional<double> final_fed_accuracy;  // the last federated evaluation
  std::uint64_t best_round = 0;
  std::optional<std::uint64_t> rounds_to_target;  // first round with accuracy >= target
  double target = 0;
  double wall_s = 0, load_s = 0;
  std::uint64_t client_updates = 0;
  double updates_per_s = 0;
  double dropped = 0, dropped_out = 0, missed_deadline = 0;
  double sim_clock_s = 0;
  std::optional<double> baseline_wall_s;
};

Summary summarize(const SimReport& report, const std::vector<RoundPoint>& points,
                  double target_accuracy);
std::string format_summary(const Summary& s);

// A self-contained SVG: accuracy and, dashed, federated accuracy (left axis) and loss (right axis)
// against the round.
std::string render_svg(const std::vector<RoundPoint>& points, const std::string& title);

// `metrics` with its extension replaced by ".svg" ("runs/a.jsonl" -> "runs/a.svg").
std::filesystem::path plot_path_for(const std::filesystem::path& metrics);
Status write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace federa
