#include "client/exec_trainer_process.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>

namespace federa {

namespace {

using Clock = std::chrono::steady_clock;

// Process groups of running trainers, for kill_all_trainer_groups.
std::mutex& groups_mutex() {
  static std::mutex mu;
  return mu;
}
std::set<pid_t>& live_groups() {
  static std::set<pid_t> groups;
  return groups;
}

void register_group(pid_t pgid) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(kill_all_trainer_groups); });
  std::lock_guard lk(groups_mutex());
  live_groups().insert(pgid);
}

void unregister_group(pid_t pgid) {
  std::lock_guard lk(groups_mutex());
  live_groups().erase(pgid);
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

Status make_pipe(Fd& read_end, Fd& write_end) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    return make_error(ErrorCode::resource_exhausted,
                      std::string("cannot create a pipe: ") + std::strerror(errno));
  read_end.fd = p[0];
  write_end.fd = p[1];
  return {};
}

// Splits what a pipe delivers into lines for on_line and the stderr tail.
class LineSplitter {
 public:
  LineSplitter(const ProcessSpec& spec, bool is_stderr, ProcessOutcome& out)
      : spec_(spec), is_stderr_(is_stderr), out_(out) {}
  void feed(const char* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (data[i] == '\n') {
        emit();
      } else {
        partial_.push_back(data[i]);
        if (partial_.size() >= kMaxLine) emit();
      }
    }
  }
  void finish() {
    if (!partial_.empty()) emit();
  }

 private:
  static constexpr std::size_t kMaxLine = 4096;
  void emit() {
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    if (spec_.on_line) spec_.on_line(partial_, is_stderr_);
    if (is_stderr_ && spec_.stderr_tail_lines > 0) {
      out_.stderr_tail.push_back(partial_.substr(0, 1000));
      while (out_.stderr_tail.size() > spec_.stderr_tail_lines) out_.stderr_tail.pop_front();
    }
    partial_.clear();
  }
  const ProcessSpec& spec_;
  bool is_stderr_;
  ProcessOutcome& out_;
  std::string partial_;
};

// The child, between fork and exec: async-signal-safe calls only, on memory made before fork.
[[noreturn]] void child(const char* path, char* const* argv, char* const* envp, const char* cwd,
                        pid_t parent, int in_fd, int out_fd, int err_fd, int report_fd) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(126);  // the client died before prctl took effect
  sigset_t all;
  ::sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(s, SIG_DFL);
  if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) {
    int e = errno;
    (void)!::write(report_fd, &e, sizeof e);
    ::_exit(127);
  }
  for (int fd = 0; fd < 3; ++fd) ::fcntl(fd, F_SETFD, 0);  // dup2 onto itself keeps CLOEXEC
  // Nothing of the client's (its TLS socket, its key file) reaches the trainer.
  for (int fd = 3; fd < report_fd; ++fd) ::close(fd);
  if (::syscall(SYS_close_range, report_fd + 1, ~0U, 0) != 0)
    for (int fd = report_fd + 1; fd < 65536; ++fd) ::close(fd);
  if (cwd && ::chdir(cwd) != 0) {
    int e = errno;
    (void)!::write(report_fd, &e, sizeof e);
    ::_exit(127);
  }
  ::execve(path, argv, envp);
  int e = errno;
  (void)!::write(report_fd, &e, sizeof e);
  ::_exit(127);
}

struct Child {
  pid_t pid = -1;
  Fd out, err;
};

Result<Child> spawn(const ProcessSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorCode::invalid_argument, "no trainer command");
  auto path = resolve_program(spec.argv[0], spec.env);
  if (!path) return path.error();
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string cwd = spec.cwd.string();

  Fd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_in.fd < 0) return make_error(ErrorCode::internal, "cannot open /dev/null");
  Child c;
  Fd out_w, err_w, report_r, report_w;
  if (Status s = make_pipe(c.out, out_w); !s) return s.error();
  if (Status s = make_pipe(c.err, err_w); !s) return s.error();
  if (Status s = make_pipe(report_r, report_w); !s) return s.error();
  const pid_t parent = ::getpid();
  c.pid = ::fork();
  if (c.pid < 0)
    return make_error(ErrorCode::resource_exhausted,
                      std::string("cannot start the trainer: fork: ") + std::strerror(errno));
  if (c.pid == 0)
    child(path->c_str(), argv.data(), envp.data(), cwd.empty() ? nullptr : cwd.c_str(), parent,
          null_in.fd, out_w.fd, err_w.fd, report_w.fd);
  ::setpgid(c.pid, c.pid);  // also here, so the group exists before anyone signals it
  register_group(c.pid);
  report_w.reset();
  out_w.reset();
  err_w.reset();
  int child_errno = 0;
  ssize_t n;
  do n = ::read(report_r.fd, &child_errno, sizeof child_errno);
  while (n < 0 && errno == EINTR);
  if (n == sizeof child_errno) {  // exec failed: the child reported why and exited
    ::waitpid(c.pid, nullptr, 0);
    unregister_group(c.pid);
    return make_error(ErrorCode::failed_precondition, "cannot run the trainer '" + *path + "'" +
                                                          (cwd.empty() ? "" : " in " + cwd) + ": " +
                                                          std::strerror(child_errno));
  }
  for (Fd* f : {&c.out, &c.err}) ::fcntl(f->fd, F_SETFL, ::fcntl(f->fd, F_GETFL) | O_NONBLOCK);
  return c;
}

