// Warns in the coordinator's log when its own certificate, or a member's, is close to expiry:
// at start, then once a day. Members' certificates are the ones their TLS handshakes present,
// recorded as the handshake verifies them, so the warning is about the certificate a member
// actually uses; a member is warned about at most once a day.
//
//   CertificateExpiryWatch watch({.own_cert = pki + "/coordinator/cert.pem", .pki_dir = pki});
//   watch.attach(*tls);               // before the listener accepts anyone
//   watch.check();                    // logs "certificate ... expires in 12 days; renew it: ..."
//   watch.start_daily(io);            // again every 24 h on the io_context's threads
//   watch.set_members(names);         // after a SIGHUP reload: only members are reported
//
// Why: a kit expires after a year and a coordinator runs for months; without a warning the
// first sign is a member refused at the handshake.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/doctor_checks.hpp"

namespace federa {

struct CertificateExpiryOptions {
  std::filesystem::path own_cert{};     // the coordinator's certificate
  std::string pki_dir{};                // for the renewal commands the warnings print
  long warn_days = kExpiryWarningDays;  // warn when fewer whole days than this are left
  std::set<std::string> members{};      // empty: report every client the CA signed
};

class CertificateExpiryWatch {
 public:
  using Clock = std::chrono::system_clock;

  explicit CertificateExpiryWatch(CertificateExpiryOptions options);
  ~CertificateExpiryWatch();
  CertificateExpiryWatch(const CertificateExpiryWatch&) = delete;
  CertificateExpiryWatch& operator=(const CertificateExpiryWatch&) = delete;

  // Installs a verify callback on the listener's context that records the expiry of each client
  // certificate the handshake has verified (and warns right away when it is close). It returns
  // OpenSSL's own verdict, so verification is unchanged. The watch must outlive the context's use.
  void attach(boost::asio::ssl::context& tls);

  // Records a member's certificate expiry as a handshake would (and warns when close, unless
  // warned about within the last day). Thread-safe.
  void record_member(const std::string& name, Clock::time_point expiry,
                     Clock::time_point now = Clock::now());

  // The warnings due now for the coordinator's certificate and each recorded member, logged
  // with spdlog::warn and returned. The own certificate is checked on every call (once a day);
  // a member at most once a day.
  std::vector<std::string> check(Clock::time_point now = Clock::now());

  // Calls check() every 24 hours on `io` until stop(). Destroy the watch only after the
  // io_context's threads have stopped (or before start_daily).
  void start_daily(boost::asio::io_context& io);
  void stop();  // thread-safe

  void set_members(std::set<std::string> members);

 private:
  void schedule();
  std::string member_warning(const std::string& name, Clock::time_point expiry,
                             Clock::time_point now) const;

  CertificateExpiryOptions opt_;
  std::mutex mu_;
  struct Seen {
    Clock::time_point expiry;
    Clock::time_point warned{};  // last warning; epoch = never
  };
  std::map<std::string, Seen> seen_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
};

}  // namespace federa
