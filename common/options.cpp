#include "common/options.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
std::vector<std::string> config_tokens(const std::string& path, const po::options_description& desc,
                                       const std::map<std::string, PathResolver>& paths) {
  std::ifstream in(path);
  if (!in) throw OptionsError("cannot open config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value root = json::parse(ss.str(), ec);
  if (ec) throw OptionsError("config file " + path + " is not valid JSON: " + ec.message());
  if (!root.is_object()) throw OptionsError("config file " + path + " must hold a JSON object");
  const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
  std::vector<std::string> tokens;
  for (const auto& kv : root.as_object()) {
    std::string key(kv.key());
    auto resolver = paths.find(key);
    auto value_of = [&](const json::value& v) {
      std::string text = scalar_to_string(v, key);
      return resolver != paths.end() ? resolver->second(text, dir) : text;
    };
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
        tokens.push_back(value_of(item));
      }
    } else {
      tokens.push_back("--" + key);
      tokens.push_back(value_of(kv.value()));
    }
  }
  return tokens;
}

// "<6>" for info: the syslog priority journald reads from the start of a line.
class SyslogPriority final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    char p = '6';
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        p = '7';
        break;
      case spdlog::level::info:
        p = '6';
        break;
      case spdlog::level::warn:
        p = '4';
        break;
      case spdlog::level::err:
        p = '3';
        break;
      case spdlog::level::critical:
        p = '2';
        break;
      default:
        break;
    }
    const char text[] = {'<', p, '>'};
    dest.append(text, text + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriority>();
  }
};

// Boost.Program_options (1.81) fills "%value%"-style placeholders in an error message until
// none is left, so a user's value that itself holds "%value%" made what() loop forever (found by
// the config fuzz target: `federa-coordinator --rounds '%value%'` hung at start). Every
// substitution is made inert ("%" -> "%25") before the message is built.
struct InertSubstitutions : po::error_with_option_name {
  static void apply(po::error_with_option_name& e) {
    for (auto& [name, value] : e.*(&InertSubstitutions::m_substitutions)) {
      std::string out;
      for (char c : value) out += c == '%' ? std::string("%25") : std::string(1, c);
      value = std::move(out);
    }
  }
};

std::string safe_message(po::error_with_option_name& e) {
  InertSubstitutions::apply(e);
  return e.what();
}

}  // namespace

std::string resolve_path(const std::string& value, const std::filesystem::path& config_dir) {
  std::filesystem::path p(value);
  if (value.empty() || p.is_absolute()) return value;
  return (config_dir / p).lexically_normal().string();
}

std::string resolve_data_spec(const std::string& spec, const std::filesystem::path& config_dir) {
  std::string_view s(spec);
  if (s.starts_with("idx:")) {
    const auto comma = s.find(',', 4);
    if (comma == std::string_view::npos) return spec;  // load_dataset says what is wrong
    return "idx:" + resolve_path(std::string(s.substr(4, comma - 4)), config_dir) + "," +
           resolve_path(std::string(s.substr(comma + 1)), config_dir);
  }
  if (s.starts_with("csv:")) {
    const auto label = s.rfind(":label=");
    if (label == std::string_view::npos || label < 4) return spec;
    return "csv:" + resolve_path(std::string(s.substr(4, label - 4)), config_dir) +
           std::string(s.substr(label));
  }
  return spec;  // a named dataset ("fashion-mnist")
}

std::optional<po::variables_map> parse_options(int argc, char** argv, po::options_description& desc,
                                               const std::map<std::string, PathResolver>& paths) {
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
      auto tokens = config_tokens(vm["config"].as<std::string>(), desc, paths);
      po::store(po::command_line_parser(tokens).options(desc).run(), vm);
    }
    po::notify(vm);
  } catch (const OptionsError&) {
    throw;
  } catch (po::error_with_option_name& e) {
    throw OptionsError(safe_message(e));
  } catch (const po::error& e) {
    throw OptionsError(e.what());
  }
  return vm;
}

int run_program(std::string_view program, int argc, char** argv, int (*run)(int, char**)) {
  try {
    return run(argc, argv);
  } catch (const OptionsError& e) {
    std::fprintf(stderr, "%.*s: %s\nRun with --help for usage.\n", int(program.size()),
                 program.data(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%.*s: fatal: %s\n", int(program.size()), program.data(), e.what());
    return 1;
  }
}

bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env) return false;
  // "DEVICE:INODE", both decimal.
  const std::string_view text(env);
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  unsigned long long dev = 0, ino = 0;
  const char* end = text.data() + text.size();
  auto d = std::from_chars(text.data(), text.data() + colon, dev);
  auto i = std::from_chars(text.data() + colon + 1, end, ino);
  if (d.ec != std::errc() || d.ptr != text.data() + colon || i.ec != std::errc() || i.ptr != end)
    return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

void setup_logging(std::string_view level, std::string_view program) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off")
    throw OptionsError("unknown --log-level '" + std::string(level) + "'");
  const bool journal = stderr_is_journal();
  auto logger = journal ? spdlog::stderr_logger_mt(std::string(program))
                        : spdlog::stderr_color_mt(std::string(program));
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
  if (journal) {
    // The journal stamps each line itself; a second timestamp would only be noise.
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<SyslogPriority>('*').set_pattern("%*%v");
    spdlog::set_formatter(std::move(f));
  } else {
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  }
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

std::chrono::milliseconds seconds_option(const po::variables_map& vm, const std::string& name,
                                         bool zero_ok) {
  const double s = vm[name].as<double>();
  if (!(std::isfinite(s) && s <= kMaxSeconds && (s > 0 || (zero_ok && s == 0))))
    throw OptionsError("--" + name + " must be " + (zero_ok ? "0 or " : "") +
                       "a positive number of seconds, at most 10000000 (about 116 days)");
  return std::chrono::milliseconds(std::llround(s * 1000));
}

}  // namespace federa