// Reads what is there without blocking; false at end of file.
bool drain(Fd& fd, LineSplitter& lines) {
  std::array<char, 65536> buf;
  while (true) {
    ssize_t n = ::read(fd.fd, buf.data(), buf.size());
    if (n > 0) {
      lines.feed(buf.data(), static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    lines.finish();
    fd.reset();
    return false;
  }
}

// True once the child has exited (not reaped yet: its group id stays reserved).
bool has_exited(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return errno == ECHILD;
  return info.si_pid == pid;
}

}  // namespace

Result<std::string> resolve_program(const std::string& name, const std::vector<std::string>& env) {
  if (name.empty()) return make_error(ErrorCode::invalid_argument, "the trainer command is empty");
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    const std::string_view dir = std::string_view(path).substr(start, end - start);
    const std::string candidate =
        fmt::format("{}/{}", dir.empty() ? std::string_view(".") : dir, name);
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  return make_error(ErrorCode::not_found,
                    "cannot run the trainer: '" + name + "' is not an executable in PATH");
}

void kill_all_trainer_groups() {
  std::lock_guard lk(groups_mutex());
  for (pid_t g : live_groups()) ::kill(-g, SIGKILL);
}

Result<ProcessOutcome> run_process(const ProcessSpec& spec) {
  const auto started = Clock::now();
  auto spawned = spawn(spec);
  if (!spawned) return spawned.error();
  Child& c = *spawned;
  ProcessOutcome out;
  LineSplitter out_lines(spec, false, out), err_lines(spec, true, out);
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, c.pid, 0)));
  const auto deadline =
      spec.timeout.count() > 0 ? started + spec.timeout : Clock::time_point::max();
  std::optional<Clock::time_point> term_sent;
  bool killed = false;
  std::optional<ProcessOutcome::End> forced;
  bool exited = false;
  std::optional<Clock::time_point> exited_at;
  while (true) {
    if (!exited && has_exited(c.pid)) {
      exited = true;
      exited_at = Clock::now();
      ::kill(-c.pid, SIGKILL);  // whatever it left running in its group goes with it
    }
    if (exited &&
        ((c.out.fd < 0 && c.err.fd < 0) || Clock::now() - *exited_at > std::chrono::seconds(2)))
      break;  // (a process that left the group may hold the pipes open: not waited for)
    const auto now = Clock::now();
    if (!exited && !term_sent) {
      if (spec.cancel && spec.cancel->load())
        forced = ProcessOutcome::End::cancelled;
      else if (now >= deadline)
        forced = ProcessOutcome::End::timed_out;
      if (forced) {
        ::kill(-c.pid, SIGTERM);
        term_sent = now;
      }
    }
    if (!exited && term_sent && !killed && now - *term_sent >= spec.kill_grace) {
      ::kill(-c.pid, SIGKILL);
      killed = true;
    }
    std::vector<pollfd> fds;
    for (Fd* f : {&c.out, &c.err})
      if (f->fd >= 0) fds.push_back({f->fd, POLLIN, 0});
    if (pidfd.fd >= 0 && !exited) fds.push_back({pidfd.fd, POLLIN, 0});
    // Wake at least every 100 ms for cancellation; often without a pidfd to see the exit.
    int wait_ms = (pidfd.fd >= 0 && !exited) ? 100 : 20;
    if (deadline != Clock::time_point::max() && !term_sent) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      wait_ms = static_cast<int>(std::clamp<long long>(left, 0, wait_ms));
    }
    ::poll(fds.data(), fds.size(), wait_ms);
    if (c.out.fd >= 0) drain(c.out, out_lines);
    if (c.err.fd >= 0) drain(c.err, err_lines);
  }
  if (c.out.fd >= 0) out_lines.finish();
  if (c.err.fd >= 0) err_lines.finish();
  int status = 0;
  while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  unregister_group(c.pid);
  out.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (forced) {
    out.end = *forced;
    out.status = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out.end = ProcessOutcome::End::signalled;
    out.status = WTERMSIG(status);
  } else {
    out.end = ProcessOutcome::End::exited;
    out.status = WEXITSTATUS(status);
  }
  return out;
}

std::string describe_outcome(const ProcessOutcome& o, std::chrono::milliseconds timeout) {
  auto signal_name = [](int s) {
    const char* abbrev = ::sigabbrev_np(s);
    return fmt::format("signal {}{}", s, abbrev ? fmt::format(" (SIG{})", abbrev) : "");
  };
  switch (o.end) {
    case ProcessOutcome::End::exited:
      return fmt::format("exit status {}", o.status);
    case ProcessOutcome::End::signalled:
      return "was killed by " + signal_name(o.status);
    case ProcessOutcome::End::timed_out:
      return fmt::format("did not finish within its {} s deadline (--trainer-timeout); stopped",
                         timeout.count() / 1000.0);
    case ProcessOutcome::End::cancelled:
      return "stopped because the client is stopping";
  }
  return "?";
}

}  // namespace federa
