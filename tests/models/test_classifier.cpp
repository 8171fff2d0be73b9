// ImageClassifier (parameter names and shapes, both downsampling modes, GroupNorm, input
// checks, derivatives end to end in f64), cross_entropy against its formula and gradient, and
// accuracy.
#include <cmath>

#include "models/classifier.h"
#include "tests/models/model_check.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;

std::vector<std::pair<std::string, std::string>> names_and_shapes(const Module& m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [n, t] : m.named_parameters()) out.emplace_back(n, t.shape().str());
  return out;
}

}  // namespace

TEST_CASE("ImageClassifier: parameter names and shapes of the default network", "[models][classifier]") {
  Generator gen(0);
  ImageClassifier net(ImageClassifierConfig{}, gen);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"convs.0.weight", "[32,1,3,3]"},  {"convs.0.bias", "[32]"},
      {"convs.1.weight", "[32,32,3,3]"}, {"convs.1.bias", "[32]"},
      {"convs.2.weight", "[64,32,3,3]"}, {"convs.2.bias", "[64]"},
      {"convs.3.weight", "[64,64,3,3]"}, {"convs.3.bias", "[64]"},
      {"fc.weight", "[128,3136]"},       {"fc.bias", "[128]"},
      {"head.weight", "[10,128]"},       {"head.bias", "[10]"}};
  REQUIRE(names_and_shapes(net) == want);
  REQUIRE(net.num_parameters() == 467818);
  // Strided downsampling has exactly the same parameters.
  ImageClassifierConfig strided;
  strided.downsample = "stride";
  Generator gen2(0);
  REQUIRE(names_and_shapes(ImageClassifier(strided, gen2)) == want);
}

TEST_CASE("ImageClassifier: features and logits for both downsampling modes", "[models][classifier]") {
  for (const std::string mode : {"avgpool", "stride"}) {
    INFO(mode);
    ImageClassifierConfig c;
    c.widths = {8, 16};
    c.feature_dim = 24;
    c.downsample = mode;
    Generator gen(1);
    ImageClassifier net(c, gen);
    Tensor x = uniform({5, 1, 28, 28}, -1, 1, gen);
    ClassifierOutput o = net.forward(x);
    REQUIRE(o.features.shape() == Shape{5, 24});
    REQUIRE(o.logits.shape() == Shape{5, 10});
    REQUIRE(amin(o.features).item() >= 0);  // after the ReLU
    require_close(net.features(x), o.features, 0, 0, "features()");
    require_close(net.logits(x), o.logits, 0, 0, "logits()");
    // The logits are the head applied to the features.
    require_close(o.logits, net.head->forward(o.features), 1e-6, 1e-6, "head(features)");
  }
}

TEST_CASE("ImageClassifier: GroupNorm, other sizes, and refusals", "[models][classifier]") {
  ImageClassifierConfig c;
  c.in_channels = 3;
  c.image_size = 16;
  c.widths = {8, 8, 16};
  c.convs_per_stage = 1;
  c.norm_groups = 4;
  c.num_classes = 5;
  c.activation = "silu";
  Generator gen(2);
  ImageClassifier net(c, gen);
  REQUIRE(net.find("norms.2.weight").shape() == Shape{16});
  REQUIRE(net.fc->in_features() == 16 * 2 * 2);
  REQUIRE(net.logits(randn({2, 3, 16, 16}, gen)).shape() == Shape{2, 5});
  REQUIRE_THROWS_WITH(net.forward(randn({2, 1, 16, 16}, gen)), Contains("expected images [N, 3, 16, 16]"));

  ImageClassifierConfig bad;
  bad.image_size = 30;  // not a multiple of 4
  REQUIRE_THROWS_WITH(ImageClassifier(bad, gen), Contains("multiple of 4"));
  bad = {};
  bad.norm_groups = 3;
  REQUIRE_THROWS_WITH(ImageClassifier(bad, gen), Contains("must divide every stage width"));
  bad = {};
  bad.downsample = "max";
  REQUIRE_THROWS_WITH(ImageClassifier(bad, gen), Contains("avgpool or stride"));
}

TEST_CASE("ImageClassifier: derivatives end to end in f64", "[models][classifier]") {
  for (const std::string mode : {"avgpool", "stride"}) {
    INFO(mode);
    ImageClassifierConfig c;
    c.image_size = 8;
    c.widths = {2, 3};
    c.convs_per_stage = 1;
    c.feature_dim = 4;
    c.num_classes = 3;
    c.activation = "silu";  // smooth, so finite differences agree
    c.downsample = mode;
    Generator gen(3);
    ImageClassifier net(c, gen);
    net.to(DType::f64);
    Tensor x = uniform_f64({2, 1, 8, 8}, -1, 1, 4);
    check_module_derivatives(net, {{"x", x}}, [&](const std::vector<Tensor>& in) { return net.logits(in[0]); });
  }
}

TEST_CASE("cross_entropy: value and gradient against the formula", "[models][classifier]") {
  Tensor logits = from_vector(std::vector<double>{1, 2, 0.5, -1, 0, 3}, {2, 3}, DType::f64).set_requires_grad(true);
  Tensor labels = from_vector(std::vector<int64_t>{1, 0}, {2});
  // -(log softmax(row0)[1] + log softmax(row1)[0]) / 2
  const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.5));
  const double lse1 = std::log(std::exp(-1.0) + std::exp(0.0) + std::exp(3.0));
  Tensor loss = cross_entropy(logits, labels);
  REQUIRE(loss.item() == Approx(((lse0 - 2.0) + (lse1 + 1.0)) / 2).epsilon(1e-12));
  loss.backward();
  // d/dlogits = (softmax - one_hot) / N
  Tensor want = (softmax(logits.detach(), 1) - one_hot(labels, 3, DType::f64)) / 2.0;
  require_close(logits.grad(), want, 0, 1e-12, "gradient");

  REQUIRE_THROWS_WITH(cross_entropy(logits.detach(), from_vector(std::vector<int64_t>{1}, {1})),
                      Contains("expected labels i64 [2]"));
  REQUIRE_THROWS_WITH(cross_entropy(logits.detach(), labels.to(DType::f32)), Contains("expected labels i64"));
}

TEST_CASE("accuracy: the share of rows whose arg-max is the label", "[models][classifier]") {
  Tensor logits = from_vector(std::vector<float>{0, 1, 0, 2, 0, 0, 0, 0, 5, 1, 2, 3}, {4, 3});
  REQUIRE(accuracy(logits, from_vector(std::vector<int64_t>{1, 0, 2, 2}, {4})) == 1.0);
  REQUIRE(accuracy(logits, from_vector(std::vector<int64_t>{1, 1, 2, 0}, {4})) == 0.5);
  REQUIRE_THROWS_WITH(accuracy(logits, from_vector(std::vector<int64_t>{1}, {1})), Contains("labels [N]"));
}

}  // namespace dualflow::testing
