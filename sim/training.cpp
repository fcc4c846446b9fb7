#include "sim/training.hpp"

#include <algorithm>
#include <thread>

#include "client/builtin_trainer.hpp"
#include "common/seeds.hpp"

namespace federa {

namespace {

// Runs work(k) for k in [0, n) on up to `threads` threads, the caller's included.
template <typename Work>
void on_threads(std::size_t n, unsigned threads, Work work) {
  std::atomic<std::size_t> next{0};
  auto loop = [&] {
    for (std::size_t k; (k = next.fetch_add(1)) < n;) work(k);
  };
  const unsigned t = static_cast<unsigned>(std::min<std::size_t>(std::max(1u, threads), n));
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < t; ++i) pool.emplace_back(loop);
  loop();
  for (auto& th : pool) th.join();
}

// Client c's built-in trainer over its rows of the shared data.
std::unique_ptr<Trainer> trainer_for(const ClientData& cd, std::size_t c) {
  return make_builtin_trainer(cd.data, cd.parts[c],
                              c < cd.tests.size() ? cd.tests[c] : std::vector<std::size_t>{},
                              mix_seeds(cd.seed, c + 1));
}

}  // namespace

std::vector<TrainOutcome> train_clients(const ClientData& cd,
                                        const std::vector<std::size_t>& clients,
                                        const Model& global, const TrainConfig& config,
                                        unsigned threads, std::atomic<std::size_t>* done) {
  std::vector<TrainOutcome> out(clients.size());
  on_threads(clients.size(), threads, [&](std::size_t k) {
    TrainOutcome& o = out[k];
    o.client = clients[k];
    Result<FitResult> r = trainer_for(cd, o.client)->fit(global, config);
    if (r) {
      o.ok = true;
      o.num_examples = r->num_examples;
      o.metrics = std::move(r->metrics);
      o.weights = std::move(r->weights);
    } else {
      o.error = r.error().message;
    }
    if (done) done->fetch_add(1);
  });
  return out;
}

std::vector<Result<EvaluateResult>> evaluate_clients(const ClientData& cd,
                                                     const std::vector<std::size_t>& clients,
                                                     const Model& model, const TrainConfig& config,
                                                     unsigned threads) {
  std::vector<Result<EvaluateResult>> out(clients.size(),
                                          Error{ErrorCode::internal, "not evaluated"});
  on_threads(clients.size(), threads,
             [&](std::size_t k) { out[k] = trainer_for(cd, clients[k])->evaluate(model, config); });
  return out;
}

std::vector<std::size_t> share_of(const std::vector<std::size_t>& clients, int rank, int size) {
  std::vector<std::size_t> mine;
  for (std::size_t k = static_cast<std::size_t>(rank); k < clients.size();
       k += static_cast<std::size_t>(size))
    mine.push_back(clients[k]);
  return mine;
}

Result<std::vector<TrainOutcome>> train_distributed(RankGroup& group, const ClientData& cd,
                                                    const ModelLayout& layout,
                                                    const WorkOrder& order, unsigned threads,
                                                    std::atomic<std::size_t>* done) {
  Model global(layout);
  if (order.global.size() != global.data.size())
    return Error{ErrorCode::internal, "work order: the model size differs from the layout"};
  global.data = order.global;
  auto mine = train_clients(cd, share_of(order.clients, group.rank(), group.size()), global,
                            order.config, threads, done);
  std::vector<std::string> at_root;
  if (Status s = group.gather(group.rank() == 0 ? std::string() : encode_outcomes(mine), at_root);
      !s)
    return s.error();
  if (group.rank() != 0) return std::vector<TrainOutcome>{};
  for (std::size_t r = 1; r < at_root.size(); ++r) {
    auto theirs = decode_outcomes(at_root[r]);
    if (!theirs) return theirs.error();
    for (auto& o : *theirs) mine.push_back(std::move(o));
  }
  std::sort(mine.begin(), mine.end(),
            [](const auto& a, const auto& b) { return a.client < b.client; });
  return mine;
}

Status serve_worker_rank(RankGroup& group, const ClientData& cd, const ModelLayout& layout,
                         unsigned threads) {
  for (;;) {
    std::string bytes;
    if (Status s = group.broadcast(bytes); !s) return s;
    auto order = decode_order(bytes);
    if (!order) return order.error();
    if (order->stop) return {};
    auto r = train_distributed(group, cd, layout, *order, threads, nullptr);
    if (!r) return r.error();
  }
}

void stop_worker_ranks(RankGroup& group) {
  WorkOrder stop;
  stop.stop = true;
  std::string bytes = encode_order(stop);
  (void)group.broadcast(bytes);
}

}  // namespace federa
