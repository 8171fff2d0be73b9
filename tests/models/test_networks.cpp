// The networks end to end: MLPVelocity and DiT structure, initialisation and input checks;
// VJP and JVP of the whole network (inputs and parameters) against finite differences in
// f64 with the adjoint identity; DiT preset parameter counts against the published figures.
#include <cmath>

#include "models/models.h"
#include "tests/models/model_check.h"
#include "tests/models/tiny_networks.h"

namespace dualflow::testing {
namespace {

std::vector<std::string> names_of(const NamedTensors& ts) {
  std::vector<std::string> out;
  for (const auto& [n, _] : ts) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("MLPVelocity: the toy2d network of docs/BENCHMARKS.md", "[models]") {
  Generator gen(0);
  MLPVelocity net(MLPVelocityConfig{}, gen);
  REQUIRE(net.input_features() == 130);
  REQUIRE(names_of(net.named_parameters()) ==
          std::vector<std::string>{"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight",
                                   "net.4.bias", "net.6.weight", "net.6.bias", "net.8.weight", "net.8.bias"});
  REQUIRE(net.net->linears()[0]->weight.shape() == Shape{256, 130});
  REQUIRE(net.net->linears()[4]->weight.shape() == Shape{2, 256});
  REQUIRE(net.num_parameters() == 130 * 256 + 256 + 3 * (256 * 256 + 256) + 256 * 2 + 2);
  // PyTorch default init of the first layer: U(-1/sqrt(130), 1/sqrt(130)).
  REQUIRE(max_abs(net.net->linears()[0]->weight) <= 1 / std::sqrt(130.0));

  Tensor z = uniform(Shape{6, 2}, -2, 2, gen), t = uniform(Shape{6}, 0, 1, gen), r = t * 0.5;
  Tensor u = net.forward(z, t, t - r);
  REQUIRE(u.shape() == Shape{6, 2});
  // The input is [z, emb(t), emb(h)].
  SinusoidalEmbedding emb;
  Tensor features = cat({z, emb.forward(t), emb.forward(t - r)}, 1);
  require_close(u, net.net->forward(features), 1e-6, 1e-6, "MLPVelocity = MLP([z, emb(t), emb(t - r)])");
  REQUIRE(max_abs_diff(net.forward(z, t.unsqueeze(1), (t - r).unsqueeze(1)), u) == 0.0);

  REQUIRE_THROWS_WITH(net.forward(zeros(Shape{6, 3}), t, t),
                      Catch::Contains("MLPVelocity(d=2, width=256, depth=4, emb=64, h): z expected [N, 2], got [6,3]"));
  REQUIRE_THROWS_WITH(net.forward(z, t), Catch::Contains("h expected [6] or [6, 1], got undefined"));
  REQUIRE_THROWS_WITH(net.forward(z, t, zeros(Shape{5})), Catch::Contains("h expected [6] or [6, 1], got [5]"));
  REQUIRE_THROWS_WITH(net.forward(z, t, t, zeros(Shape{6}, DType::i64)), Catch::Contains("built without classes"));

  MLPVelocityConfig fm;
  fm.use_h = false;
  fm.width = 32;
  fm.depth = 2;
  MLPVelocity plain(fm, gen);
  REQUIRE(plain.input_features() == 66);
  REQUIRE(plain.forward(z, t).shape() == Shape{6, 2});
  REQUIRE_THROWS_WITH(plain.forward(z, t, t), Catch::Contains("built without the h input"));
}

TEST_CASE("MLPVelocity: class conditioning adds a label embedding to the input features", "[models]") {
  Generator gen(0);
  MLPVelocityConfig c;
  c.width = 32;
  c.num_classes = 4;
  MLPVelocity net(c, gen);
  REQUIRE(net.named_parameters().back().first == "label_embedding.embedding_table.weight");
  REQUIRE(net.label_embedding->embedding_table->weight.shape() == Shape{5, 130});
  Tensor z = uniform(Shape{3, 2}, -2, 2, gen), t = uniform(Shape{3}, 0, 1, gen);
  Tensor labels = from_vector(std::vector<int64_t>{0, 3, 4}, Shape{3});
  SinusoidalEmbedding emb;
  Tensor features = cat({z, emb.forward(t), emb.forward(t)}, 1) + net.label_embedding->forward(labels);
  require_close(net.forward(z, t, t, labels), net.net->forward(features), 1e-6, 1e-6, "features + label embedding");
  // No labels: the null class.
  require_close(net.forward(z, t, t), net.forward(z, t, t, full(Shape{3}, 4.0, DType::i64)), 0, 0,
                "unlabelled = null class");
  REQUIRE_THROWS_WITH(net.forward(z, t, t, from_vector(std::vector<int64_t>{0, 5, 1}, Shape{3})),
                      Catch::Contains("out of range"));
}

TEST_CASE("MLPVelocity: VJP and JVP (inputs and parameters) against finite differences in f64", "[models]") {
  Generator gen(1);
  MLPVelocityConfig c;
  c.num_classes = 3;
  MLPVelocity net(c, gen);
  net.to(DType::f64);
  Tensor z = uniform_f64(Shape{3, 2}, -2, 2, 2), t = uniform_f64(Shape{3}, 0.1, 0.9, 3),
         h = uniform_f64(Shape{3}, 0, 0.5, 4);
  Tensor labels = from_vector(std::vector<int64_t>{0, 2, 3}, Shape{3});
  check_module_derivatives(net, {{"z", z}, {"t", t}, {"h", h}},
                           [&](const std::vector<Tensor>& in) { return net.forward(in[0], in[1], in[2], labels); });
}

TEST_CASE("DiT: names like the reference, adaLN-Zero initialisation, zero output at init", "[models]") {
  Generator gen(0);
  DiTConfig c = tiny_dit_config();
  DiT dit(c, gen);
  std::vector<std::string> names = names_of(dit.state_dict());
  // The model's own buffer first, then its children, like the reference's state_dict.
  const std::vector<std::string> head{"pos_embed",
                                      "x_embedder.proj.weight",
                                      "x_embedder.proj.bias",
                                      "t_embedder.mlp.0.weight",
                                      "t_embedder.mlp.0.bias",
                                      "t_embedder.mlp.2.weight",
                                      "t_embedder.mlp.2.bias",
                                      "h_embedder.mlp.0.weight",
                                      "h_embedder.mlp.0.bias",
                                      "h_embedder.mlp.2.weight",
                                      "h_embedder.mlp.2.bias",
                                      "y_embedder.embedding_table.weight",
                                      "blocks.0.attn.qkv.weight",
                                      "blocks.0.attn.qkv.bias",
                                      "blocks.0.attn.proj.weight",
                                      "blocks.0.attn.proj.bias",
                                      "blocks.0.mlp.fc1.weight",
                                      "blocks.0.mlp.fc1.bias",
                                      "blocks.0.mlp.fc2.weight",
                                      "blocks.0.mlp.fc2.bias",
                                      "blocks.0.adaLN_modulation.1.weight",
                                      "blocks.0.adaLN_modulation.1.bias"};
  REQUIRE(std::vector<std::string>(names.begin(), names.begin() + long(head.size())) == head);
  const std::vector<std::string> tail{"final_layer.linear.weight", "final_layer.linear.bias",
                                      "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias"};
  REQUIRE(std::vector<std::string>(names.end() - long(tail.size()), names.end()) == tail);
  REQUIRE(names.size() == head.size() + 10 + tail.size());
  REQUIRE(dit.x_embedder->proj->weight.shape() == Shape{16, 1, 4, 4});
  REQUIRE(dit.pos_embed.shape() == Shape{1, 4, 16});
  REQUIRE_FALSE(dit.pos_embed.requires_grad());
  REQUIRE(dit.num_parameters() == dit_parameter_count(c));

  for (const auto& block : *dit.blocks) {
    REQUIRE(max_abs(block->modulation->weight) == 0.0);
    REQUIRE(max_abs(block->modulation->bias) == 0.0);
    // xavier-uniform with zero bias: bound sqrt(6 / (16 + 48)).
    REQUIRE(max_abs(block->attn->qkv->weight) <= std::sqrt(6.0 / 64.0));
    REQUIRE(max_abs(block->attn->qkv->weight) > 0.8 * std::sqrt(6.0 / 64.0));
    REQUIRE(max_abs(block->attn->qkv->bias) == 0.0);
    REQUIRE(max_abs(block->mlp->fc2->bias) == 0.0);
  }
  REQUIRE(max_abs(dit.final_layer->modulation->weight) == 0.0);
  REQUIRE(max_abs(dit.final_layer->linear->weight) == 0.0);
  REQUIRE(max_abs(dit.final_layer->linear->bias) == 0.0);
  // Patch projection: xavier on the flattened [16, 16] weight, bound sqrt(6 / 32).
  REQUIRE(max_abs(dit.x_embedder->proj->weight) <= std::sqrt(6.0 / 32.0));
  REQUIRE(max_abs(dit.x_embedder->proj->bias) == 0.0);
  REQUIRE(max_abs(dit.t_embedder->linear1->bias) == 0.0);

  // Positional embedding: token (row 1, column 0) = index 2; first half embeds the column.
  auto pe = dit.pos_embed.to_vector<double>();
  REQUIRE(std::abs(pe[2 * 16 + 0] - std::sin(0.0)) < 1e-7);
  REQUIRE(std::abs(pe[2 * 16 + 4] - std::cos(0.0)) < 1e-7);
  REQUIRE(std::abs(pe[2 * 16 + 8] - std::sin(1.0)) < 1e-7);
  REQUIRE(std::abs(pe[2 * 16 + 9] - std::sin(0.1)) < 1e-7);  // omega_1 = 10000^(-1/4)
  REQUIRE(std::abs(pe[2 * 16 + 12] - std::cos(1.0)) < 1e-7);

  Tensor x = uniform(Shape{2, 1, 8, 8}, -1, 1, gen), t = uniform(Shape{2}, 0, 1, gen);
  Tensor y = dit.forward(x, t, t * 0.5, from_vector(std::vector<int64_t>{0, 3}, Shape{2}));
  REQUIRE(y.shape() == Shape{2, 1, 8, 8});
  REQUIRE(max_abs(y) == 0.0);  // adaLN-Zero: the output starts at zero

  // Bigger statistics on a wider model: embedding table and timestep MLP ~ N(0, 0.02).
  DiTConfig wide = c;
  wide.hidden_size = 128;
  wide.num_heads = 4;
  wide.depth = 1;
  wide.num_classes = 100;
  wide.frequency_dim = 64;
  DiT w(wide, gen);
  REQUIRE(std::abs(std::sqrt(var(w.y_embedder->embedding_table->weight).item()) - 0.02) < 0.001);
  REQUIRE(std::abs(std::sqrt(var(w.t_embedder->linear2->weight).item()) - 0.02) < 0.001);
}

TEST_CASE("Further scalar conditions: h [N, 1 + K] embeds each column on its own (DiT, U-Net, MLP)", "[models]") {
  // The conditioning of a network with K conditions is that of its embedders on contiguous
  // copies of h's columns (the network reads them as strided views), each column moves the
  // output, and a second head doubles the outputs.
  Generator gen(5);
  const int64_t n = 3, k = 3;
  const Tensor t = uniform_f64({n}, 0, 1, 1), h = uniform_f64({n, 1 + k}, 0, 1, 2);
  const Tensor labels = from_vector(std::vector<int64_t>{0, 2, 3}, Shape{n});
  auto moves_with_each_column = [&](VelocityNetwork& net, const Tensor& x) {
    NoGradGuard ng;
    const Tensor base = net.forward(x, t, h, labels);
    for (int64_t c = 0; c <= k; ++c) {
      Tensor shifted = h.clone();
      copy_(shifted.select(1, c), h.select(1, c) + 0.3);
      INFO(net.describe() << ": column " << c);
      REQUIRE(max_abs_diff(net.forward(x, t, shifted, labels), base) > 1e-6);
    }
    REQUIRE_THROWS_WITH(net.forward(x, t, h.narrow(1, 0, 3), labels), Catch::Contains("h expected [3, 4]"));
    REQUIRE_THROWS_WITH(net.forward(x, t, h.select(1, 0), labels), Catch::Contains("h expected [3, 4]"));
    return base;
  };
  SECTION("DiT") {
    DiTConfig c = tiny_dit_config();
    c.conditions = k;
    c.out_channels = 2;
    DiT dit(c, gen);
    dit.to(DType::f64);
    perturb_parameters(dit, 0.2, gen);
    REQUIRE(dit.num_parameters() == dit_parameter_count(c));
    REQUIRE(dit.condition_embedders.size() == size_t(k));
    const Tensor x = uniform_f64({n, 1, 8, 8}, -1, 1, 3);
    const Tensor out = moves_with_each_column(dit, x);
    REQUIRE(out.shape() == Shape({n, 2, 8, 8}));
    NoGradGuard ng;
    Tensor expected = dit.t_embedder->forward(t) + dit.h_embedder->forward(h.select(1, 0).contiguous()) +
                      dit.y_embedder->forward(labels);
    for (int64_t j = 0; j < k; ++j)
      expected = expected + dit.condition_embedders[size_t(j)]->forward(h.select(1, 1 + j).contiguous());
    std::vector<TimestepEmbedder*> conditions;
    for (const auto& e : dit.condition_embedders) conditions.push_back(e.get());
    const Tensor got = conditioning_embedding("DiT", n, t, h, labels, *dit.t_embedder, dit.h_embedder.get(),
                                              dit.y_embedder.get(), conditions);
    REQUIRE(max_abs_diff(got, expected) <= 1e-14);
  }
  SECTION("UNet") {
    UNetConfig c = tiny_unet_config();
    c.conditions = k;
    c.out_channels = 2;
    UNet unet(c, gen);
    unet.to(DType::f64);
    perturb_parameters(unet, 0.2, gen);  // the zero-initialised output conv would hide the conditions
    REQUIRE(moves_with_each_column(unet, uniform_f64({n, 1, 8, 8}, -1, 1, 4)).shape() == Shape({n, 2, 8, 8}));
  }
  SECTION("MLPVelocity") {
    MLPVelocityConfig c;
    c.width = 16;
    c.depth = 2;
    c.embedding_dim = 8;
    c.num_classes = 3;
    c.conditions = k;
    c.out_dim = 4;
    MLPVelocity mlp(c, gen);
    mlp.to(DType::f64);
    REQUIRE(mlp.input_features() == 2 + 8 * (2 + k));
    REQUIRE(moves_with_each_column(mlp, uniform_f64({n, 2}, -1, 1, 5)).shape() == Shape({n, 4}));
  }
}

TEST_CASE("DiT: patchify / unpatchify geometry", "[models]") {
  Generator gen(0);
  DiTConfig c = tiny_dit_config();
  c.in_channels = 2;
  c.out_channels = 2;
  c.num_classes = 0;
  c.use_h = false;
  DiT dit(c, gen);
  // The patch projection equals a conv with kernel = stride = 4: token (gi, gj) sees pixels
  // [4 gi, 4 gi + 4) x [4 gj, 4 gj + 4) of every channel.
  Tensor x = uniform(Shape{1, 2, 8, 8}, -1, 1, gen);
  Tensor tokens = dit.x_embedder->forward(x);
  REQUIRE(tokens.shape() == Shape{1, 4, 16});
  Tensor patch = x.select(0, 0).narrow(1, 4, 4).narrow(2, 0, 4);  // row block 1, column block 0 -> token 2
  Tensor expected = sum(dit.x_embedder->proj->weight * patch.unsqueeze(0), {1, 2, 3}) + dit.x_embedder->proj->bias;
  require_close(tokens.select(0, 0).select(0, 2), expected, 1e-5, 1e-6,
                "patch embedding = conv, kernel = stride = patch");
  // Unpatchify: final-linear output channel (p, q, c) of token (gi, gj) lands at pixel
  // (c, 4 gi + p, 4 gj + q). Probe it with a final layer that outputs one-hot features.
  {
    NoGradGuard ng;
    fill_(dit.final_layer->linear->weight, 0.0);
    Tensor b = zeros(Shape{32});
    b = b + one_hot(from_vector(std::vector<int64_t>{(1 * 4 + 2) * 2 + 1}, Shape{1}), 32)
                .reshape(Shape{32});  // p=1, q=2, c=1
    copy_(dit.final_layer->linear->bias, b);
  }
  Tensor y = dit.forward(x, uniform(Shape{1}, 0, 1, gen));
  auto v = y.to_vector<double>();
  // Every token writes its one-hot: pixel (c=1, 4 gi + 1, 4 gj + 2) is 1 for each (gi, gj).
  double total = 0;
  for (double e : v) total += e;
  REQUIRE(total == 4.0);
  for (int gi = 0; gi < 2; ++gi)
    for (int gj = 0; gj < 2; ++gj) REQUIRE(v[size_t(64 + (4 * gi + 1) * 8 + 4 * gj + 2)] == 1.0);
}

TEST_CASE("DiT: configuration and input checks name what was expected and given", "[models]") {
  Generator gen(0);
  DiTConfig c = tiny_dit_config();
  DiTConfig bad = c;
  bad.input_size = 10;
  REQUIRE_THROWS_WITH(DiT(bad, gen), Catch::Contains("image size 10 is not divisible by the patch size 4"));
  bad = c;
  bad.num_heads = 3;
  REQUIRE_THROWS_WITH(DiT(bad, gen), Catch::Contains("hidden size 16 is not divisible by 3 heads"));
  DiT dit(c, gen);
  Tensor t = zeros(Shape{2});
  REQUIRE_THROWS_WITH(dit.forward(zeros(Shape{2, 3, 8, 8}), t, t), Catch::Contains("input channels expected 1, got 3"));
  REQUIRE_THROWS_WITH(dit.forward(zeros(Shape{2, 1, 12, 12}), t, t),
                      Catch::Contains("image size expected 8x8, got 12x12"));
  REQUIRE_THROWS_WITH(dit.forward(zeros(Shape{2, 1, 8, 8}), t),
                      Catch::Contains("h expected [2] or [2, 1], got undefined"));
  REQUIRE_THROWS_WITH(dit.forward(zeros(Shape{2, 1, 8, 8}), t, t, from_vector(std::vector<int64_t>{0, 4}, Shape{2})),
                      Catch::Contains("out of range"));
  REQUIRE_NOTHROW(dit.forward(zeros(Shape{2, 1, 8, 8}), t, t));  // no labels: the null class
  REQUIRE(DiTConfig::preset("DiT-B/4").hidden_size == 768);
  REQUIRE(DiTConfig::preset("XL/8").patch_size == 8);
  REQUIRE_THROWS_WITH(DiTConfig::preset("M/2"), Catch::Contains("unknown preset 'M/2'"));
  REQUIRE_THROWS_WITH(DiTConfig::preset("S/3"), Catch::Contains("unknown preset 'S/3'"));
}

TEST_CASE("DiT: a network built for 28x28 refuses 32x32 images, and a patch must divide the image", "[models]") {
  Generator gen(1);
  DiTConfig c = tiny_dit_config();
  c.input_size = 28;  // Fashion-MNIST, patch 4: 7x7 tokens
  DiT dit(c, gen);
  Tensor t = zeros(Shape{2});
  REQUIRE_THROWS_WITH(dit.forward(zeros(Shape{2, 1, 32, 32}), t, t),
                      Catch::Contains("image size expected 28x28, got 32x32"));
  REQUIRE_THROWS_WITH(dit.forward(zeros(Shape{2, 1, 28, 32}), t, t), Catch::Contains("got 28x32"));
  REQUIRE(dit.forward(zeros(Shape{2, 1, 28, 28}), t, t).shape() == Shape{2, 1, 28, 28});
  c.patch_size = 8;
  REQUIRE_THROWS_WITH(DiT(c, gen), Catch::Contains("image size 28 is not divisible by the patch size 8"));
  DiTConfig s8 = DiTConfig::preset("S/8");
  s8.input_size = 28;
  REQUIRE_THROWS_WITH(DiT(s8, gen), Catch::Contains("image size 28 is not divisible by the patch size 8"));
}

TEST_CASE("DiT: VJP and JVP (inputs and parameters) against finite differences in f64", "[models]") {
  Generator gen(5);
  DiT dit(tiny_dit_config(), gen);
  dit.to(DType::f64);
  perturb_parameters(dit, 0.2, gen);
  Tensor x = uniform_f64(Shape{2, 1, 8, 8}, -1, 1, 6), t = uniform_f64(Shape{2}, 0.1, 0.9, 7),
         h = uniform_f64(Shape{2}, 0, 0.5, 8);
  Tensor labels = from_vector(std::vector<int64_t>{2, 3}, Shape{2});  // a class and the null class
  check_module_derivatives(dit, {{"x", x}, {"t", t}, {"h", h}},
                           [&](const std::vector<Tensor>& in) { return dit.forward(in[0], in[1], in[2], labels); });
}

TEST_CASE("DiT presets: parameter counts match the published figures", "[models]") {
  // The reference's totals count the fixed pos_embed as a (frozen) parameter; here it is a
  // buffer, so the comparison adds dit_pos_embed_size. Paper setting: 32x32x4 latents,
  // 1000 classes (+ null), learn_sigma (8 output channels), no h embedder.
  DiTConfig paper;
  paper.out_channels = 8;
  struct Published {
    const char* name;
    double millions;
  };
  for (Published p : {Published{"XL/2", 675}, Published{"L/2", 458}, Published{"B/2", 130}, Published{"S/2", 33}}) {
    DiTConfig c = DiTConfig::preset(p.name, paper);
    const int64_t total = dit_parameter_count(c) + dit_pos_embed_size(c);
    INFO(p.name << ": " << total);
    REQUIRE(std::abs(double(total) / 1e6 - p.millions) / p.millions < 0.01);
  }
  // The exact total of the reference DiT-XL/2.
  DiTConfig xl = DiTConfig::preset("XL/2", paper);
  REQUIRE(dit_parameter_count(xl) + dit_pos_embed_size(xl) == 675129632);

  // The count from the config equals the built model's: S/2 in the paper setting, and B/4
  // set up for MeanFlow on 28x28x1 with 10 classes (h embedder, no learn_sigma) at depth 1 to
  // keep the test fast (depth only multiplies the per-block term, checked at full depth by S/2).
  Generator gen(0);
  {
    DiTConfig s2 = DiTConfig::preset("S/2", paper);
    DiT built(s2, gen);
    REQUIRE(built.num_parameters() == dit_parameter_count(s2));
    REQUIRE(built.pos_embed.numel() == dit_pos_embed_size(s2));
  }
  {
    DiTConfig b4 = paper;
    b4.input_size = 28;
    b4.in_channels = 1;
    b4.out_channels = 0;
    b4.num_classes = 10;
    b4.use_h = true;
    b4 = DiTConfig::preset("B/4", b4);
    b4.depth = 1;
    DiT built(b4, gen);
    REQUIRE(built.num_parameters() == dit_parameter_count(b4));
  }
}

}  // namespace dualflow::testing

namespace dualflow::testing {

TEST_CASE("DiT and MLPVelocity on CUDA match the CPU: forward, gradients, dudt by jvp", "[models][cuda]") {
  if (!cuda_available()) return;  // run with --cuda-only "[cuda]", which reports a skip without a GPU
  const Device gpu = Device::cuda();
  auto compare = [&](Module& on_cpu, Module& on_gpu,
                     const std::function<Tensor(Module&, const std::vector<Tensor>&)>& f,
                     const std::vector<Tensor>& cpu_inputs, const std::string& what) {
    // The same weights on both devices: loading from CPU tensors into CUDA parameters.
    on_gpu.load_state_dict(on_cpu.state_dict());
    std::vector<Tensor> gpu_inputs;
    for (const Tensor& x : cpu_inputs) gpu_inputs.push_back(x.to(gpu));
    Tensor y_cpu = f(on_cpu, cpu_inputs), y_gpu = f(on_gpu, gpu_inputs);
    REQUIRE(y_gpu.device() == gpu);
    require_close(y_gpu.to(Device::cpu()), y_cpu, 1e-3, 1e-4, what + ": forward");
    Generator g(9);
    Tensor w = uniform(y_cpu.shape(), -1, 1, g);
    std::vector<Tensor> grads_cpu = grad({sum(y_cpu * w)}, on_cpu.parameters());
    std::vector<Tensor> grads_gpu = grad({sum(y_gpu * w.to(gpu))}, on_gpu.parameters());
    for (size_t i = 0; i < grads_cpu.size(); ++i)
      require_close(grads_gpu[i].to(Device::cpu()), grads_cpu[i], 1e-3, 1e-4 * (1 + max_abs(grads_cpu[i])),
                    what + ": gradient of " + on_cpu.named_parameters()[i].first);
    // A MeanFlow-style jvp: along (x / 2, 1, 0) in (x, t, h).
    auto dudt = [&](Module& m, const std::vector<Tensor>& in) {
      std::vector<Tensor> tangents{in[0] * 0.5, ones_like(in[1]), zeros_like(in[2])};
      return jvp([&](const std::vector<Tensor>& a) { return std::vector<Tensor>{f(m, a)}; }, in, tangents).tangents[0];
    };
    require_close(dudt(on_gpu, gpu_inputs).to(Device::cpu()), dudt(on_cpu, cpu_inputs), 1e-3, 1e-3, what + ": jvp");
  };

  Generator g1(0), g2(1);
  DiTConfig c = tiny_dit_config();
  DiT dit_cpu(c, g1), dit_gpu(c, g2);
  dit_gpu.to(gpu);
  REQUIRE(dit_gpu.pos_embed.device() == gpu);
  perturb_parameters(dit_cpu, 0.2, g1);
  Tensor labels = from_vector(std::vector<int64_t>{1, 3}, Shape{2});
  compare(
      dit_cpu, dit_gpu,
      [&](Module& m, const std::vector<Tensor>& in) {
        return static_cast<DiT&>(m).forward(in[0], in[1], in[2], labels.to(in[0].device()));
      },
      {uniform(Shape{2, 1, 8, 8}, -1, 1, g1), uniform(Shape{2}, 0, 1, g1), uniform(Shape{2}, 0, 0.5, g1)}, "DiT");

  MLPVelocityConfig mc;
  mc.num_classes = 3;
  MLPVelocity mlp_cpu(mc, g1), mlp_gpu(mc, g2);
  mlp_gpu.to(gpu);
  Tensor mlp_labels = from_vector(std::vector<int64_t>{0, 2, 3, 1}, Shape{4});
  compare(
      mlp_cpu, mlp_gpu,
      [&](Module& m, const std::vector<Tensor>& in) {
        return static_cast<MLPVelocity&>(m).forward(in[0], in[1], in[2], mlp_labels.to(in[0].device()));
      },
      {uniform(Shape{4, 2}, -2, 2, g1), uniform(Shape{4}, 0, 1, g1), uniform(Shape{4}, 0, 0.5, g1)}, "MLPVelocity");
}

}  // namespace dualflow::testing
