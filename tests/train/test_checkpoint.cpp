// Checkpoints: a save -> load round trip restores model, EMA, optimizer and generators bit for
// bit (training continues identically), and every refusal leaves the live objects untouched.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/safetensors.h"
#include "models/mlp_velocity.h"
#include "tests/engine/test_util.h"
#include "train/checkpoint.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / fmt::format("dualflow-ckpt-test-{}", ::getpid());
  fs::create_directories(d);
  return d;
}

MLPVelocityConfig small_config(int64_t width = 16) {
  MLPVelocityConfig c;
  c.width = width;
  c.depth = 2;
  c.embedding_dim = 8;
  return c;
}

// One training step of a tiny regression so that the optimizer and EMA have non-trivial state.
double train_step(MLPVelocity& net, Optimizer& opt, Ema& ema, Generator& data, int64_t step) {
  Tensor z = randn({8, 2}, data), t = rand({8}, data), h = rand({8}, data);
  Tensor loss = mean(square(net.forward(z, t, h) - z));
  opt.zero_grad();
  loss.backward();
  opt.step();
  ema.update(step);
  return loss.item();
}

void require_bit_equal(const NamedTensors& a, const NamedTensors& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    REQUIRE(a[i].first == b[i].first);
    REQUIRE(a[i].second.shape() == b[i].second.shape());
    REQUIRE(max_abs_diff(a[i].second, b[i].second) == 0.0);
  }
}

NamedTensors snapshot(const NamedTensors& ts) {
  NamedTensors out;
  for (const auto& [n, t] : ts) out.emplace_back(n, t.detach().clone());
  return out;
}

}  // namespace

TEST_CASE("checkpoint: round trip restores everything and training continues identically", "[checkpoint]") {
  fs::path dir = temp_dir();
  std::string path = (dir / "run.safetensors").string();
  Generator init(1), data(2);
  MLPVelocity net(small_config(), init);
  AdamW opt(net.named_parameters(), {.lr = 1e-2});
  Ema ema(net.named_parameters(), {.decay = 0.9});
  for (int64_t s = 1; s <= 3; ++s) train_step(net, opt, ema, data, s);
  CheckpointInfo saved_info;
  saved_info.step = 3;
  saved_info.config = "[train]\nsteps = 6\n";
  save_checkpoint(path, {&net, &opt, &ema, {{"data", &data}}}, saved_info);
  // Continue the original run for three more steps.
  std::vector<double> losses;
  for (int64_t s = 4; s <= 6; ++s) losses.push_back(train_step(net, opt, ema, data, s));

  Generator init2(99), data2(98);
  MLPVelocity net2(small_config(), init2);
  AdamW opt2(net2.named_parameters(), {.lr = 1e-2});
  Ema ema2(net2.named_parameters(), {.decay = 0.9});
  CheckpointInfo info = load_checkpoint(path, {&net2, &opt2, &ema2, {{"data", &data2}}});
  REQUIRE(info.step == 3);
  REQUIRE(info.config == "[train]\nsteps = 6\n");
  std::vector<double> resumed;
  for (int64_t s = 4; s <= 6; ++s) resumed.push_back(train_step(net2, opt2, ema2, data2, s));
  REQUIRE(resumed == losses);  // bit for bit
  require_bit_equal(net2.state_dict(), net.state_dict());
  require_bit_equal(ema2.state(), ema.state());
  require_bit_equal(opt2.state(), opt.state());

  // Evaluation weights: EMA by default, model weights on request; both load as the model.
  NamedTensors w = checkpoint_weights(path);
  MLPVelocity eval_net(small_config(), init2);
  eval_net.load_state_dict(w);
  NamedTensors mw = checkpoint_weights(path, false);
  eval_net.load_state_dict(mw);
  // The file is plain safetensors with the documented names.
  SafetensorsHeader header = inspect_safetensors(path);
  REQUIRE(header.metadata.at("format") == "pt");
  REQUIRE(header.metadata.at("dualflow.step") == "3");
  bool has_ema = false, has_optim = false, has_rng = false;
  for (const auto& e : header.entries) {
    has_ema |= e.name.rfind("ema.", 0) == 0;
    has_optim |= e.name.rfind("optim.exp_avg.", 0) == 0;
    has_rng |= e.name == "rng.data";
  }
  REQUIRE((has_ema && has_optim && has_rng));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: refusals name the problem and change nothing", "[checkpoint]") {
  fs::path dir = temp_dir();
  std::string path = (dir / "run.safetensors").string();
  Generator init(3), data(4);
  MLPVelocity net(small_config(), init);
  AdamW opt(net.named_parameters());
  Ema ema(net.named_parameters());
  train_step(net, opt, ema, data, 1);
  CheckpointInfo saved_info;
  saved_info.step = 1;
  save_checkpoint(path, {&net, &opt, nullptr, {}}, saved_info);

  Generator other(5);
  SECTION("a model of another shape") {
    MLPVelocity wide(small_config(32), other);
    AdamW wide_opt(wide.named_parameters());
    NamedTensors before = snapshot(wide.state_dict());
    REQUIRE_THROWS_WITH(load_checkpoint(path, {&wide, &wide_opt, nullptr, {}}),
                        Catch::Contains("model state does not fit") && Catch::Contains("[32"));
    require_bit_equal(wide.state_dict(), before);
  }
  SECTION("a requested part that the file does not hold") {
    MLPVelocity same(small_config(), other);
    AdamW same_opt(same.named_parameters());
    Ema same_ema(same.named_parameters());
    NamedTensors before = snapshot(same.state_dict());
    REQUIRE_THROWS_WITH(load_checkpoint(path, {&same, &same_opt, &same_ema, {}}),
                        Catch::Contains("holds no EMA state"));
    require_bit_equal(same.state_dict(), before);
  }
  SECTION("an optimizer of another kind: the model is put back") {
    MLPVelocity same(small_config(), other);
    SGD sgd(same.named_parameters(), {.lr = 0.1, .momentum = 0.9});
    NamedTensors before = snapshot(same.state_dict());
    REQUIRE_THROWS_WITH(load_checkpoint(path, {&same, &sgd, nullptr, {}}),
                        Catch::Contains("optimizer state does not fit"));
    require_bit_equal(same.state_dict(), before);
  }
  SECTION("a truncated file") {
    std::string cut = (dir / "cut.safetensors").string();
    fs::copy_file(path, cut);
    fs::resize_file(cut, fs::file_size(cut) - 5);
    MLPVelocity same(small_config(), other);
    NamedTensors before = snapshot(same.state_dict());
    REQUIRE_THROWS(load_checkpoint(cut, {&same, nullptr, nullptr, {}}));
    require_bit_equal(same.state_dict(), before);
  }
  SECTION("a safetensors file that is not a checkpoint") {
    std::string plain = (dir / "plain.safetensors").string();
    save_safetensors(plain, net.state_dict());
    REQUIRE_THROWS_WITH(checkpoint_weights(plain), Catch::Contains("not a dualflow checkpoint"));
  }
  fs::remove_all(dir);
}

}  // namespace dualflow::testing
