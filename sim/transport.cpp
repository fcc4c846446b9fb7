#include "sim/transport.hpp"

#include "common/wire.hpp"

namespace federa {

void Inbox::push(Delivery d) {
  {
    std::lock_guard lk(mu_);
    q_.push_back(std::move(d));
  }
  cv_.notify_one();
}

Delivery Inbox::pop() {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return !q_.empty(); });
  Delivery d = std::move(q_.front());
  q_.pop_front();
  return d;
}

bool Inbox::try_pop(Delivery& d) {
  std::lock_guard lk(mu_);
  if (q_.empty()) return false;
  d = std::move(q_.front());
  q_.pop_front();
  return true;
}

void SimLink::send(std::shared_ptr<const std::string> bytes) {
  inbox_.push(MessageDelivery{index_, std::move(bytes)});
}

void SimLink::close_with_error(wire::Error::Code code, const std::string& reason) {
  // As the TLS transport does: the Error envelope, then the close.
  inbox_.push(MessageDelivery{index_, serialize_shared(make_error_envelope(code, reason))});
  inbox_.push(CloseDelivery{index_, reason});
}

void SimLink::close() { inbox_.push(CloseDelivery{index_, "closed by the coordinator"}); }

namespace {
SessionOptions virtual_client_options(std::string name, std::uint64_t examples,
                                      std::uint64_t test_examples, ClientHost& host) {
  SessionOptions o;
  o.software = "federa-sim 0.1.0";
  o.num_train_examples = examples;
  o.num_test_examples = test_examples;
  o.evaluates = test_examples > 0;
  o.name = std::move(name);
  o.progress_level = spdlog::level::debug;  // thousands of clients: routine lines only on demand
  o.share_model = [&host](std::shared_ptr<const Model> m) {
    return host.share_model(std::move(m));
  };
  return o;
}
}  // namespace

VirtualClient::VirtualClient(std::size_t index, std::string name, std::uint64_t num_train_examples,
                             std::uint64_t num_test_examples, ClientHost& host)
    : index_(index),
      host_(host),
      session_(virtual_client_options(std::move(name), num_train_examples, num_test_examples, host),
               *this, *this) {}

std::string client_name(std::size_t index, std::size_t count) {
  std::string digits = std::to_string(count > 0 ? count - 1 : 0);
  std::string n = std::to_string(index);
  return "sim-" + std::string(digits.size() > n.size() ? digits.size() - n.size() : 0, '0') + n;
}

}  // namespace federa
