// federa-bench load: what surrounds the clients. The federation's PKI (made with the project's
// own issuing code, as federa-pki does), the coordinator as a child process, its memory and CPU
// as the kernel counts them, and one core's AES-256-GCM rate from `openssl speed`.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/pki.hpp"
#include "tools/bench_load.hpp"

namespace federa::bench {

namespace fs = std::filesystem;

namespace {

Result<LoadKit> load_kit(const fs::path& dir, const std::string& name) {
  LoadKit kit;
  kit.name = name;
  ossl::BioPtr cert(BIO_new_file((dir / "cert.pem").c_str(), "r"));
  ossl::BioPtr key(BIO_new_file((dir / "key.pem").c_str(), "r"));
  if (!cert || !key) return make_error("cannot open the kit in " + dir.string());
  kit.cert.reset(PEM_read_bio_X509(cert.get(), nullptr, nullptr, nullptr));
  kit.key.reset(PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr));
  if (!kit.cert || !kit.key) return make_error("cannot read the kit in " + dir.string());
  return kit;
}

}  // namespace

Result<std::vector<LoadKit>> make_load_pki(const fs::path& dir, std::size_t n) {
  if (!fs::exists(dir / "ca.pem"))
    if (auto w = init_pki(dir, {"127.0.0.1"}); !w) return w.error();
  std::vector<LoadKit> kits;
  kits.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "load-%05zu", i);
    const fs::path kit_dir = dir / "clients" / name;
    if (!fs::exists(kit_dir / "cert.pem"))
      if (auto w = issue_client(dir, name); !w) return w.error();
    auto kit = load_kit(kit_dir, name);
    if (!kit) return kit.error();
    kits.push_back(std::move(*kit));
  }
  return kits;
}

Result<CoordinatorProcess> spawn_coordinator(const fs::path& binary,
                                             const std::vector<std::string>& args,
                                             const fs::path& log) {
  if (::access(binary.c_str(), X_OK) != 0)
    return make_error("no coordinator program at " + binary.string() +
                      " (pass --coordinator PATH)");
  std::vector<char*> argv;
  std::string prog = binary.string();
  argv.push_back(prog.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error("cannot create " + log.string() + ": " + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) return make_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fd);
  return CoordinatorProcess{pid, log};
}

std::optional<ProcessUsage> sample_process(pid_t pid) {
  ProcessUsage u;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  bool found = false;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      u.peak_rss_mb = std::stod(line.substr(6)) / 1024.0;  // kB
      found = true;
    }
  }
  if (!found) return std::nullopt;  // gone, or a zombie
  u.cpu_s = process_cpu_s(pid);
  if (u.cpu_s < 0) return std::nullopt;
  return u;
}

double process_cpu_s(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const auto close = all.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i)
    if (i == 14 || i == 15) ticks += std::stod(field);
  return ticks / double(::sysconf(_SC_CLK_TCK));
}

ProcessEnd reap(pid_t pid, std::chrono::seconds grace) {
  ProcessEnd end;
  int status = 0;
  struct rusage ru {};
  auto until = LoadClock::now() + grace;
  bool terminated = false;
  for (;;) {
    const pid_t r = ::wait4(pid, &status, WNOHANG, &ru);
    if (r == pid) break;
    if (r < 0) return end;
    if (LoadClock::now() > until) {
      ::kill(pid, terminated ? SIGKILL : SIGTERM);
      until = LoadClock::now() + std::chrono::seconds(5);
      terminated = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (WIFEXITED(status)) end.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) end.signal = WTERMSIG(status);
  end.usage.peak_rss_mb = double(ru.ru_maxrss) / 1024.0;  // kB on Linux
  end.usage.cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  return end;
}

Result<double> openssl_aes_gcm_gbps(int seconds) {
  const std::string cmd = "openssl speed -seconds " + std::to_string(seconds) +
                          " -bytes 16384 -evp aes-256-gcm 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return make_error("cannot run openssl speed");
  char line[512];
  double kbytes_per_s = 0;
  while (std::fgets(line, sizeof line, p)) {
    std::string l = line;
    for (auto& ch : l) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (l.rfind("aes-256-gcm", 0) != 0) continue;
    std::istringstream in(l);
    std::string tok, last;
    while (in >> tok) last = tok;
    if (!last.empty() && last.back() == 'k')
      kbytes_per_s = std::stod(last.substr(0, last.size() - 1));
  }
  const int rc = ::pclose(p);
  if (rc != 0 || kbytes_per_s <= 0)
    return make_error("openssl speed -evp aes-256-gcm gave no figure");
  return kbytes_per_s * 1000.0 / 1e9;
}

Result<int> bind_loopback(unsigned short& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return make_error("cannot bind a port on 127.0.0.1: " + std::string(std::strerror(err)));
  }
  port = ntohs(a.sin_port);
  return fd;
}

Result<unsigned short> free_port() {
  unsigned short port = 0;
  auto fd = bind_loopback(port);
  if (!fd) return fd.error();
  ::close(*fd);
  return port;
}

}  // namespace federa::bench
