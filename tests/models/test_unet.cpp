// The U-Net: structure and names, zero output at initialisation, size and input checks, the
// docs/BENCHMARKS.md configuration, and its VJP / JVP against finite differences in f64.
#include <catch2/catch.hpp>

#include "models/unet.h"
#include "tests/models/model_check.h"
#include "tests/models/tiny_networks.h"

namespace dualflow::testing {
namespace {

bool has_name(const NamedTensors& ts, const std::string& name) {
  for (const auto& [n, _] : ts)
    if (n == name) return true;
  return false;
}

}  // namespace

TEST_CASE("UNet: structure, names and zero output at initialisation", "[models]") {
  Generator gen(3);
  UNet net(tiny_unet_config(), gen);
  NamedTensors params = net.named_parameters();
  for (const char* name :
       {"t_embedder.mlp.0.weight", "h_embedder.mlp.2.bias", "y_embedder.embedding_table.weight", "input_conv.weight",
        "down.0.res.conv1.weight", "down.1.res.skip.weight", "down.1.attn.attn.qkv.weight", "downsample.0.conv.weight",
        "middle_in.attn.norm.weight", "middle_out.emb_proj.weight", "up.0.res.skip.weight", "up.3.res.conv2.bias",
        "upsample.0.conv.weight", "output_norm.weight", "output_conv.weight"}) {
    INFO(name);
    REQUIRE(has_name(params, name));
  }
  // 1 + (blocks + downsample per level) skips: 4 down stages + middle, 2 levels x 2 up stages.
  REQUIRE(net.down_stages->size() == 2);
  REQUIRE(net.up_stages->size() == 4);
  REQUIRE(net.y_embedder->embedding_table->weight.shape() == Shape{4, 16});
  Tensor x = randn({2, 1, 8, 8}, gen), t = rand({2}, gen), h = rand({2}, gen);
  Tensor y = net.forward(x, t, h, from_vector(std::vector<int64_t>{0, 3}, {2}));
  REQUIRE(y.shape() == x.shape());
  REQUIRE(max_abs(y) == 0.0);  // zero-initialised output conv
}

TEST_CASE("UNet: the fmnist-unet-cfm configuration maps 28x28 back to 28x28", "[models]") {
  Generator gen(4);
  UNetConfig c;  // defaults are docs/BENCHMARKS.md's: base 32, mult [1, 2, 2], 2 blocks, attention at 7
  c.num_classes = 10;
  UNet net(c, gen);
  REQUIRE(net.config().embedding_dim == 128);
  // every res block's residual path and the output layer start at zero; make the output non-trivial
  {
    NoGradGuard ng;
    fill_(net.output_conv->weight, 0.01);
  }
  Tensor x = randn({2, 1, 28, 28}, gen);
  Tensor y = net.forward(x, rand({2}, gen), Tensor(), from_vector(std::vector<int64_t>{1, 10}, {2}));
  REQUIRE(y.shape() == Shape{2, 1, 28, 28});
  REQUIRE(max_abs(y) > 0);
  // attention at 7x7 only: the 2 down stages of level 2, the middle and the 3 up stages of level 2
  int attention_blocks = 0;
  for (const auto& [name, m] : net.named_modules())
    if (m->type_name() == "AttentionBlock") ++attention_blocks;
  REQUIRE(attention_blocks == 2 + 1 + 3);
  INFO("parameters: " << net.num_parameters());
  REQUIRE(net.num_parameters() > 1'000'000);
  REQUIRE(net.num_parameters() < 3'000'000);
}

TEST_CASE("UNet: configuration and input checks name what was expected and given", "[models]") {
  Generator gen(5);
  UNetConfig odd = tiny_unet_config();
  odd.image_size = 6;
  odd.channel_mult = {1, 1, 1};
  REQUIRE_THROWS_WITH(UNet(odd, gen), Catch::Contains("cannot be halved"));
  UNet net(tiny_unet_config(), gen);
  Tensor t = rand({2}, gen), h = rand({2}, gen);
  REQUIRE_THROWS_WITH(net.forward(zeros({2, 3, 8, 8}), t, h), Catch::Contains("input channels expected 1, got 3"));
  REQUIRE_THROWS_WITH(net.forward(zeros({2, 1, 6, 6}), t, h), Catch::Contains("image size expected 8x8, got 6x6"));
  REQUIRE_THROWS_WITH(net.forward(zeros({2, 1, 8, 8}), t), Catch::Contains("h expected [2]"));
  REQUIRE_THROWS_WITH(net.forward(zeros({2, 1, 8, 8}), rand({3}, gen), h), Catch::Contains("t expected [2]"));
}

TEST_CASE("UNet: labels outside the classes are refused; the null class is a label", "[models]") {
  Generator gen(6);
  UNet net(tiny_unet_config(), gen);  // 3 classes; label 3 is the null class of guidance
  Tensor x = zeros({2, 1, 8, 8}), t = rand({2}, gen), h = rand({2}, gen);
  auto labels = [](std::vector<int64_t> v) { return from_vector(v, {2}); };
  REQUIRE_THROWS_WITH(net.forward(x, t, h, labels({0, 4})),
                      Catch::Contains("LabelEmbedding(classes=3 + null") && Catch::Contains("index 4 is out of range"));
  REQUIRE_THROWS_WITH(net.forward(x, t, h, labels({-1, 0})),
                      Catch::Contains("LabelEmbedding(classes=3 + null") && Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(net.forward(x, t, h, from_vector(std::vector<int64_t>{0, 1, 2}, {3})),
                      Catch::Contains("labels expected [2], got [3]"));
  REQUIRE_THROWS_WITH(net.forward(x, t, h, zeros({2})), Catch::Contains("f32"));
  REQUIRE_NOTHROW(net.forward(x, t, h, labels({2, 3})));
  UNetConfig plain = tiny_unet_config();
  plain.num_classes = 0;
  UNet unconditional(plain, gen);
  REQUIRE_THROWS_WITH(unconditional.forward(x, t, h, labels({0, 1})), Catch::Contains("built without classes"));
}

TEST_CASE("UNet: VJP and JVP (inputs and parameters) against finite differences in f64", "[models]") {
  Generator gen(6);
  UNet net(tiny_unet_config(), gen);
  net.to(DType::f64);
  {
    // zero-initialised layers would make most derivatives vanish and the check vacuous
    NoGradGuard ng;
    for (const auto& [n, p] : net.named_parameters()) copy_(p, p + normal(p.shape(), 0.0, 0.2, gen, p.options()));
  }
  Tensor x = uniform_f64({2, 1, 8, 8}, -1, 1, 7), t = uniform_f64({2}, 0.1, 0.9, 8), h = uniform_f64({2}, 0, 0.5, 9);
  Tensor labels = from_vector(std::vector<int64_t>{2, 3}, {2});
  DerivativeCheck opt;
  opt.entries_per_tensor = 2;
  check_module_derivatives(
      net, {{"x", x}, {"t", t}, {"h", h}},
      [&](const std::vector<Tensor>& in) { return net.forward(in[0], in[1], in[2], labels); }, opt);
}

}  // namespace dualflow::testing
