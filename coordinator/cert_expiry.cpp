#include "coordinator/cert_expiry.hpp"

#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/verify_context.hpp>

#include "common/doctor_checks.hpp"
#include "common/pki.hpp"
#include "common/tls.hpp"

namespace federa {

namespace {

constexpr auto kDay = std::chrono::hours(24);

}  // namespace

CertificateExpiryWatch::CertificateExpiryWatch(CertificateExpiryOptions options)
    : opt_(std::move(options)) {}

CertificateExpiryWatch::~CertificateExpiryWatch() {
  // The io_context's threads have stopped by now (see the header), so no handler runs concurrently.
  try {
    if (timer_) timer_->cancel();
  } catch (
      const boost::system::system_error&) {  // cancel() reports a failing OS call; nothing to do
  }
}

void CertificateExpiryWatch::attach(boost::asio::ssl::context& tls) {
  tls.set_verify_callback([this](bool preverified, boost::asio::ssl::verify_context& vc) {
    X509_STORE_CTX* ctx = vc.native_handle();
    if (!preverified || X509_STORE_CTX_get_error_depth(ctx) != 0) return preverified;
    const X509* cert = X509_STORE_CTX_get_current_cert(ctx);
    auto name = certificate_common_name(cert);
    auto expiry = certificate_expiry(cert);
    if (name && expiry) record_member(*name, *expiry);
    return preverified;
  });
}

std::string CertificateExpiryWatch::member_warning(const std::string& name,
                                                   Clock::time_point expiry,
                                                   Clock::time_point now) const {
  return "member '" + name + "': its certificate expires on " + format_date(expiry) + " (in " +
         std::to_string(days_until(expiry, now)) +
         " days); renew it with `federa-pki renew --dir " + opt_.pki_dir + " --client " + name +
         "` and hand over the new kit";
}

void CertificateExpiryWatch::record_member(const std::string& name, Clock::time_point expiry,
                                           Clock::time_point now) {
  std::string warning;
  {
    std::lock_guard lock(mu_);
    if (!opt_.members.empty() && !opt_.members.count(name)) return;
    Seen& s = seen_[name];
    s.expiry = expiry;
    if (days_until(expiry, now) >= opt_.warn_days || now - s.warned < kDay) return;
    s.warned = now;
    warning = member_warning(name, expiry, now);
  }
  spdlog::warn("{}", warning);
}

std::vector<std::string> CertificateExpiryWatch::check(Clock::time_point now) {
  std::vector<std::string> out;
  if (auto own = read_certificate_expiry(opt_.own_cert); !own) {
    out.push_back("cannot read the coordinator's certificate: " + own.error().message);
  } else if (const long days = days_until(*own, now); days < 0) {
    out.push_back("the coordinator's certificate " + opt_.own_cert.string() + " expired on " +
                  format_date(*own) +
                  ": members refuse to connect; renew it with `federa-pki renew --dir " +
                  opt_.pki_dir + " --coordinator` and restart");
  } else if (days < opt_.warn_days) {
    out.push_back("the coordinator's certificate " + opt_.own_cert.string() + " expires on " +
                  format_date(*own) + " (in " + std::to_string(days) +
                  " days); renew it with `federa-pki renew --dir " + opt_.pki_dir +
                  " --coordinator` and restart");
  }
  {
    std::lock_guard lock(mu_);
    for (auto& [name, s] : seen_) {
      if (!opt_.members.empty() && !opt_.members.count(name)) continue;
      if (days_until(s.expiry, now) >= opt_.warn_days || now - s.warned < kDay) continue;
      s.warned = now;
      out.push_back(member_warning(name, s.expiry, now));
    }
  }
  for (const auto& w : out) spdlog::warn("{}", w);
  return out;
}

void CertificateExpiryWatch::start_daily(boost::asio::io_context& io) {
  timer_ = std::make_unique<boost::asio::steady_timer>(io);
  schedule();
}

void CertificateExpiryWatch::schedule() {
  timer_->expires_after(kDay);
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    check();
    schedule();
  });
}

void CertificateExpiryWatch::stop() {
  // On the timer's executor: a daily check may be rescheduling the timer on an I/O thread.
  if (timer_) boost::asio::post(timer_->get_executor(), [this] { timer_->cancel(); });
}

void CertificateExpiryWatch::set_members(std::set<std::string> members) {
  std::lock_guard lock(mu_);
  opt_.members = std::move(members);
}

}  // namespace federa
