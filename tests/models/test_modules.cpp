// Module bookkeeping (names, order, modes, moves, state loading and its refusals,
// ScopedParameters) and the layers (initialisation, Dropout, embeddings, input checks).
#include <cmath>
#include <numbers>

#include "models/models.h"
#include "tests/engine/test_util.h"

namespace dualflow::testing {
namespace {

// A module exercising every kind of registration: a parameter, a buffer, a child, a list.
class Composite : public Module {
 public:
  explicit Composite(Generator& gen) : Module("Composite") {
    scale = register_parameter("scale", ones(Shape{3}));
    counter = register_buffer("counter", zeros(Shape{1}, DType::i64));
    stats = register_buffer("stats", zeros(Shape{3}));
    head = register_module("head", std::make_shared<Linear>(3, 4, gen));
    layers = register_module("layers", std::make_shared<ModuleList<Linear>>());
    layers->push_back(std::make_shared<Linear>(4, 4, gen));
    layers->push_back(std::make_shared<Linear>(4, 2, gen, /*bias=*/false));
    drop = register_module("drop", std::make_shared<Dropout>(0.5));
  }
  Tensor forward(const Tensor& x) {
    Tensor y = head->forward(x * scale);
    for (const auto& l : *layers) y = l->forward(tanh(y));
    return y;
  }
  Tensor scale, counter, stats;
  std::shared_ptr<Linear> head;
  std::shared_ptr<ModuleList<Linear>> layers;
  std::shared_ptr<Dropout> drop;
};

std::vector<std::string> names_of(const NamedTensors& ts) {
  std::vector<std::string> out;
  for (const auto& [n, _] : ts) out.push_back(n);
  return out;
}

NamedTensors snapshot(const Module& m) {
  NamedTensors out;
  for (const auto& [n, t] : m.state_dict()) out.emplace_back(n, t.clone());
  return out;
}

void require_state_equal(const Module& m, const NamedTensors& expected) {
  NamedTensors now = m.state_dict();
  REQUIRE(names_of(now) == names_of(expected));
  for (size_t i = 0; i < now.size(); ++i) {
    INFO(now[i].first);
    REQUIRE(max_abs_diff(now[i].second, expected[i].second) == 0.0);
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) { return e.what(); }
  return "(no error)";
}

}  // namespace

TEST_CASE("Module: dotted names in registration order; parameters are leaves, buffers are not", "[models]") {
  Generator gen(0);
  Composite m(gen);
  REQUIRE(names_of(m.named_parameters()) == std::vector<std::string>{"scale", "head.weight", "head.bias",
                                                                     "layers.0.weight", "layers.0.bias",
                                                                     "layers.1.weight"});
  REQUIRE(names_of(m.named_buffers()) == std::vector<std::string>{"counter", "stats"});
  // Each module's parameters, then its buffers, then its children, like PyTorch.
  REQUIRE(names_of(m.state_dict()) == std::vector<std::string>{"scale", "counter", "stats", "head.weight", "head.bias",
                                                               "layers.0.weight", "layers.0.bias", "layers.1.weight"});
  for (const auto& [n, p] : m.named_parameters()) {
    INFO(n);
    REQUIRE(p.requires_grad());
    REQUIRE(p.is_leaf());
  }
  for (const auto& [n, b] : m.named_buffers()) REQUIRE_FALSE(b.requires_grad());
  REQUIRE(m.num_parameters() == 3 + 12 + 4 + 16 + 4 + 8);
  // The handles a layer keeps are the registered ones.
  REQUIRE(m.find("layers.1.weight").same(m.layers->operator[](1)->weight));
  REQUIRE(error_of([&] { m.find("layers.2.weight"); }).find("no parameter or buffer named 'layers.2.weight'") !=
          std::string::npos);
  std::vector<std::string> modules;
  for (const auto& [n, _] : m.named_modules()) modules.push_back(n);
  REQUIRE(modules == std::vector<std::string>{"", "head", "layers", "layers.0", "layers.1", "drop"});
}

TEST_CASE("Module: train/eval reaches every child", "[models]") {
  Generator gen(0);
  Composite m(gen);
  REQUIRE(m.drop->is_training());
  m.eval();
  for (const auto& [n, mod] : m.named_modules()) {
    INFO(n);
    REQUIRE_FALSE(mod->is_training());
  }
  m.train();
  REQUIRE(m.layers->operator[](0)->is_training());
}

TEST_CASE("Module: registering a name twice or a dotted name is refused", "[models]") {
  struct Bad : Module {
    explicit Bad(int which) : Module("Bad") {
      register_parameter("w", zeros(Shape{2}));
      if (which == 0) register_buffer("w", zeros(Shape{2}));
      if (which == 1) register_parameter("a.b", zeros(Shape{2}));
      if (which == 2) register_parameter("i", zeros(Shape{2}, DType::i64));
    }
  };
  REQUIRE(error_of([] { Bad b(0); }).find("'w' is registered twice") != std::string::npos);
  REQUIRE(error_of([] { Bad b(1); }).find("free of '.'") != std::string::npos);
  REQUIRE(error_of([] { Bad b(2); }).find("must be floating") != std::string::npos);
}

TEST_CASE("load_state_dict: round trip reproduces the outputs", "[models]") {
  Generator g1(1), g2(2);
  Composite a(g1), b(g2);
  Tensor x = uniform(Shape{5, 3}, -1, 1, g1);
  REQUIRE(max_abs_diff(a.forward(x), b.forward(x)) > 1e-3);
  b.load_state_dict(a.state_dict());
  REQUIRE(max_abs_diff(a.forward(x), b.forward(x)) == 0.0);
  // The copy is by value: later changes to a do not reach b.
  {
    NoGradGuard ng;
    fill_(a.head->weight, 0.0);
  }
  REQUIRE(max_abs_diff(a.forward(x), b.forward(x)) > 1e-3);
  // Parameters stay the same leaf handles.
  REQUIRE(b.head->weight.requires_grad());
  REQUIRE(b.find("head.weight").same(b.head->weight));
}

TEST_CASE("load_state_dict: every refusal names the problem and leaves the module untouched", "[models]") {
  Generator g1(1), g2(2);
  Composite source(g1), target(g2);
  const NamedTensors before = snapshot(target);
  NamedTensors good = source.state_dict();

  SECTION("missing name") {
    NamedTensors s(good.begin() + 1, good.end());  // drops "scale"
    std::string e = error_of([&] { target.load_state_dict(s); });
    REQUIRE(e.find("nothing was copied") != std::string::npos);
    REQUIRE(e.find("missing: [scale]") != std::string::npos);
    require_state_equal(target, before);
    // Not strict: the rest is loaded, the missing one kept.
    target.load_state_dict(s, /*strict=*/false);
    REQUIRE(max_abs_diff(target.head->weight, source.head->weight) == 0.0);
    REQUIRE(max_abs_diff(target.scale, before[0].second) == 0.0);
  }
  SECTION("unexpected name") {
    NamedTensors s = good;
    s.emplace_back("layers.2.weight", zeros(Shape{2, 2}));
    std::string e = error_of([&] { target.load_state_dict(s); });
    REQUIRE(e.find("unexpected: [layers.2.weight]") != std::string::npos);
    require_state_equal(target, before);
    target.load_state_dict(s, /*strict=*/false);
    REQUIRE(max_abs_diff(target.head->weight, source.head->weight) == 0.0);
  }
  SECTION("shape mismatch, even when not strict") {
    NamedTensors s = good;
    for (auto& [n, t] : s)
      if (n == "layers.0.weight") t = zeros(Shape{4, 5});
    for (bool strict : {true, false}) {
      std::string e = error_of([&] { target.load_state_dict(s, strict); });
      REQUIRE(e.find("layers.0.weight: shape expected [4,4], given [4,5]") != std::string::npos);
      require_state_equal(target, before);
    }
  }
  SECTION("dtype mismatch") {
    NamedTensors s = good;
    for (auto& [n, t] : s)
      if (n == "head.bias") t = t.to(DType::f64);
    std::string e = error_of([&] { target.load_state_dict(s); });
    REQUIRE(e.find("head.bias: dtype expected f32, given f64") != std::string::npos);
    require_state_equal(target, before);
  }
  SECTION("several problems are listed together") {
    NamedTensors s(good.begin() + 1, good.end());
    s.emplace_back("extra", zeros(Shape{1}));
    for (auto& [n, t] : s)
      if (n == "stats") t = zeros(Shape{4});
    std::string e = error_of([&] { target.load_state_dict(s); });
    REQUIRE(e.find("missing: [scale]") != std::string::npos);
    REQUIRE(e.find("unexpected: [extra]") != std::string::npos);
    REQUIRE(e.find("stats: shape expected [3], given [4]") != std::string::npos);
    require_state_equal(target, before);
  }
  SECTION("a name given twice") {
    NamedTensors s = good;
    s.push_back(good[3]);
    std::string e = error_of([&] { target.load_state_dict(s); });
    REQUIRE(e.find("names given twice: [head.weight]") != std::string::npos);
    require_state_equal(target, before);
  }
}

TEST_CASE("Module::to(DType): converts in place, parameters stay leaves that require grad", "[models]") {
  Generator gen(3);
  Composite m(gen);
  Tensor x32 = uniform(Shape{4, 3}, -1, 1, gen);
  Tensor y32 = m.forward(x32);
  Tensor held = m.head->weight;  // a handle kept elsewhere (an optimizer)
  sum(y32).backward();
  REQUIRE(held.grad().defined());
  m.to(DType::f64);
  for (const auto& [n, p] : m.named_parameters()) {
    INFO(n);
    REQUIRE(p.dtype() == DType::f64);
    REQUIRE(p.requires_grad());
    REQUIRE(p.is_leaf());
    REQUIRE_FALSE(p.grad().defined());  // the old gradient had the old dtype
  }
  REQUIRE(held.dtype() == DType::f64);
  REQUIRE(m.stats.dtype() == DType::f64);
  REQUIRE(m.counter.dtype() == DType::i64);  // only floating tensors convert
  Tensor y64 = m.forward(x32.to(DType::f64));
  REQUIRE(y64.dtype() == DType::f64);
  require_close(y64, y32.to(DType::f64).detach(), 1e-6, 1e-6, "f64 model reproduces the f32 outputs");
  sum(y64).backward();
  REQUIRE(held.grad().dtype() == DType::f64);
  m.to(Device::cpu());  // same device: nothing changes
  REQUIRE(held.dtype() == DType::f64);
}

TEST_CASE("ScopedParameters: the module reads the given tensors in the scope and its own after", "[models]") {
  Generator g1(1), g2(2);
  Composite a(g1), b(g2);
  Tensor x = uniform(Shape{5, 3}, -1, 1, g1);
  Tensor ya = a.forward(x), yb = b.forward(x);
  {
    ScopedParameters scope(a, b.named_parameters());
    REQUIRE(max_abs_diff(a.forward(x), yb) == 0.0);
  }
  REQUIRE(max_abs_diff(a.forward(x), ya) == 0.0);
  REQUIRE(a.head->weight.requires_grad());
  REQUIRE(error_of([&] {
            ScopedParameters s(a, {{"head.weight", zeros(Shape{4, 4})}});
          }).find("'head.weight' expects f32 [4,3]") != std::string::npos);
  REQUIRE(error_of([&] {
            ScopedParameters s(a, {{"nope", zeros(Shape{1})}});
          }).find("no parameter named 'nope'") != std::string::npos);
}

TEST_CASE("Linear: PyTorch default init bounds, shapes and input check", "[models]") {
  Generator gen(7);
  Linear lin(100, 300, gen);
  REQUIRE(lin.weight.shape() == Shape{300, 100});
  const double bound = 0.1;
  REQUIRE(max_abs(lin.weight) <= bound);
  REQUIRE(max_abs(lin.weight) > 0.99 * bound);  // fills the interval
  REQUIRE(std::abs(mean(lin.weight).item()) < 0.005);
  REQUIRE(std::abs(var(lin.weight).item() - bound * bound / 3) < 0.1 * bound * bound / 3);
  REQUIRE(max_abs(lin.bias) <= bound);
  REQUIRE(max_abs(lin.bias) > 0.9 * bound);
  Linear small(3, 4, gen);
  REQUIRE(error_of([&] {
            small.forward(zeros(Shape{2, 5}));
          }) == "Linear(in=3, out=4): input last dim expected 3, got 5 (input shape [2,5])");
  // Any leading dims.
  REQUIRE(small.forward(zeros(Shape{2, 7, 3})).shape() == Shape{2, 7, 4});
  Tensor x = uniform(Shape{2, 3}, -1, 1, gen);
  require_close(small.forward(x), matmul(x, small.weight.t()) + small.bias, 1e-6, 1e-7, "y = x W^T + b");
  // Reproducible from the seed.
  Generator ga(5), gb(5);
  Linear la(8, 8, ga), lb(8, 8, gb);
  REQUIRE(max_abs_diff(la.weight, lb.weight) == 0.0);
}

TEST_CASE("MLP: Sequential numbering and activation names", "[models]") {
  Generator gen(0);
  MLP mlp({3, 8, 8, 2}, "gelu", gen);
  REQUIRE(names_of(mlp.named_parameters()) ==
          std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"});
  REQUIRE(mlp.linears().size() == 3);
  Tensor x = uniform(Shape{4, 3}, -1, 1, gen);
  const auto& l = mlp.linears();
  Tensor expected = l[2]->forward(gelu(l[1]->forward(gelu(l[0]->forward(x)))));
  require_close(mlp.forward(x), expected, 1e-6, 1e-7, "MLP = Linear, GELU, Linear, GELU, Linear");
  for (const char* name : {"silu", "relu", "tanh", "gelu_tanh"}) REQUIRE_NOTHROW(MLP({2, 2}, name, gen));
  std::string e = error_of([&] { MLP bad({2, 4, 2}, "swish", gen); });
  REQUIRE(e.find("unknown name 'swish'") != std::string::npos);
  REQUIRE(e.find("silu, gelu") != std::string::npos);
  REQUIRE(error_of([&] {
            mlp.forward(zeros(Shape{4, 5}));
          }).find("MLP(widths=[3,8,8,2], gelu): input last dim expected 3") != std::string::npos);
  // The first layer over parts (linear_parts): the values of the concatenated input.
  REQUIRE(max_abs_diff(mlp.forward_parts({x.narrow(1, 0, 1), x.narrow(1, 1, 2)}), mlp.forward(x)) == 0.0);
  REQUIRE(error_of([&] {
            mlp.forward_parts({zeros(Shape{4, 1}), zeros(Shape{4, 1})});
          }) == "Linear(in=3, out=8): the input parts' last dims expected to sum to 3, got 2 (parts [4,1], [4,1])");
}

TEST_CASE("Dropout: inverted scaling in training, identity in eval, reproducible from its seed", "[models]") {
  Tensor x = full(Shape{200, 100}, 2.0);
  Dropout d(0.3, 11);
  Tensor y = d.forward(x);
  auto v = y.to_vector<double>();
  size_t zeros_seen = 0;
  for (double e : v) {
    if (e == 0.0) ++zeros_seen;
    else REQUIRE(std::abs(e - 2.0 / 0.7) < 1e-6);
  }
  REQUIRE(std::abs(double(zeros_seen) / double(v.size()) - 0.3) < 0.02);
  REQUIRE(std::abs(mean(y).item() - 2.0) < 0.05);  // unbiased
  Dropout d2(0.3, 11);
  REQUIRE(max_abs_diff(d2.forward(x), y) == 0.0);
  REQUIRE(max_abs_diff(d.forward(x), y) > 0);  // the generator moved on
  d.eval();
  REQUIRE(d.forward(x).same(x));
  d.train();
  Dropout none(0.0);
  REQUIRE(none.forward(x).same(x));
  Dropout all(1.0);
  REQUIRE(max_abs(all.forward(x)) == 0.0);
  REQUIRE_THROWS(Dropout(1.5));
  // Gradient flows through the kept elements with the same scale.
  Tensor xl = uniform(Shape{10, 10}, -1, 1, d.generator()).set_requires_grad(true);
  Generator g(3);
  Tensor out = d.forward(xl, g);
  sum(out).backward();
  require_close(xl.grad(), out.detach() / xl.detach(), 1e-5, 1e-6, "d out / d x = mask / (1 - p)");
}

TEST_CASE("LayerNorm and RMSNorm: affine init, results, input check", "[models]") {
  Generator gen(0);
  LayerNorm ln(6);
  REQUIRE(names_of(ln.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  REQUIRE(max_abs_diff(ln.weight, ones(Shape{6})) == 0.0);
  REQUIRE(max_abs(ln.bias) == 0.0);
  Tensor x = uniform(Shape{3, 6}, -2, 2, gen);
  Tensor y = ln.forward(x);
  require_close(mean(y, {-1}), zeros(Shape{3}), 0, 1e-6, "zero mean");
  require_close(var(y, {-1}, 0), ones(Shape{3}), 1e-4, 1e-4, "unit variance");
  LayerNorm plain(6, 1e-6, false);
  REQUIRE(plain.num_parameters() == 0);
  RMSNorm rms(6);
  REQUIRE(names_of(rms.named_parameters()) == std::vector<std::string>{"weight"});
  require_close(rms.forward(x), x * rsqrt(mean(square(x), {-1}, true) + 1e-6), 1e-5, 1e-6, "x / rms(x)");
  REQUIRE(error_of([&] {
            ln.forward(zeros(Shape{2, 5}));
          }).find("LayerNorm(dim=6, eps=1e-05): input last dim expected 6, got 5") != std::string::npos);
  REQUIRE_THROWS_WITH(rms.forward(zeros(Shape{4})), Catch::Contains("RMSNorm(dim=6"));
}

TEST_CASE("Conv2d: PyTorch default init bounds, options, input check", "[models]") {
  Generator gen(0);
  Conv2d conv(8, 64, 3, gen, {.padding = 1});
  REQUIRE(names_of(conv.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  REQUIRE(conv.weight.shape() == Shape{64, 8, 3, 3});
  const double bound = 1.0 / std::sqrt(8.0 * 9.0);  // fan_in = in * k * k
  REQUIRE(max_abs(conv.weight) <= bound);
  REQUIRE(max_abs(conv.weight) > 0.99 * bound);
  REQUIRE(std::abs(var(conv.weight).item() - bound * bound / 3) < 0.1 * bound * bound / 3);
  REQUIRE(max_abs(conv.bias) <= bound);
  Tensor x = uniform(Shape{2, 8, 5, 5}, -1, 1, gen);
  Tensor y = conv.forward(x);
  REQUIRE(y.shape() == Shape{2, 64, 5, 5});
  require_close(y, conv2d(x, conv.weight, conv.bias, {1, 1}, {1, 1}), 0, 0, "Conv2d = conv2d");
  Conv2d grouped(4, 8, 3, gen, {.stride = 2, .groups = 2, .bias = false});
  REQUIRE(grouped.weight.shape() == Shape{8, 2, 3, 3});
  REQUIRE(max_abs(grouped.weight) <= 1.0 / std::sqrt(18.0));
  REQUIRE_FALSE(grouped.bias.defined());
  REQUIRE(grouped.forward(zeros(Shape{1, 4, 9, 9})).shape() == Shape{1, 8, 4, 4});
  REQUIRE_THROWS_WITH(conv.forward(zeros(Shape{2, 3, 5, 5})),
                      Catch::Contains("Conv2d(in=8, out=64, kernel=3, padding=1): input channels expected 8, got 3"));
  REQUIRE_THROWS_WITH(conv.forward(zeros(Shape{8, 5, 5})),
                      Catch::Contains("expected an input [N, 8, H, W], got [8,5,5]"));
  REQUIRE_THROWS_WITH(Conv2d(6, 8, 3, gen, {.groups = 4}), Catch::Contains("multiples of groups"));
}

TEST_CASE("GroupNorm: affine init, statistics per group, input check", "[models]") {
  Generator gen(0);
  GroupNorm gn(2, 6);
  REQUIRE(max_abs_diff(gn.weight, ones(Shape{6})) == 0.0);
  REQUIRE(max_abs(gn.bias) == 0.0);
  Tensor x = uniform(Shape{3, 6, 4, 4}, -2, 5, gen);
  Tensor y = gn.forward(x);
  Tensor groups = y.reshape(Shape{3, 2, 3 * 16});
  require_close(mean(groups, {-1}), zeros(Shape{3, 2}), 0, 1e-5, "zero mean per group");
  require_close(var(groups, {-1}, 0), ones(Shape{3, 2}), 1e-3, 1e-3, "unit variance per group");
  REQUIRE_THROWS_WITH(gn.forward(zeros(Shape{3, 4, 4, 4})),
                      Catch::Contains("GroupNorm(groups=2, channels=6): input channels expected 6, got 4"));
  REQUIRE_THROWS_WITH(GroupNorm(4, 6), Catch::Contains("positive multiple of groups"));
}

TEST_CASE("Embedding and LabelEmbedding: N(0,1) table, null class, label dropping", "[models]") {
  Generator gen(0);
  Embedding emb(1000, 20, gen);
  REQUIRE(std::abs(mean(emb.weight).item()) < 0.02);
  REQUIRE(std::abs(var(emb.weight).item() - 1.0) < 0.03);
  Tensor idx = from_vector(std::vector<int64_t>{3, 999, 3, 0, 1, 2}, Shape{2, 3});
  Tensor e = emb.forward(idx);
  REQUIRE(e.shape() == Shape{2, 3, 20});
  REQUIRE(max_abs_diff(e.select(0, 0).select(0, 0), emb.weight.select(0, 3)) == 0.0);
  REQUIRE(error_of([&] {
            emb.forward(from_vector(std::vector<int64_t>{1000}, Shape{1}));
          }).find("Embedding(num=1000, dim=20): index_select: index 1000 is out of range") != std::string::npos);
  REQUIRE(error_of([&] { emb.forward(zeros(Shape{2})); }).find("indices must be i64, got f32") != std::string::npos);

  LabelEmbedding labels(10, 8, gen);
  REQUIRE(names_of(labels.named_parameters()) == std::vector<std::string>{"embedding_table.weight"});
  REQUIRE(labels.embedding_table->weight.shape() == Shape{11, 8});
  REQUIRE(labels.null_class() == 10);
  Tensor y = from_vector(std::vector<int64_t>{0, 9, 10}, Shape{3});
  REQUIRE(max_abs_diff(labels.forward(y).select(0, 2), labels.embedding_table->weight.select(0, 10)) == 0.0);
  REQUIRE_THROWS_WITH(labels.forward(from_vector(std::vector<int64_t>{11}, Shape{1})),
                      Catch::Contains("LabelEmbedding(classes=10 + null"));

  Tensor many = randint(0, 10, Shape{4000}, gen);
  REQUIRE(max_abs_diff(labels.drop_labels(many, 0.0, gen), many) == 0.0);
  REQUIRE(max_abs_diff(labels.drop_labels(many, 1.0, gen), full(Shape{4000}, 10.0, DType::i64)) == 0.0);
  Tensor some = labels.drop_labels(many, 0.25, gen);
  auto before = many.to_vector<int64_t>(), after = some.to_vector<int64_t>();
  size_t dropped = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    if (after[i] == 10) ++dropped;
    else REQUIRE(after[i] == before[i]);
  }
  REQUIRE(std::abs(double(dropped) / 4000.0 - 0.25) < 0.03);
  REQUIRE(labels.null_labels(many).to_vector<int64_t>() == std::vector<int64_t>(4000, 10));
}

TEST_CASE("SinusoidalEmbedding: exactly the docs/BENCHMARKS.md formula", "[models]") {
  SinusoidalEmbedding emb;  // 64 dims, scale 1000
  const std::vector<double> s{0.0, 0.3, 1.0};
  Tensor out = emb.forward(from_vector(s, Shape{3}, DType::f64));
  REQUIRE(out.shape() == Shape{3, 64});
  auto v = out.to_vector<double>();
  for (size_t n = 0; n < s.size(); ++n)
    for (int i = 0; i < 32; ++i) {
      const double a = 1000.0 * s[n] * std::exp(-std::log(10000.0) * i / 32.0);
      REQUIRE(std::abs(v[n * 64 + size_t(i)] - std::sin(a)) < 1e-9);
      REQUIRE(std::abs(v[n * 64 + 32 + size_t(i)] - std::cos(a)) < 1e-9);
    }
  // [N, 1] works too; dim, scale and order are configurable.
  SinusoidalEmbedding other({8, 1.0, 10000, /*cos_first=*/true});
  Tensor o = other.forward(from_vector(s, Shape{3, 1}, DType::f64));
  REQUIRE(o.shape() == Shape{3, 8});
  REQUIRE(std::abs(o.to_vector<double>()[8 + 4] - std::sin(0.3)) < 1e-12);  // second row, first sine
  REQUIRE(std::abs(o.to_vector<double>()[8 + 0] - std::cos(0.3)) < 1e-12);
  REQUIRE_THROWS_WITH(emb.forward(zeros(Shape{3, 2})), Catch::Contains("expected an input [N] or [N, 1], got [3,2]"));
  REQUIRE_THROWS(SinusoidalEmbedding({7}));
}

TEST_CASE("TimestepEmbedder and FourierFeatures: structure and values", "[models]") {
  Generator gen(0);
  TimestepEmbedder te(16, gen, {32});
  REQUIRE(names_of(te.named_parameters()) ==
          std::vector<std::string>{"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"});
  Tensor t = uniform(Shape{5}, 0, 1, gen);
  SinusoidalEmbedding sin_emb({32});
  require_close(te.forward(t), te.linear2->forward(silu(te.linear1->forward(sin_emb.forward(t)))), 1e-6, 1e-6,
                "sinusoidal -> Linear -> SiLU -> Linear");

  FourierFeatures ff(2, 16, 3.0, gen);
  REQUIRE(ff.num_parameters() == 0);
  REQUIRE(names_of(ff.state_dict()) == std::vector<std::string>{"B"});
  REQUIRE(ff.B.shape() == Shape{2, 16});
  REQUIRE_FALSE(ff.B.requires_grad());
  Tensor x = uniform(Shape{4, 2}, -1, 1, gen);
  Tensor a = matmul(x, ff.B) * (2 * std::numbers::pi);
  require_close(ff.forward(x), cat({sin(a), cos(a)}, 1), 1e-6, 1e-6, "[sin(2 pi x B), cos(2 pi x B)]");
  REQUIRE_THROWS_WITH(ff.forward(zeros(Shape{4, 3})),
                      Catch::Contains("FourierFeatures(in=2, features=16, sigma=3): input last dim expected 2"));
}

TEST_CASE("MultiheadSelfAttention: heads computed separately, token permutation equivariance", "[models]") {
  Generator gen(0);
  MultiheadSelfAttention attn(8, 2, gen);
  REQUIRE(names_of(attn.named_parameters()) ==
          std::vector<std::string>{"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"});
  attn.to(DType::f64);
  Tensor x = uniform_f64(Shape{2, 5, 8}, -1, 1, 3);
  Tensor y = attn.forward(x);
  REQUIRE(y.shape() == Shape{2, 5, 8});
  // Reference: per sample and head, softmax(q k^T / sqrt(4)) v, heads concatenated, then proj.
  Tensor qkv = attn.qkv->forward(x);
  std::vector<Tensor> samples;
  for (int64_t n = 0; n < 2; ++n) {
    std::vector<Tensor> heads;
    for (int64_t hd = 0; hd < 2; ++hd) {
      Tensor q = qkv.select(0, n).narrow(1, hd * 4, 4), k = qkv.select(0, n).narrow(1, 8 + hd * 4, 4),
             v = qkv.select(0, n).narrow(1, 16 + hd * 4, 4);
      heads.push_back(matmul(softmax(matmul(q, k.t()) * 0.5, -1), v));
    }
    samples.push_back(cat(heads, 1));
  }
  require_close(y, attn.proj->forward(stack(samples, 0)), 1e-12, 1e-12, "attention vs a per-head reference");
  Tensor perm = from_vector(std::vector<int64_t>{4, 2, 0, 1, 3}, Shape{5});
  require_close(attn.forward(index_select(x, 1, perm)), index_select(y, 1, perm), 1e-12, 1e-12,
                "permuting tokens permutes outputs");
  REQUIRE_THROWS_WITH(attn.forward(zeros(Shape{2, 5, 6}, DType::f64)),
                      Catch::Contains("MultiheadSelfAttention(dim=8, heads=2): input last dim expected 8, got 6"));
  REQUIRE_THROWS_WITH(MultiheadSelfAttention(10, 3, gen), Catch::Contains("multiple of heads"));
}

}  // namespace dualflow::testing
