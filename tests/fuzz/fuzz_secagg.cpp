// Fuzz targets: the SecAgg+ server's handling of one member's message in each phase, as the
// coordinator runs it: secagg_wire's from_wire (or the masked-input header and chunk assembler),
// the sender check, then secagg::Server::on_* and the rest of the round (end_* of every phase and
// finish()) with the other members' honest messages. Built four times, FEDERA_FUZZ_PHASE 0..3:
// AdvertiseKeys, ShareKeys, MaskedInput, UnmaskResponse.
//
// The honest part of the round is computed once (real X25519, Shamir, AES-GCM with the client's
// own code) and the server is copied at the start of each phase, so one execution costs one
// phase's messages plus finish(). The input's first byte picks the fuzzing member; the rest is
// its message (for MaskedInput: records of a SecAggMaskedInputHeader then TensorChunks).
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <vector>

#include "client/secagg_client.hpp"
#include "common/secagg_wire.hpp"
#include "coordinator/secagg_server.hpp"
#include "tests/fuzz/fuzz_util.hpp"

#ifndef FEDERA_FUZZ_PHASE
#error \
    "FEDERA_FUZZ_PHASE must be 0 (AdvertiseKeys), 1 (ShareKeys), 2 (MaskedInput) or 3 (UnmaskResponse)"
#endif

namespace {

using namespace federa;
using namespace federa::secagg;

constexpr std::uint32_t kClients = 5;
constexpr std::uint64_t kLength = 8;

// One honest round, recorded: the server as each phase began and every member's messages.
struct Honest {
  RoundConfig config;
  std::optional<Server> at_phase[4];
  std::vector<AdvertiseKeys> advertise;
  std::vector<ShareKeys> share;
  std::vector<MaskedInput> masked;
  std::vector<UnmaskResponse> unmask;
};

template <typename T>
T must(Result<T> r) {
  if (!r) std::abort();
  return std::move(*r);
}

Honest record_round() {
  Honest h;
  RoundOptions ro;
  ro.round = 3;
  ro.num_clients = kClients;
  ro.vector_length = kLength;
  ro.neighbors = kClients - 1;
  ro.threshold = 3;
  ro.max_weight = 10;
  ro.min_clients = 3;
  h.config = must(make_round_config(ro));
  Server server = must(Server::create(h.config));
  std::vector<Client> clients;
  for (std::uint32_t u = 0; u < kClients; ++u) clients.push_back(must(Client::create(h.config, u)));

  h.at_phase[0] = server;
  for (auto& c : clients) h.advertise.push_back(must(c.advertise_keys()));
  for (std::uint32_t u = 0; u < kClients; ++u)
    if (!server.on_advertise_keys(u, h.advertise[u])) std::abort();
  auto broadcasts = must(server.end_advertise_keys());

  h.at_phase[1] = server;
  for (const auto& b : broadcasts) h.share.push_back(must(clients[b.recipient].share_keys(b)));
  for (std::uint32_t u = 0; u < kClients; ++u)
    if (!server.on_share_keys(u, h.share[u])) std::abort();
  auto forwards = must(server.end_share_keys());

  h.at_phase[2] = server;
  for (const auto& f : forwards) {
    std::vector<float> update(kLength, 0.25f * float(f.recipient + 1));
    h.masked.push_back(must(clients[f.recipient].masked_input(f, update, 1.0 + f.recipient)));
  }
  for (std::uint32_t u = 0; u < kClients; ++u)
    if (!server.on_masked_input(u, h.masked[u])) std::abort();
  auto requests = must(server.end_masked_input());

  h.at_phase[3] = server;
  for (const auto& r : requests) h.unmask.push_back(must(clients[r.recipient].unmask(r)));
  for (std::uint32_t u = 0; u < kClients; ++u)
    if (!server.on_unmask(u, h.unmask[u])) std::abort();
  if (!server.finish()) std::abort();
  return h;
}

const Honest& honest() {
  static const Honest h = record_round();
  return h;
}

// The honest messages of `phase` from every member but `skip` (kClients: from all).
void deliver_honest(Server& s, const Honest& h, int phase, std::uint32_t skip) {
  for (std::uint32_t u = 0; u < kClients; ++u) {
    if (u == skip) continue;
    switch (phase) {
      case 0:
        (void)s.on_advertise_keys(u, h.advertise[u]);
        break;
      case 1:
        (void)s.on_share_keys(u, h.share[u]);
        break;
      case 2:
        (void)s.on_masked_input(u, h.masked[u]);
        break;
      default:
        (void)s.on_unmask(u, h.unmask[u]);
        break;
    }
  }
}

// Ends `phase`; false when the round was abandoned there.
bool end_phase(Server& s, int phase) {
  switch (phase) {
    case 0:
      return s.end_advertise_keys() ? true : false;
    case 1:
      return s.end_share_keys() ? true : false;
    case 2:
      return s.end_masked_input() ? true : false;
    default:
      return s.finish() ? true : false;
  }
}

// The fuzzing member's message, checked and handed over as orchestrator_secure.cpp does.
void deliver_fuzzed(Server& s, const RoundConfig& cfg, std::uint32_t u, const std::uint8_t* data,
                    std::size_t size) {
  const int n = static_cast<int>(size);
  const std::uint32_t clients = cfg.num_clients;
#if FEDERA_FUZZ_PHASE == 0
  (void)clients;
  wire::SecAggAdvertiseKeys w;
  if (!w.ParseFromArray(data, n)) return;
  if (auto m = from_wire(w); m && m->sender == u) (void)s.on_advertise_keys(u, *m);
#elif FEDERA_FUZZ_PHASE == 1
  wire::SecAggShareKeys w;
  if (!w.ParseFromArray(data, n)) return;
  if (auto m = from_wire(w, clients); m && m->sender == u) (void)s.on_share_keys(u, *m);
#elif FEDERA_FUZZ_PHASE == 2
  (void)n;
  (void)clients;
  fuzz::Records records(data, size);
  std::string_view bytes;
  wire::SecAggMaskedInputHeader header;
  if (!records.next(bytes) || !header.ParseFromArray(bytes.data(), int(bytes.size()))) return;
  if (header.sender() != u || header.total_elements() != cfg.masked_length() ||
      !s.expect_masked_input(u))
    return;
  std::vector<std::uint32_t> slot(cfg.masked_length());
  MaskedInputAssembler in;
  if (!in.begin(header, cfg, slot)) return;
  while (!in.complete() && records.next(bytes)) {
    wire::TensorChunk chunk;
    if (!chunk.ParseFromArray(bytes.data(), int(bytes.size())) || !in.add(chunk)) return;
  }
  if (in.complete()) (void)s.on_masked_input(u, header.round(), slot);
#else
  wire::SecAggUnmaskResponse w;
  if (!w.ParseFromArray(data, n)) return;
  if (auto m = from_wire(w, clients); m && m->sender == u) (void)s.on_unmask(u, *m);
#endif
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Honest& h = honest();
  constexpr int kPhase = FEDERA_FUZZ_PHASE;
  const std::uint32_t u = data[0] % kClients;
  Server s = *h.at_phase[kPhase];
  deliver_honest(s, h, kPhase, u);
  deliver_fuzzed(s, h.config, u, data + 1, size - 1);
  if (!end_phase(s, kPhase)) return 0;
  for (int phase = kPhase + 1; phase < 4; ++phase) {
    deliver_honest(s, h, phase, kClients);
    if (!end_phase(s, phase)) return 0;
  }
  return 0;
}
