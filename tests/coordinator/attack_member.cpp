#include "tests/coordinator/attack_member.hpp"

#include <cmath>
#include <random>

#include "common/secagg_wire.hpp"

namespace federa::testing {

std::optional<Attack> attack_from_name(const std::string& name) {
  if (name == "honest") return Attack::honest;
  if (name == "poison") return Attack::poison;
  if (name == "huge-weight") return Attack::huge_weight;
  if (name == "staller") return Attack::staller;
  if (name == "garbage-shares") return Attack::garbage_shares;
  if (name == "bad-secagg") return Attack::bad_secagg;
  if (name == "wrong-data") return Attack::wrong_data;
  if (name == "leaves-in-unmask") return Attack::leaves_in_unmask;
  return std::nullopt;
}

Member::Member(Attack attack, MemberOptions options) : attack_(attack), opt_(options) {}

wire::Envelope Member::hello() const {
  wire::Envelope e;
  auto* h = e.mutable_hello();
  h->set_protocol_version(kProtocolVersion);
  h->set_software("federa-test-member");
  h->set_num_train_examples(attack_ == Attack::huge_weight ? (std::uint64_t{1} << 62)
                                                           : opt_.examples);
  if (attack_ == Attack::wrong_data) h->set_num_features(100);
  return e;
}

std::vector<float> Member::honest_update(const std::vector<float>& global, std::uint32_t seed,
                                         float step) {
  std::vector<float> w(global.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    const float k = float((i * 31 + seed * 17) % 13) - 6.0f;  // in [-6, 6]
    w[i] = global[i] + step * k / 6.0f;
  }
  return w;
}

std::vector<float> Member::make_update() const {
  switch (attack_) {
    case Attack::poison:
      return std::vector<float>(global_.size(), 3e38f);
    case Attack::huge_weight: {
      // Five times an honest change: passes an outlier bound of 10x, and would own the
      // average if its weight counted as announced.
      return honest_update(global_, opt_.seed, 5 * opt_.step);
    }
    default:
      return honest_update(global_, opt_.seed, opt_.step);
  }
}

std::uint64_t Member::update_examples() const {
  if (attack_ == Attack::poison) return 4;
  if (attack_ == Attack::huge_weight) return std::uint64_t{1} << 62;
  return opt_.examples;
}

std::vector<wire::Envelope> Member::on_message(const wire::Envelope& in) {
  switch (in.payload_case()) {
    case wire::Envelope::kFitTask: {
      task_ = in.fit_task();
      global_.assign(task_->total_elements(), 0.0f);
      secure_.reset();
      shares_.reset();
      delta_.reset();
      trained_at_.reset();
      pending_chunks_.clear();
      if (!in_.begin(task_->round(), task_->total_elements(), task_->num_chunks(),
                     task_->chunk_elements(), global_))
        task_.reset();
      return {};
    }
    case wire::Envelope::kChunk:
      if (!task_ || !in_.add(in.chunk())) return {};
      if (!in_.complete()) return {};
      trained_at_ = std::chrono::steady_clock::now() + opt_.train_time;
      return tick();
    case wire::Envelope::kUploadReady: {
      if (attack_ == Attack::staller) return {};
      std::vector<wire::Envelope> out;
      out.swap(pending_chunks_);
      if (!out.empty()) ++answered_;
      return out;
    }
    case wire::Envelope::kSecaggSetup:
    case wire::Envelope::kSecaggKeysBroadcast:
    case wire::Envelope::kSecaggSharesForward:
    case wire::Envelope::kSecaggUnmaskRequest:
    case wire::Envelope::kSecaggAbort:
      return on_secure(in);
    default:
      return {};
  }
}

std::vector<wire::Envelope> Member::tick() {
  if (!trained_at_ || std::chrono::steady_clock::now() < *trained_at_) return {};
  trained_at_.reset();
  return model_ready();
}

std::vector<wire::Envelope> Member::model_ready() {
  const auto& t = *task_;
  std::vector<float> w = make_update();
  if (t.secure_aggregation() == "secagg+") {
    std::vector<float> d(w.size());
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = w[i] - global_[i];
    delta_ = std::move(d);
    return masked_input_when_ready();
  }
  wire::Envelope h;
  auto* uh = h.mutable_update_header();
  uh->set_round(t.round());
  uh->set_num_examples(update_examples());
  auto layout = from_wire(t.layout());
  uh->set_layout_hash(layout ? layout->hash() : 0);
  uh->set_total_elements(w.size());
  uh->set_num_chunks(chunk_count(w.size(), t.chunk_elements()));
  (*uh->mutable_metrics())["train_loss"] = 0.5;
  pending_chunks_ = make_chunks(t.round(), w, t.chunk_elements());
  return {h};
}

std::vector<wire::Envelope> Member::masked_input_when_ready() {
  if (!secure_ || !shares_ || !delta_) return {};
  const double weight = std::min(double(update_examples()), max_weight_);
  auto mi = secure_->masked_input(*shares_, *delta_, weight);
  delta_.reset();
  if (!mi) return {};
  auto envelopes = secagg::masked_input_envelopes(*mi, task_ ? task_->chunk_elements() : 1u << 20);
  pending_chunks_.assign(envelopes.begin() + 1, envelopes.end());
  return {envelopes.front()};
}

std::vector<wire::Envelope> Member::on_secure(const wire::Envelope& in) {
  std::vector<wire::Envelope> out(1);
  switch (in.payload_case()) {
    case wire::Envelope::kSecaggSetup: {
      auto setup = secagg::from_wire(in.secagg_setup());
      if (!setup) return {};
      auto c = secagg::Client::create(setup->config, setup->client_index);
      if (!c) return {};
      num_clients_ = setup->config.num_clients;
      max_weight_ = setup->config.quant.max_weight;
      secure_.emplace(std::move(*c));
      auto adv = secure_->advertise_keys();
      if (!adv) return {};
      if (attack_ == Attack::bad_secagg) {
        std::vector<wire::Envelope> flood(5);
        for (auto& e : flood) {
          secagg::AdvertiseKeys wrong = *adv;
          wrong.sender = (wrong.sender + 1) % num_clients_;
          secagg::to_wire(wrong, e.mutable_secagg_advertise_keys());
        }
        return flood;
      }
      secagg::to_wire(*adv, out[0].mutable_secagg_advertise_keys());
      return out;
    }
    case wire::Envelope::kSecaggKeysBroadcast: {
      if (!secure_) return {};
      auto m = secagg::from_wire(in.secagg_keys_broadcast(), num_clients_);
      if (!m) return {};
      auto sk = secure_->share_keys(*m);
      if (!sk) return {};
      if (attack_ == Attack::garbage_shares) {
        std::mt19937 rng(opt_.seed);
        for (auto& es : sk->shares)
          for (auto& b : es.ciphertext) b = static_cast<std::uint8_t>(rng());
      }
      secagg::to_wire(*sk, out[0].mutable_secagg_share_keys());
      return out;
    }
    case wire::Envelope::kSecaggSharesForward: {
      if (!secure_) return {};
      auto m = secagg::from_wire(in.secagg_shares_forward(), num_clients_);
      if (!m) return {};
      shares_ = std::move(*m);
      return masked_input_when_ready();
    }
    case wire::Envelope::kSecaggUnmaskRequest: {
      if (!secure_) return {};
      auto m = secagg::from_wire(in.secagg_unmask_request(), num_clients_);
      if (!m) return {};
      auto r = secure_->unmask(*m);
      if (!r) return {};
      secagg::to_wire(*r, out[0].mutable_secagg_unmask_response());
      return out;
    }
    default:  // SecAggAbort
      secure_.reset();
      return {};
  }
}

}  // namespace federa::testing
