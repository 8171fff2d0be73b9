// The `dualflow` program on bad input, run as a child process: every refusal exits with a non-zero
// status (not a signal), says on stderr what was expected and what was given, and leaves nothing
// new on disk; a setting that runs but is known to train badly gets a note on stdout.
// docs/bad_input.md lists these cases beside the library-level tests.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "engine/device.h"

#include "tests/train/cli_runner.h"

namespace dualflow::testing {

using Catch::Contains;

TEST_CASE("dualflow CLI: an unknown subcommand names the known ones, with a suggestion", "[cli_errors]") {
  Scratch s("subcommand");
  REQUIRE_REFUSED(run_dualflow(s, {"frobnicate"}),
                  Contains("unknown subcommand 'frobnicate'; expected one of info, bench, demo, train, sample, nll"));
  REQUIRE_REFUSED(run_dualflow(s, {"trian", "run.toml"}),
                  Contains("unknown subcommand 'trian'") && Contains("did you mean 'train'?"));
  REQUIRE_REFUSED(run_dualflow(s, {"bench", "kernel"}),
                  Contains("dualflow bench: unknown subcommand 'kernel'; expected one of kernels, models") &&
                      Contains("did you mean 'kernels'?"));
  REQUIRE(s.listing().empty());
}

TEST_CASE("dualflow CLI: an unknown flag or a missing value names the option", "[cli_errors]") {
  Scratch s("flags");
  s.write("tiny.toml", kTinyRun);
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--bogus"}),
                  Contains("not expected: --bogus"));
  REQUIRE_REFUSED(run_dualflow(s, {"sample", "--checkpoint"}), Contains("--checkpoint") && Contains("missing"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--set"}), Contains("--set") && Contains("missing"));
  REQUIRE_REFUSED(run_dualflow(s, {"sample", "--out", "x.npy"}), Contains("--checkpoint is required"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml"}), Contains("--out DIR is required"));
  REQUIRE(s.listing() == std::set<std::string>{fmt::format("tiny.toml {}", std::string(kTinyRun).size())});
}

TEST_CASE("dualflow CLI: a value of the wrong type names the option, the type and the value", "[cli_errors]") {
  Scratch s("types");
  s.write("tiny.toml", kTinyRun);
  // Numbers are checked while parsing, before the checkpoint is read (tiny.toml stands in for it).
  const std::vector<std::string> sample = {"sample", "--checkpoint", "tiny.toml", "--out", "x.npy"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = sample;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  REQUIRE_REFUSED(run_dualflow(s, with({"--n", "abc"})), Contains("--n: expected a positive integer, got 'abc'"));
  REQUIRE_REFUSED(run_dualflow(s, with({"--n", "2.5"})), Contains("--n: expected a positive integer, got '2.5'"));
  REQUIRE_REFUSED(run_dualflow(s, with({"--seed", "x1"})),
                  Contains("--seed: expected a non-negative integer, got 'x1'"));
  REQUIRE_REFUSED(run_dualflow(s, with({"--rtol", "fast"})), Contains("--rtol: expected a number > 0, got 'fast'"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--set", "train.steps=many"}),
                  Contains("--set train.steps=many") && Contains("'many' is not a TOML value") && Contains("an int"));
  REQUIRE_FALSE(fs::exists(s.work / "x.npy"));
  REQUIRE_FALSE(fs::exists(s.work / "run"));
}

TEST_CASE("dualflow CLI: out-of-range values name the bound and the value", "[cli_errors]") {
  Scratch s("ranges");
  s.write("tiny.toml", kTinyRun);
  REQUIRE_REFUSED(run_dualflow(s, {"sample", "--checkpoint", "tiny.toml", "--out", "x.npy", "--steps", "-3"}),
                  Contains("--steps: expected a positive integer, got '-3'"));
  REQUIRE_REFUSED(run_dualflow(s, {"sample", "--checkpoint", "tiny.toml", "--out", "x.npy", "--rtol", "0"}),
                  Contains("--rtol: expected a number > 0, got '0'"));
  REQUIRE_REFUSED(run_dualflow(s, {"nll", "--checkpoint", "tiny.toml", "--out", "x.json", "--atol", "-1e-3"}),
                  Contains("--atol: expected a number > 0, got '-1e-3'"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--set", "train.batch=0"}),
                  Contains("--set train.batch=0: train.batch must be >= 1, got 0"));
  REQUIRE_FALSE(fs::exists(s.work / "x.npy"));
  REQUIRE_FALSE(fs::exists(s.work / "x.json"));
  REQUIRE_FALSE(fs::exists(s.work / "run"));
}

TEST_CASE("dualflow CLI: a bad config is refused by file, line and key, and writes no checkpoint", "[cli_errors]") {
  Scratch s("config");
  s.write("broken.toml", "[train]\nsteps = = 5\n");
  s.write("typo.toml", "[optim]\nlrr = 1e-3\n");
  s.write("tiny.toml", kTinyRun);
  REQUIRE_REFUSED(run_dualflow(s, {"train", "broken.toml", "--out", "run"}),
                  Contains("broken.toml:2:") && Contains("TOML syntax error"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "typo.toml", "--out", "run"}),
                  Contains("typo.toml:2:1: unknown key 'optim.lrr'; did you mean 'optim.lr'?"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--set", "model.widht=16"}),
                  Contains("unknown key 'model.widht'; did you mean 'model.width'?"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "missing.toml", "--out", "run"}),
                  Contains("config") && Contains("does not exist: missing.toml"));
  REQUIRE_FALSE(fs::exists(s.work / "run"));
}

TEST_CASE("dualflow CLI: a device that does not exist is named; the run leaves nothing behind", "[cli_errors]") {
  Scratch s("device");
  s.write("tiny.toml", kTinyRun);
  const auto before = s.listing();
  // A CUDA build answers "no such CUDA device (N found)", a CPU-only build "this build has no CUDA backend".
  REQUIRE_REFUSED(
      run_dualflow(s, {"train", "tiny.toml", "--out", "runs/a", "--set", "run.device=cuda:63"}),
      Contains("device cuda:63: ") && (Contains("no such CUDA device") || Contains("this build has no CUDA backend")));
  if (!cuda_available()) {
    // The machine has no GPU: plain `cuda` says so instead of crashing.
    REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--set", "run.device=cuda"}),
                    Contains("device cuda:0: ") &&
                        (Contains("no such CUDA device (0 found)") || Contains("this build has no CUDA backend")));
  }
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--set", "run.device=\"gpu\""}),
                  Contains("expected 'cpu', 'cuda' or 'cuda:N', got 'gpu'"));
  REQUIRE(s.listing() == before);  // the output directories it had created are gone again
}

TEST_CASE("dualflow CLI: a missing or truncated checkpoint is refused by path", "[cli_errors]") {
  Scratch s("truncated");
  train_tiny(s);
  const std::string good = s.read("run/checkpoint.safetensors");
  s.write("cut.safetensors", good.substr(0, 200));                // inside the header
  s.write("short.safetensors", good.substr(0, good.size() - 5));  // inside the tensor data
  const auto before = s.listing();
  auto sample = [&](const std::string& ckpt) {
    return run_dualflow(s, {"sample", "--checkpoint", ckpt, "--out", "x.npy"});
  };
  REQUIRE_REFUSED(sample("nope.safetensors"), Contains("--checkpoint: File does not exist: nope.safetensors"));
  REQUIRE_REFUSED(sample("cut.safetensors"),
                  Contains("cut.safetensors: header length is") && Contains("but only 192 bytes follow"));
  REQUIRE_REFUSED(sample("short.safetensors"), Contains("short.safetensors") && Contains("run past the data buffer"));
  REQUIRE(s.listing() == before);
}

TEST_CASE("dualflow CLI: a corrupted or wrong-format checkpoint is refused by path", "[cli_errors]") {
  Scratch s("corrupt");
  train_tiny(s);
  std::string bad_json = s.read("run/checkpoint.safetensors");
  bad_json[9] = '#';  // the opening quote of the header's first key
  s.write("corrupt.safetensors", bad_json);
  s.write("image.safetensors", std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16) + std::string(64, '\0'));
  const auto before = s.listing();
  auto sample = [&](const std::string& ckpt) {
    return run_dualflow(s, {"sample", "--checkpoint", ckpt, "--out", "x.npy"});
  };
  REQUIRE_REFUSED(sample("corrupt.safetensors"), Contains("corrupt.safetensors: header is not valid JSON"));
  REQUIRE_REFUSED(sample("image.safetensors"),
                  Contains("image.safetensors: header length is 727905341920923785 bytes") &&
                      Contains("expected at most 100000000"));
  REQUIRE(s.listing() == before);
}

TEST_CASE("dualflow CLI: a checkpoint of another model shape is refused and left as it was", "[cli_errors]") {
  Scratch s("shape");
  train_tiny(s);
  const std::string ckpt = s.read("run/checkpoint.safetensors"), metrics = s.read("run/metrics.jsonl");
  const auto before = s.listing();
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--resume", "--set", "model.width=16", "--set",
                                   "train.steps=4"}),
                  Contains("run/checkpoint.safetensors: the model state does not fit") &&
                      Contains("nothing was copied") && Contains("net.0.weight: shape expected [16,66], given [8,66]"));
  REQUIRE(s.listing() == before);
  REQUIRE(s.read("run/checkpoint.safetensors") == ckpt);
  REQUIRE(s.read("run/metrics.jsonl") == metrics);
}

