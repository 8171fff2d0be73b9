// `dualflow bench` on a workload, run as a child process: the step timing and the GEMM roofline
// (the step's GEMMs timed alone) reach stdout and the --json line.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>

#include "tests/train/cli_runner.h"

namespace dualflow::testing {

TEST_CASE("dualflow bench toy2d-cfm: the GEMM roofline in the table and the JSON", "[cli_bench]") {
  Scratch s("bench");
  Outcome o = run_dualflow(s, {"bench", "toy2d-cfm", "--threads", "1", "--steps", "3", "--warmup", "1", "--json",
                               "bench.jsonl", "--gemm-shapes"});
  REQUIRE_SUCCEEDED(o);
  REQUIRE_THAT(o.out, Catch::Contains("GEMM roofline:") && Catch::Contains("GEMM shape") &&
                          Catch::Contains("[1024x256] @ [256x256]^T +bias f32"));
  std::ifstream f(s.work / "bench.jsonl");
  std::string line;
  REQUIRE(std::getline(f, line));
  const nlohmann::json j = nlohmann::json::parse(line);
  // The toy2d network on 1,024 points: a 130 -> 256 layer (2 coordinates and two 64-wide time
  // embeddings), three 256 -> 256 layers and a 256 -> 2 head. Each runs forward and its weight
  // gradient; every layer but the first also passes the gradient to its input: 9 GEMMs of
  // 256 x 256, 2 of 130 x 256 and 3 of 256 x 2, each over 1,024 rows.
  const double flops = 2.0 * 1024 * (9 * 256 * 256 + 2 * 130 * 256 + 3 * 256 * 2);
  CHECK(j.at("gemm_calls").get<int64_t>() == 14);
  CHECK(j.at("gemm_gflop").get<double>() == Approx(flops / 1e9).epsilon(1e-4));
  CHECK(j.at("gemm_alone_ms").get<double>() > 0.0);
  const double roofline = j.at("gemm_roofline").get<double>();
  CHECK(roofline > 0.0);
  CHECK(roofline == Approx(j.at("gemm_alone_ms").get<double>() / j.at("median_ms").get<double>()).epsilon(1e-3));
  // The same share from rounds of one step and then its GEMMs: a time ratio of the same work,
  // so the same order as the unpaired one on a quiet machine.
  const double paired = j.at("gemm_roofline_paired").get<double>();
  CHECK(paired > 0.1 * roofline);
  CHECK(paired < 10.0 * roofline);
  REQUIRE_THAT(o.out, Catch::Contains("paired with a step in each of"));
}

}  // namespace dualflow::testing
