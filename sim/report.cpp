#include "sim/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <fstream>

namespace federa {

namespace json = boost::json;

namespace {

std::optional<double> number(const json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return std::nullopt;
  const json::value& v = it->value();
  if (v.is_double()) return v.as_double();
  if (v.is_int64()) return double(v.as_int64());
  if (v.is_uint64()) return double(v.as_uint64());
  return std::nullopt;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Round numbers for an axis: about `n` ticks over [lo, hi].
std::vector<double> ticks(double lo, double hi, int n) {
  double span = hi - lo;
  if (!(span > 0)) return {lo};
  double raw = span / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    out.push_back(t + 0.0);  // + 0.0: no "-0"
  return out;
}

}  // namespace

std::vector<RoundPoint> parse_metrics(const std::vector<std::string>& lines) {
  std::vector<RoundPoint> out;
  for (const auto& line : lines) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    const auto& o = v.as_object();
    auto round = number(o, "round");
    if (!round) continue;
    RoundPoint p;
    p.round = static_cast<std::uint64_t>(*round);
    p.accuracy = number(o, "accuracy");
    p.loss = number(o, "loss");
    p.train_loss = number(o, "train_loss");
    p.fed_accuracy = number(o, "fed_accuracy");
    p.clients = number(o, "clients").value_or(0);
    p.selected = number(o, "selected").value_or(0);
    p.dropped = number(o, "dropped").value_or(0);
    p.dropped_out = number(o, "dropped_out").value_or(0);
    p.missed_deadline = number(o, "missed_deadline").value_or(0);
    p.sim_clock_s = number(o, "sim_clock_s").value_or(0);
    out.push_back(p);
  }
  return out;
}

Summary summarize(const SimReport& report, const std::vector<RoundPoint>& points, double target) {
  Summary s;
  s.rounds = points.size();
  s.target = target;
  s.wall_s = report.wall_s;
  s.load_s = report.load_s;
  s.client_updates = report.client_updates;
  s.updates_per_s = report.wall_s > 0 ? double(report.client_updates) / report.wall_s : 0;
  s.baseline_wall_s = report.baseline_wall_s;
  for (const auto& p : points) {
    s.dropped += p.dropped;
    s.dropped_out += p.dropped_out;
    s.missed_deadline += p.missed_deadline;
    s.sim_clock_s = std::max(s.sim_clock_s, p.sim_clock_s);
    if (p.accuracy) {
      if (!s.best_accuracy || *p.accuracy > *s.best_accuracy) {
        s.best_accuracy = p.accuracy;
        s.best_round = p.round;
      }
      if (target > 0 && !s.rounds_to_target && *p.accuracy >= target) s.rounds_to_target = p.round;
    }
    if (p.fed_accuracy) s.final_fed_accuracy = p.fed_accuracy;
  }
  if (!points.empty()) {
    s.final_accuracy = points.back().accuracy;
    s.final_loss = points.back().loss;
  }
  return s;
}

std::string format_summary(const Summary& s) {
  auto pct = [](const std::optional<double>& v) {
    return v ? fmt::format("{:.2f} %", *v * 100) : std::string("n/a (no --eval-data)");
  };
  std::string out = "\nsummary\n";
  out += fmt::format("  rounds completed      {}\n", s.rounds);
  out += fmt::format("  final accuracy        {}\n", pct(s.final_accuracy));
  out += fmt::format("  best accuracy         {}{}\n", pct(s.best_accuracy),
                     s.best_accuracy ? fmt::format(" (round {})", s.best_round) : std::string());
  if (s.final_loss) out += fmt::format("  final loss            {:.4f}\n", *s.final_loss);
  if (s.final_fed_accuracy)
    out += fmt::format("  final fed accuracy    {:.2f} % (the clients' held-out rows)\n",
                       *s.final_fed_accuracy * 100);
  if (s.target > 0)
    out += fmt::format(
        "  rounds to {:.2f} %     {}\n", s.target * 100,
        s.rounds_to_target ? std::to_string(*s.rounds_to_target) : std::string("not reached"));
  out += fmt::format("  wall time             {:.2f} s (rounds) + {:.2f} s (loading data)\n",
                     s.wall_s, s.load_s);
  out += fmt::format("  client updates        {} ({:.1f} per second)\n", s.client_updates,
                     s.updates_per_s);
  if (s.dropped > 0 || s.sim_clock_s > 0)
    out += fmt::format(
        "  dropped               {} ({} dropped out, {} missed the deadline); simulated clock "
        "{:.1f} s\n",
        s.dropped, s.dropped_out, s.missed_deadline, s.sim_clock_s);
  if (s.baseline_wall_s)
    out += fmt::format("  plain-loop baseline   {:.2f} s; simulation / baseline = {:.3f}\n",
                       *s.baseline_wall_s,
                       *s.baseline_wall_s > 0 ? s.wall_s / *s.baseline_wall_s : 0.0);
  return out;
}

namespace {

// The plot's geometry: the drawing area inside the margins and the axes' scales.
struct PlotFrame {
  double width = 720, height = 420, left = 64, right = 64, top = 48, bottom = 56;
  double pw = 0, ph = 0;  // the drawing area
  std::uint64_t r_max = 1;
  double loss_max = 0;
  bool have_acc = false, have_loss = false, have_fed = false;
  double x(double r) const { return left + (r_max > 1 ? (r - 1) / double(r_max - 1) : 0.5) * pw; }
  double y_acc(double a) const { return top + (1 - a) * ph; }
  double y_loss(double l) const { return top + (1 - l / loss_max) * ph; }
};

PlotFrame frame_for(const std::vector<RoundPoint>& points) {
  PlotFrame f;
  f.pw = f.width - f.left - f.right;
  f.ph = f.height - f.top - f.bottom;
  for (const auto& p : points) {
    f.r_max = std::max(f.r_max, p.round);
    if (p.loss) {
      f.loss_max = std::max(f.loss_max, *p.loss);
      f.have_loss = true;
    }
    f.have_acc = f.have_acc || p.accuracy.has_value();
    f.have_fed = f.have_fed || p.fed_accuracy.has_value();
  }
  if (!(f.loss_max > 0)) f.loss_max = 1;
  f.loss_max *= 1.05;
  return f;
}

// Grid, ticks, frame and axis labels.
std::string svg_axes(const PlotFrame& f) {
  std::string s;
  for (double t : ticks(0, 1, 5))
    s += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#e5e5e5\"/>\n"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\" fill=\"#1f77b4\">{5:.0f}%</text>\n",
        f.left, f.left + f.pw, f.y_acc(t), f.left - 6, f.y_acc(t) + 4, t * 100);
  if (f.have_loss)
    for (double t : ticks(0, f.loss_max, 5))
      s += fmt::format("<text x=\"{0}\" y=\"{1:.1f}\" fill=\"#d62728\">{2:g}</text>\n",
                       f.left + f.pw + 6, f.y_loss(t) + 4, t);
  for (double t : ticks(1, double(f.r_max), 10))
    if (t >= 1 && std::abs(t - std::round(t)) < 1e-9)
      s += fmt::format(
          "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#888\"/>\n"
          "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:.0f}</text>\n",
          f.x(t), f.top + f.ph, f.top + f.ph + 5, f.top + f.ph + 19, t);
  s += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n",
      f.left, f.top, f.pw, f.ph);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">round</text>\n",
                   f.left + f.pw / 2, f.height - 14);
  s += fmt::format(
      "<text transform=\"translate(16 {:.1f}) rotate(-90)\" text-anchor=\"middle\" "
      "fill=\"#1f77b4\">accuracy</text>\n",
      f.top + f.ph / 2);
  if (f.have_loss)
    s += fmt::format(
        "<text transform=\"translate({:.1f} {:.1f}) rotate(90)\" text-anchor=\"middle\" "
        "fill=\"#d62728\">loss</text>\n",
        f.width - 14, f.top + f.ph / 2);
  return s;
}

