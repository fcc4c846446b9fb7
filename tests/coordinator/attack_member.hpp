// Federation members that attack the coordinator the way issue 9 found it attackable, as
// transport-free protocol scripts: feed each envelope the coordinator sends to on_message() and
// send what it returns. The same scripts run over the orchestrator's fake links
// (tests/coordinator/test_attacks.cpp) and over real mutual TLS against a real coordinator
// (tests/integration/attack_client.hpp, the federa-test-member program).
//
//   Member m(Attack::poison, {.examples = 4});
//   send(m.hello());
//   for (each envelope e from the coordinator) for (auto& out : m.on_message(e)) send(out);
//
// Attacks:
//   honest          trains nothing, but answers like a member: global + a small, fixed change
//   poison          finite values 3e38 everywhere, num_examples 4 (the float32 sum overflows)
//   huge_weight     announces 2^62 examples (Hello and update); a modest change
//   staller         announces its update, is granted a slot, never sends a chunk
//   garbage_shares  SecAgg+: random bytes as its encrypted shares; otherwise follows the protocol
//   bad_secagg      SecAgg+: keeps sending AdvertiseKeys that name another client's index
//   wrong_data      announces data of 100 features (Hello), which no 784-input model can take
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/secagg_client.hpp"
#include "common/wire.hpp"

namespace federa::testing {

// leaves_in_unmask: an honest member whose connection ends when its UnmaskRequest comes.
enum class Attack {
  honest,
  poison,
  huge_weight,
  staller,
  garbage_shares,
  bad_secagg,
  wrong_data,
  leaves_in_unmask
};
// "poison" -> Attack::poison, ...; nullopt for an unknown name.
std::optional<Attack> attack_from_name(const std::string& name);

struct MemberOptions {
  std::uint64_t examples = 100;  // announced in Hello and with each update (unless the attack says)
  std::uint32_t seed = 1;        // makes an honest member's change its own
  float step = 0.01f;            // size of an honest member's change per coordinate
  // "Training time": how long after the model arrives its update (or masked input) is ready.
  // Attackers that skip training answer at once.
  std::chrono::milliseconds train_time{0};
};

// A member to create: who, which script, with what.
struct MemberSpec {
  std::string id;
  Attack attack = Attack::honest;
  MemberOptions options;
};

// Move-only (it holds the round's SecAgg+ secrets).
class Member {
 public:
  explicit Member(Attack attack, MemberOptions options = {});
  wire::Envelope hello() const;
  // Everything the member sends in answer to one envelope from the coordinator.
  std::vector<wire::Envelope> on_message(const wire::Envelope& in);
  // What is ready to go now that was not when the last message came (a finished "training").
  // Drivers call it between messages.
  std::vector<wire::Envelope> tick();

  Attack attack() const { return attack_; }
  std::uint64_t rounds_answered() const { return answered_; }
  // The update an honest member sends for `global` (tests compute expected models from it).
  static std::vector<float> honest_update(const std::vector<float>& global, std::uint32_t seed,
                                          float step);

 private:
  std::vector<float> make_update() const;
  std::uint64_t update_examples() const;
  std::vector<wire::Envelope> model_ready();
  std::vector<wire::Envelope> masked_input_when_ready();
  std::vector<wire::Envelope> on_secure(const wire::Envelope& in);

  Attack attack_;
  MemberOptions opt_;
  std::uint64_t answered_ = 0;
  // The round in progress.
  std::optional<wire::FitTask> task_;
  std::vector<float> global_;
  std::optional<std::chrono::steady_clock::time_point>
      trained_at_;  // model here, update not yet out
  ChunkAssembler in_;
  std::vector<wire::Envelope> pending_chunks_;  // sent once UploadReady comes
  // SecAgg+.
  std::optional<secagg::Client> secure_;
  std::uint32_t num_clients_ = 0;
  std::optional<secagg::SharesForward> shares_;
  std::optional<std::vector<float>> delta_;
  double max_weight_ = 1;
};

}  // namespace federa::testing