TEST_CASE("dualflow CLI: an output path that cannot be written is named with the reason", "[cli_errors]") {
  Scratch s("unwritable");
  train_tiny(s);
  s.write("file", "a regular file\n");
  const auto before = s.listing();
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "file/run"}),
                  Contains("cannot create the output directory 'file/run': Not a directory"));
  REQUIRE_REFUSED(run_dualflow(s, {"train", "tiny.toml", "--out", "/proc/dualflow-run"}),
                  Contains("cannot create the output directory '/proc/dualflow-run'"));
  // sample, nll and eval check their outputs before the work: these messages come from that
  // check (a late failure would name the temporary file instead).
  REQUIRE_REFUSED(
      run_dualflow(s, {"sample", "--checkpoint", "run/checkpoint.safetensors", "--out", "file/x.npy", "--n", "8"}),
      Contains("sample --out: cannot write 'file/x.npy': 'file' is not a folder"));
  REQUIRE_REFUSED(
      run_dualflow(s, {"sample", "--checkpoint", "run/checkpoint.safetensors", "--out", "missing/x.npy", "--n", "8"}),
      Contains("sample --out: cannot write 'missing/x.npy': the folder 'missing' does not exist"));
  REQUIRE_REFUSED(run_dualflow(s, {"nll", "--checkpoint", "run/checkpoint.safetensors", "--out", "/proc/dualflow.json",
                                   "--n", "8", "--solver", "euler", "--steps", "2"}),
                  Contains("nll --out: cannot write '/proc/dualflow.json': cannot create files in the folder '/proc'"));
  REQUIRE_REFUSED(run_dualflow(s, {"nll", "--checkpoint", "run/checkpoint.safetensors", "--out", "run", "--n", "8"}),
                  Contains("nll --out: cannot write 'run': it is a directory"));
  REQUIRE(s.listing() == before);
  REQUIRE_FALSE(fs::exists("/proc/dualflow-run"));
}

