// federa-bench wire: what a model's dtype costs on the wire. For one model of --params values
// stored as F32, F16 and BF16: the bytes a client receives (FitTask and the global model's
// chunks) and sends (UpdateHeader and its update's chunks), serialized as on the WebSocket, and
// the time to make the chunks (float32 -> dtype) and to reassemble them (dtype -> float32, with
// the receive path's finite check and sums), each as a ratio to F32 in the same run.
//
//   federa-bench wire --params 100000000 --repeats 3 --json
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>

#include "common/options.hpp"
#include "common/wire.hpp"

namespace federa::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct WireFigures {
  DType dtype = DType::f32;
  std::uint64_t receive_bytes = 0;  // FitTask + chunks
  std::uint64_t send_bytes = 0;     // UpdateHeader + chunks
  double encode_s = 0, decode_s = 0;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

WireFigures measure(DType dtype, const std::vector<float>& values, std::size_t chunk_elements,
                    int repeats) {
  const ModelLayout layout({{"w", {values.size()}, dtype}});
  const auto runs = layout.float_runs();
  WireFigures f{dtype};
  wire::Envelope task;
  auto* t = task.mutable_fit_task();
  t->set_round(1);
  *t->mutable_layout() = to_wire(layout);
  t->set_total_elements(values.size());
  t->set_num_chunks(chunk_count(values.size(), chunk_elements));
  t->set_chunk_elements(static_cast<std::uint32_t>(chunk_elements));
  wire::Envelope header;
  auto* h = header.mutable_update_header();
  h->set_round(1);
  h->set_num_examples(1000);
  h->set_layout_hash(layout.hash());
  h->set_total_elements(values.size());
  h->set_num_chunks(t->num_chunks());
  (*h->mutable_metrics())["train_loss"] = 0.5;
  f.encode_s = f.decode_s = 1e30;
  std::vector<float> out(values.size());
  for (int r = 0; r < repeats; ++r) {
    auto started = Clock::now();
    auto chunks = make_chunks(1, values, chunk_elements, runs);
    f.encode_s = std::min(f.encode_s, seconds_since(started));
    started = Clock::now();
    ChunkAssembler in;
    if (!in.begin(1, values.size(), t->num_chunks(), chunk_elements, out, true, {}, runs))
      throw std::runtime_error("assembler refused the announced sizes");
    for (const auto& c : chunks)
      if (Status s = in.add(c.chunk()); !s) throw std::runtime_error(s.message());
    f.decode_s = std::min(f.decode_s, seconds_since(started));
    std::uint64_t chunk_bytes = 0;
    for (const auto& c : chunks) chunk_bytes += c.ByteSizeLong();
    f.receive_bytes = task.ByteSizeLong() + chunk_bytes;
    f.send_bytes = header.ByteSizeLong() + chunk_bytes;
  }
  return f;
}

}  // namespace

int wire_main(int argc, char** argv) {
  po::options_description desc(
      "federa-bench wire: bytes and conversion time of F32, F16 and BF16 models\n\nflags", 100);
  desc.add_options()("params", po::value<std::size_t>()->default_value(100'000'000),
                     "model parameters")("repeats", po::value<int>()->default_value(3),
                                         "times each is measured (the fastest is kept)")(
      "chunk-mb", po::value<double>()->default_value(4.0),
      "chunk size in MiB of float32, as the coordinator's flag")(
      "json", po::bool_switch(), "print one JSON object as the last line");
  auto vm = parse_options(argc, argv, desc);
  if (!vm) {
    std::cout << desc << "\n";
    return 0;
  }
  const std::size_t params = (*vm)["params"].as<std::size_t>();
  const int repeats = std::max(1, (*vm)["repeats"].as<int>());
  const auto chunk_elements =
      std::max<std::size_t>(1, std::size_t((*vm)["chunk-mb"].as<double>() * 1024 * 1024 / 4));
  std::vector<float> values(params);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (float& v : values) v = normal(rng);
  std::vector<WireFigures> all;
  for (DType d : {DType::f32, DType::f16, DType::bf16}) {
    all.push_back(measure(d, values, chunk_elements, repeats));
    const auto& f = all.back();
    std::cerr << fmt::format(
        "{:>4}: receive {} bytes, send {} bytes ({:.3f} of F32); make chunks {:.3f} s, "
        "reassemble {:.3f} s\n",
        dtype_name(d), f.receive_bytes, f.send_bytes,
        double(f.send_bytes) / double(all.front().send_bytes), f.encode_s, f.decode_s);
  }
  if ((*vm)["json"].as<bool>()) {
    std::string out = fmt::format("{{\"params\":{},\"chunk_elements\":{}", params, chunk_elements);
    for (const auto& f : all) {
      const std::string n(dtype_name(f.dtype));
      out += fmt::format(
          ",\"{0}_receive_bytes\":{1},\"{0}_send_bytes\":{2},\"{0}_encode_s\":{3:.4f},"
          "\"{0}_decode_s\":{4:.4f},\"{0}_bytes_ratio\":{5:.4f},\"{0}_encode_ratio\":{6:.3f},"
          "\"{0}_decode_ratio\":{7:.3f}",
          n, f.receive_bytes, f.send_bytes, f.encode_s, f.decode_s,
          double(f.send_bytes) / double(all.front().send_bytes), f.encode_s / all.front().encode_s,
          f.decode_s / all.front().decode_s);
    }
    std::cout << out << "}" << std::endl;
  }
  return 0;
}

}  // namespace federa::bench
