// Writes the seed corpora of the fuzz targets: a few small valid inputs per target (and some
// almost valid ones), from which libFuzzer mutates. The committed files in tests/fuzz/corpus/
// were made with it; run it again after a wire or format change:
//
//   build-asan/tests/fuzz/federa_fuzz_seeds tests/fuzz/corpus
//
// Inputs that the fuzzers later found interesting (crashes turned regression tests) are added to
// the corpus by hand and are not regenerated here.
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "client/secagg_client.hpp"
#include "common/nn.hpp"
#include "common/safetensors.hpp"
#include "common/secagg_wire.hpp"
#include "common/wire.hpp"
#include "coordinator/secagg_server.hpp"
#include "tests/fuzz/fuzz_util.hpp"

namespace fs = std::filesystem;
using namespace federa;
using federa::fuzz::append_record;

namespace {

fs::path g_root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_root / target);
  std::ofstream(g_root / target / name, std::ios::binary) << bytes;
}

std::string bytes_of(const google::protobuf::MessageLite& m) { return m.SerializeAsString(); }

template <typename T>
T must(Result<T> r) {
  if (!r) {
    std::cerr << r.error().message << "\n";
    std::exit(1);
  }
  return std::move(*r);
}

std::string gzip(const std::string& raw) {
  const fs::path tmp = fs::temp_directory_path() / "federa-seed.gz";
  gzFile f = gzopen(tmp.c_str(), "wb");
  gzwrite(f, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(f);
  std::ifstream in(tmp, std::ios::binary);
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::remove(tmp);
  return out;
}

std::string be32(std::uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }

void envelope_seeds() {
  auto net = must(make_network("softmax:4,3"));
  const ModelLayout layout = net->layout();
  wire::Envelope hello;
  hello.mutable_hello()->set_protocol_version(kProtocolVersion);
  hello.mutable_hello()->set_software("seed");
  hello.mutable_hello()->set_num_train_examples(100);
  std::vector<float> w(layout.size());
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * float(i);
  wire::Envelope header;
  auto* h = header.mutable_update_header();
  h->set_round(1);
  h->set_num_examples(100);
  h->set_layout_hash(layout.hash());
  h->set_total_elements(w.size());
  h->set_num_chunks(chunk_count(w.size(), 8));
  (*h->mutable_metrics())["train_loss"] = 0.5;
  std::string upload;
  append_record(upload, bytes_of(hello));
  append_record(upload, bytes_of(header));
  for (const auto& c : make_chunks(1, w, 8)) append_record(upload, bytes_of(c));
  put("envelope", "valid-upload", upload);
  std::string hello_only;
  append_record(hello_only, bytes_of(hello));
  put("envelope", "hello", hello_only);
  std::string no_hello;
  append_record(no_hello, bytes_of(header));
  put("envelope", "header-before-hello", no_hello);
  wire::Envelope err = make_error_envelope(wire::Error::BAD_UPDATE, "seed");
  std::string with_error;
  append_record(with_error, bytes_of(hello));
  append_record(with_error, bytes_of(err));
  put("envelope", "error", with_error);
  std::string two_rounds = upload;  // a second update for round 2 after the first commits
  h->set_round(2);
  append_record(two_rounds, bytes_of(header));
  for (const auto& c : make_chunks(2, w, 8)) append_record(two_rounds, bytes_of(c));
  put("envelope", "two-rounds", two_rounds);
}

void secagg_seeds() {
  secagg::RoundOptions ro;
  ro.round = 3;
  ro.num_clients = 5;
  ro.vector_length = 8;
  ro.neighbors = 4;
  ro.threshold = 3;
  ro.max_weight = 10;
  ro.min_clients = 3;
  const auto cfg = must(secagg::make_round_config(ro));
  auto server = must(secagg::Server::create(cfg));
  std::vector<secagg::Client> clients;
  for (std::uint32_t u = 0; u < 5; ++u) clients.push_back(must(secagg::Client::create(cfg, u)));
  auto tagged = [](std::uint32_t u, const std::string& msg) {
    return std::string(1, char(u)) + msg;
  };
  for (std::uint32_t u = 0; u < 5; ++u) {
    auto m = must(clients[u].advertise_keys());
    wire::SecAggAdvertiseKeys w;
    secagg::to_wire(m, &w);
    put("secagg_advertise", "client-" + std::to_string(u), tagged(u, bytes_of(w)));
    (void)server.on_advertise_keys(u, m);
  }
  for (const auto& b : must(server.end_advertise_keys())) {
    auto m = must(clients[b.recipient].share_keys(b));
    wire::SecAggShareKeys w;
    secagg::to_wire(m, &w);
    put("secagg_share_keys", "client-" + std::to_string(b.recipient),
        tagged(b.recipient, bytes_of(w)));
    (void)server.on_share_keys(b.recipient, m);
  }
  for (const auto& f : must(server.end_share_keys())) {
    std::vector<float> update(8, 0.5f);
    auto m = must(clients[f.recipient].masked_input(f, update, 2.0));
    std::string rec;
    for (const auto& e : secagg::masked_input_envelopes(m, 4))
      append_record(rec, e.has_chunk() ? bytes_of(e.chunk()) : bytes_of(e.secagg_masked_input()));
    put("secagg_masked_input", "client-" + std::to_string(f.recipient), tagged(f.recipient, rec));
    (void)server.on_masked_input(f.recipient, m);
  }
  for (const auto& r : must(server.end_masked_input())) {
    auto m = must(clients[r.recipient].unmask(r));
    wire::SecAggUnmaskResponse w;
    secagg::to_wire(m, &w);
    put("secagg_unmask", "client-" + std::to_string(r.recipient), tagged(r.recipient, bytes_of(w)));
  }
}

void safetensors_seeds() {
  Model m(ModelLayout({{"fc.weight", {3, 2}}, {"fc.bias", {3}}}));
  for (std::size_t i = 0; i < m.data.size(); ++i) m.data[i] = float(i) - 2.5f;
  put("safetensors", "two-tensors", encode_safetensors(m, {{"federa.round", "7"}}));
  put("safetensors", "no-metadata", encode_safetensors(m));
  Model empty(ModelLayout({{"scalar", {}}}));
  put("safetensors", "scalar", encode_safetensors(empty));
  put("safetensors", "zero-dim", encode_safetensors(Model(ModelLayout({{"z", {0, 4}}}))));
}

void dataset_seeds() {
  // 3 images of 2x2 pixels and their labels.
  std::string images = be32(0x803) + be32(3) + be32(2) + be32(2);
  for (int i = 0; i < 12; ++i) images.push_back(char(i * 20));
  std::string labels = be32(0x801) + be32(3) + std::string("\x00\x01\x02", 3);
  std::string raw, gz;
  append_record(raw, images);
  append_record(raw, labels);
  append_record(gz, gzip(images));
  append_record(gz, gzip(labels));
  put("idx", "plain", raw);
  put("idx", "gzip", gz);

  put("csv", "numeric", "a,b,label\n1,2,0\n3.5,-4e2,1\n0,0,1\n");
  put("csv", "strings", "\xEF\xBB\xBFx,label,y\r\n1,cat,2\r\n2,dog,3\r\n\r\n3,\"cat\",4\r\n");
  put("csv", "quoted", "\"label\",\"v\"\n\"yes\",+1.5\n\"no\",2\n");
}

void config_seeds() {
  put("config", "small",
      R"({"rounds": 3, "min-clients": 2, "listen": "127.0.0.1:0", "pki": "pki"})");
  put("config", "full",
      R"({"pki": "p", "rounds": 20, "fraction-fit": 0.5, "round-timeout": 30.5, "resume": true,)"
      R"( "model": "mlp:784,32,10", "strategy": "fedadam", "secure-aggregation": "secagg+",)"
      R"( "secagg-dropout": 0.2, "chunk-mb": 1, "listen": "[::1]:8443", "threads": 2})");
  put("config", "bad-value", R"({"pki": "p", "fraction-fit": 2})");
  put("config", "array", R"({"pki": ["a", "b"]})");
}

void members_seeds() {
  put("members", "list", "site-a\nsite-b  # the hospital\n\n# comment\n\tsite-c\r\n");
  put("members", "one", "only");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: federa_fuzz_seeds CORPUS_DIR\n";
    return 2;
  }
  g_root = argv[1];
  envelope_seeds();
  secagg_seeds();
  safetensors_seeds();
  dataset_seeds();
  config_seeds();
  members_seeds();
  std::cout << "seeds written under " << g_root << "\n";
  return 0;
}