TEST_CASE("dualflow CLI: a sampler the checkpoint's method does not offer is refused with the ones it does",
          "[cli_errors]") {
  Scratch s("samplers");
  train_tiny(s);  // flow matching: samples by its ODE only
  REQUIRE(run_dualflow(s, {"train", "tiny.toml", "--out", "mf", "--set", "method.name=\"meanflow\"", "--set",
                           "model.time_scale=10.0"})
              .status == 0);
  const auto before = s.listing();
  auto sample = [&](const std::string& ckpt, std::vector<std::string> extra) {
    std::vector<std::string> a = {"sample", "--checkpoint", ckpt, "--out", "x.npy", "--n", "8"};
    a.insert(a.end(), extra.begin(), extra.end());
    return run_dualflow(s, a);
  };
  REQUIRE_REFUSED(sample("run/checkpoint.safetensors", {"--method", "meanflow"}),
                  Contains("--method meanflow: this checkpoint was trained with method.name = \"cfm\"") &&
                      Contains("sample with ode"));
  REQUIRE_REFUSED(sample("mf/checkpoint.safetensors", {"--method", "euler"}), Contains("sample with meanflow or ode"));
  REQUIRE_REFUSED(
      sample("mf/checkpoint.safetensors", {"--solver", "rk4"}),
      Contains("--solver, --rtol and --atol choose the ODE solver; the meanflow sampler takes only --steps"));
  REQUIRE_REFUSED(sample("run/checkpoint.safetensors", {"--cfg", "2"}),
                  Contains("--cfg 2 needs a class-conditional model"));
  // A guidance interval is iMF's alone, and needs classes.
  REQUIRE_REFUSED(
      sample("mf/checkpoint.safetensors", {"--cfg-interval", "0.2", "0.8"}),
      Contains("--cfg-interval: only iMF's own sampler takes a guidance interval") && Contains("method \"meanflow\""));
  REQUIRE_REFUSED(sample("run/checkpoint.safetensors", {"--cfg-interval", "0.2"}), Contains("--cfg-interval"));
  REQUIRE(s.listing() == before);
  REQUIRE(run_dualflow(s, {"train", "tiny.toml", "--out", "imf", "--set", "method.name=\"imf\"", "--set",
                           "model.time_scale=10.0"})
              .status == 0);
  const auto with_imf = s.listing();
  REQUIRE_REFUSED(sample("imf/checkpoint.safetensors", {"--cfg-interval", "0.2", "0.8"}),
                  Contains("--cfg-interval needs a class-conditional model"));
  REQUIRE_REFUSED(sample("imf/checkpoint.safetensors", {"--cfg", "3"}),
                  Contains("--cfg 3 needs a class-conditional model"));
  REQUIRE(s.listing() == with_imf);
}

