#include "common/options.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <charconv>
#include <fstream>
#include <sstream>
#include <vector>

namespace federa {

namespace json = boost::json;

namespace {

std::string scalar_to_string(const json::value& v, const std::string& key) {
  switch (v.kind()) {
    case json::kind::string:
      return std::string(v.as_string());
    case json::kind::int64:
      return std::to_string(v.as_int64());
    case json::kind::uint64:
      return std::to_string(v.as_uint64());
    case json::kind::double_: {
      std::ostringstream ss;
      ss.precision(17);
      ss << v.as_double();
      return ss.str();
    }
    case json::kind::bool_:
      return v.as_bool() ? "true" : "false";
    default:
      throw OptionsError("config key '" + key + "': expected a string, number or boolean");
  }
}

// Turns the JSON object into command-line tokens so program_options applies its own parsing
// and validation to both sources alike.
std::vector<std::string> config_tokens(const std::string& path,
                                       const po::options_description& desc) {
  std::ifstream in(path);
  if (!in) throw OptionsError("cannot open config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value root = json::parse(ss.str(), ec);
  if (ec) throw OptionsError("config file " + path + " is not valid JSON: " + ec.message());
  if (!root.is_object()) throw OptionsError("config file " + path + " must hold a JSON object");
  std::vector<std::string> tokens;
  for (const auto& kv : root.as_object()) {
    std::string key(kv.key());
    if (key == "config" || key == "help")
      throw OptionsError("config key '" + key + "' is not allowed in a config file");
    const po::option_description* opt = desc.find_nothrow(key, false);
    if (!opt) throw OptionsError("config file " + path + ": unknown key '" + key + "'");
    bool is_switch = opt->semantic()->max_tokens() == 0;
    if (is_switch) {
      if (!kv.value().is_bool())
        throw OptionsError("config key '" + key + "' must be true or false");
      if (kv.value().as_bool()) tokens.push_back("--" + key);
      continue;
    }
    if (kv.value().is_array()) {
      for (const auto& item : kv.value().as_array()) {
        tokens.push_back("--" + key);
        tokens.push_back(scalar_to_string(item, key));
      }
    } else {
      tokens.push_back("--" + key);
      tokens.push_back(scalar_to_string(kv.value(), key));
    }
  }
  return tokens;
}

}  // namespace

std::optional<po::variables_map> parse_options(int argc, char** argv,
                                               po::options_description& desc) {
  desc.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>(),
      "JSON file whose keys are these flags' names; flags on the command line win")(
      "log-level", po::value<std::string>()->default_value("info"),
      "trace, debug, info, warn, error");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    if (vm.count("help")) return std::nullopt;
    if (vm.count("config")) {
      auto tokens = config_tokens(vm["config"].as<std::string>(), desc);
      po::store(po::command_line_parser(tokens).options(desc).run(), vm);
    }
    po::notify(vm);
  } catch (const OptionsError&) {
    throw;
  } catch (const po::error& e) {
    throw OptionsError(e.what());
  }
  return vm;
}

void setup_logging(std::string_view level, std::string_view program) {
  auto logger = spdlog::stderr_color_mt(std::string(program));
  spdlog::set_default_logger(logger);
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off")
    throw OptionsError("unknown --log-level '" + std::string(level) + "'");
  spdlog::set_level(lvl);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
}

HostPort parse_host_port(std::string_view text, std::string_view flag) {
  auto bad = [&] {
    return OptionsError("--" + std::string(flag) + " '" + std::string(text) +
                        "': expected HOST:PORT");
  };
  HostPort hp;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw bad();
    hp.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) throw bad();
    hp.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value > 65535) throw bad();
  hp.port = static_cast<unsigned short>(value);
  return hp;
}

}  // namespace federa