template <typename Value, typename Y>
std::string svg_polyline(const std::vector<RoundPoint>& points, const PlotFrame& f, Value value,
                         Y y, const char* colour, const char* dash = "") {
  std::string pts, dots;
  for (const auto& p : points) {
    std::optional<double> v = value(p);
    if (!v || !std::isfinite(*v)) continue;
    pts += fmt::format("{:.1f},{:.1f} ", f.x(double(p.round)), y(*v));
    if (points.size() <= 60)
      dots += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"/>\n",
                          f.x(double(p.round)), y(*v), colour);
  }
  if (pts.empty()) return std::string();
  return fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                     pts, colour,
                     *dash ? fmt::format(" stroke-dasharray=\"{}\"", dash) : std::string()) +
         dots;
}

std::string svg_legend(const PlotFrame& f) {
  const double w = f.width, right = f.right;
  std::string s = fmt::format(
      "<line x1=\"{0}\" x2=\"{1}\" y1=\"38\" y2=\"38\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
      "<text x=\"{2}\" y=\"42\">accuracy</text>\n",
      w - right - 190, w - right - 170, w - right - 165);
  s += fmt::format(
      "<line x1=\"{0}\" x2=\"{1}\" y1=\"38\" y2=\"38\" stroke=\"#d62728\" stroke-width=\"2\"/>"
      "<text x=\"{2}\" y=\"42\">loss</text>\n",
      w - right - 90, w - right - 70, w - right - 65);
  if (f.have_fed)
    s += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"22\" y2=\"22\" stroke=\"#1f77b4\" stroke-width=\"2\" "
        "stroke-dasharray=\"6 3\"/><text x=\"{2}\" y=\"26\">fed accuracy</text>\n",
        w - right - 190, w - right - 170, w - right - 165);
  if (!f.have_acc && !f.have_fed)
    s += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#888\">no accuracy: run "
        "with --eval-data</text>\n",
        f.left + f.pw / 2, f.top + 20);
  return s;
}

}  // namespace

std::string render_svg(const std::vector<RoundPoint>& points, const std::string& title) {
  const PlotFrame f = frame_for(points);
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
      "{1}\" "
      "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{3}</text>\n",
      f.width, f.height, f.left, escape(title));
  s += svg_axes(f);
  auto y_loss = [&](double l) { return f.y_loss(l); };
  auto y_acc = [&](double a) { return f.y_acc(a); };
  if (f.have_loss)
    s += svg_polyline(
        points, f, [](const RoundPoint& p) { return p.loss; }, y_loss, "#d62728");
  if (f.have_acc)
    s += svg_polyline(
        points, f, [](const RoundPoint& p) { return p.accuracy; }, y_acc, "#1f77b4");
  if (f.have_fed)
    s += svg_polyline(
        points, f, [](const RoundPoint& p) { return p.fed_accuracy; }, y_acc, "#1f77b4", "6 3");
  s += svg_legend(f);
  return s + "</svg>\n";
}

std::filesystem::path plot_path_for(const std::filesystem::path& metrics) {
  std::filesystem::path p = metrics;
  return p.replace_extension(".svg");
}

Status write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return make_error("cannot write " + path.string());
  return {};
}

}  // namespace federa