TEST_CASE("dualflow CLI: nll --probes averages several Hutchinson probes and is refused with the exact divergence",
          "[cli_errors]") {
  Scratch s("probes");
  train_tiny(s);
  const auto before = s.listing();
  REQUIRE_REFUSED(run_dualflow(s, {"nll", "--checkpoint", "run/checkpoint.safetensors", "--out", "p.json", "--n", "8",
                                   "--solver", "euler", "--steps", "2", "--probes", "3"}),
                  Contains("nll: --probes 3 asks for several Hutchinson probes, but --divergence is exact"));
  REQUIRE(s.listing() == before);
  for (const char* probes : {"1", "4"}) {
    const Outcome r =
        run_dualflow(s, {"nll", "--checkpoint", "run/checkpoint.safetensors", "--out", "p.json", "--n", "64",
                         "--solver", "euler", "--steps", "4", "--divergence", "hutchinson", "--probes", probes});
    INFO(r.err);
    REQUIRE(r.status == 0);
    REQUIRE_THAT(s.read("p.json"),
                 Contains("\"divergence\":\"hutchinson\",\"probes\":" + std::string(probes)) && Contains("\"nfe\":4"));
  }
}

TEST_CASE("dualflow CLI: a malformed IDX file is named with what was expected and found", "[cli_errors]") {
  Scratch s("idx");
  s.write("tiny.toml", kTinyRun);
  fs::create_directories(s.work / "idx");
  s.write("idx/train-images-idx3-ubyte", std::string("PK\x03\x04 not an IDX file", 20));
  const std::string labels("\0\0\x08\x01\0\0\0\x01\x05", 9);  // one label
  for (const char* f : {"idx/train-labels-idx1-ubyte", "idx/t10k-images-idx3-ubyte", "idx/t10k-labels-idx1-ubyte"})
    s.write(f, labels);
  const auto before = s.listing();
  REQUIRE_REFUSED(
      run_dualflow(s, {"train", "tiny.toml", "--out", "run", "--set", "data.name=\"fashion_mnist\"", "--set",
                       "data.path=\"idx\"", "--set", "model.kind=\"unet\"", "--set", "model.unet_channels=4", "--set",
                       "model.unet_mult=[1]", "--set", "model.unet_attention=[]", "--set", "model.unet_blocks=1"}),
      Contains("idx/train-images-idx3-ubyte: IDX magic: expected 00 00 08 xx (unsigned bytes), got 50 4b 03 04"));
  REQUIRE(s.listing() == before);
}

TEST_CASE("dualflow CLI: MeanFlow with the fast time embedding trains, with a note naming model.time_scale",
          "[cli_errors]") {
  Scratch s("time_scale");
  s.write("tiny.toml", std::string(kTinyRun) + "[method]\nname = \"meanflow\"\n");
  const Outcome fast = run_dualflow(s, {"train", "tiny.toml", "--out", "fast"});
  INFO(fast.err);
  REQUIRE(fast.status == 0);
  CHECK_THAT(fast.out, Contains("note: model.time_scale = 1000 with method.name = \"meanflow\"") &&
                           Contains("use model.time_scale = 10"));
  const Outcome slow = run_dualflow(s, {"train", "tiny.toml", "--out", "slow", "--set", "model.time_scale=10"});
  INFO(slow.err);
  REQUIRE(slow.status == 0);
  CHECK_THAT(slow.out, !Contains("note: model.time_scale"));
  // Flow matching's target does not differentiate the network: no note at the default.
  s.write("cfm.toml", kTinyRun);
  const Outcome cfm = run_dualflow(s, {"train", "cfm.toml", "--out", "cfm"});
  REQUIRE(cfm.status == 0);
  CHECK_THAT(cfm.out, !Contains("note: model.time_scale"));
}

}  // namespace dualflow::testing
