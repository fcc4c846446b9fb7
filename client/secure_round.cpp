#include "client/secure_round.hpp"

#include <algorithm>
#include <string>

#include "common/wire.hpp"

namespace federa {

namespace {

using Envelopes = std::vector<wire::Envelope>;

Error fail(std::string message) { return Error{ErrorCode::aborted, std::move(message)}; }

}  // namespace

SecureRound::SecureRound(std::uint64_t round, std::size_t chunk_words)
    : round_(round), chunk_words_(std::max<std::size_t>(1, chunk_words)) {}

Result<Envelopes> SecureRound::on_message(const wire::Envelope& msg) {
  auto round = secure_message_round(msg);
  if (!round) return fail(std::string("not a secure-aggregation message: ") + payload_name(msg));
  if (*round != round_)
    return fail("message for round " + std::to_string(*round) + " in round " +
                std::to_string(round_));
  switch (msg.payload_case()) {
    case wire::Envelope::kSecaggSetup:
      return on_setup(msg.secagg_setup());
    case wire::Envelope::kSecaggKeysBroadcast:
      return on_keys(msg.secagg_keys_broadcast());
    case wire::Envelope::kSecaggSharesForward:
      return on_shares(msg.secagg_shares_forward());
    case wire::Envelope::kSecaggUnmaskRequest:
      return on_unmask(msg.secagg_unmask_request());
    default:
      return fail(std::string("unexpected ") + payload_name(msg));
  }
}

Result<Envelopes> SecureRound::on_setup(const wire::SecAggSetup& msg) {
  if (client_) return fail("a second setup");
  auto setup = secagg::from_wire(msg);
  if (!setup) return fail(setup.error().message);
  auto c = secagg::Client::create(setup->config, setup->client_index);
  if (!c) return fail(c.error().message);
  num_clients_ = setup->config.num_clients;
  max_weight_ = setup->config.quant.max_weight;
  client_.emplace(std::move(c.value()));
  auto adv = client_->advertise_keys();
  if (!adv) return fail(adv.error().message);
  Envelopes out(1);
  secagg::to_wire(*adv, out[0].mutable_secagg_advertise_keys());
  return out;
}

Result<Envelopes> SecureRound::on_keys(const wire::SecAggKeysBroadcast& msg) {
  if (!client_) return fail("keys before setup");
  auto m = secagg::from_wire(msg, num_clients_);
  if (!m) return fail(m.error().message);
  auto sk = client_->share_keys(*m);
  if (!sk) return fail(sk.error().message);
  Envelopes out(1);
  secagg::to_wire(*sk, out[0].mutable_secagg_share_keys());
  return out;
}

Result<Envelopes> SecureRound::on_shares(const wire::SecAggSharesForward& msg) {
  if (!client_) return fail("shares before setup");
  if (shares_ || masked_sent_) return fail("shares forwarded twice");
  auto m = secagg::from_wire(msg, num_clients_);
  if (!m) return fail(m.error().message);
  shares_.emplace(std::move(m.value()));
  return masked_input_when_ready();
}

Result<Envelopes> SecureRound::on_unmask(const wire::SecAggUnmaskRequest& msg) {
  if (!client_) return fail("unmask request before setup");
  if (!masked_sent_) return fail("unmask request before this client sent its masked input");
  auto m = secagg::from_wire(msg, num_clients_);
  if (!m) return fail(m.error().message);
  auto r = client_->unmask(*m);
  if (!r) return fail(r.error().message);
  Envelopes out(1);
  secagg::to_wire(*r, out[0].mutable_secagg_unmask_response());
  finished_ = true;
  return out;
}

Result<Envelopes> SecureRound::set_update(std::span<const float> global,
                                          std::span<const float> trained, double weight) {
  if (delta_ || masked_sent_) return fail("a second update for this round");
  if (global.size() != trained.size()) return fail("the trained model has the wrong size");
  std::vector<float> delta(trained.size());
  for (std::size_t i = 0; i < delta.size(); ++i) delta[i] = trained[i] - global[i];
  delta_.emplace(std::move(delta));
  weight_ = weight;
  return masked_input_when_ready();
}

Result<Envelopes> SecureRound::masked_input_when_ready() {
  if (!client_ || !shares_ || !delta_) return Envelopes{};
  auto mi = client_->masked_input(*shares_, *delta_, std::min(weight_, max_weight_));
  delta_.reset();
  shares_.reset();
  if (!mi) return fail(mi.error().message);
  masked_sent_ = true;
  return secagg::masked_input_envelopes(*mi, chunk_words_);
}

std::optional<std::uint64_t> secure_message_round(const wire::Envelope& msg) {
  switch (msg.payload_case()) {
    case wire::Envelope::kSecaggSetup:
      return msg.secagg_setup().round();
    case wire::Envelope::kSecaggKeysBroadcast:
      return msg.secagg_keys_broadcast().round();
    case wire::Envelope::kSecaggSharesForward:
      return msg.secagg_shares_forward().round();
    case wire::Envelope::kSecaggUnmaskRequest:
      return msg.secagg_unmask_request().round();
    case wire::Envelope::kSecaggAbort:
      return msg.secagg_abort().round();
    default:
      return std::nullopt;
  }
}

}  // namespace federa
