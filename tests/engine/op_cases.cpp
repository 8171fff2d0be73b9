// The op declarations for the harness: one entry per op (and per broadcasting pattern).
#include "op_cases.h"

namespace dualflow::testing {

namespace {
using V = const std::vector<Tensor>&;
Tensor idx(std::vector<int64_t> v, Shape s) { return from_vector(v, s); }
}  // namespace

std::vector<OpCase> all_op_cases() {
  std::vector<OpCase> c;
  auto unary = [&](const std::string& name, std::function<Tensor(const Tensor&)> f, double lo = -2, double hi = 2,
                   bool smooth = true) {
    c.push_back({name, {{Shape{3, 4}, lo, hi}}, [f](V x) { return f(x[0]); }, smooth});
  };
  unary("neg", [](const Tensor& x) { return neg(x); });
  unary("exp", [](const Tensor& x) { return exp(x); });
  unary(
      "log", [](const Tensor& x) { return log(x); }, 0.5, 2);
  unary(
      "log1p", [](const Tensor& x) { return log1p(x); }, -0.5, 2);
  unary("expm1", [](const Tensor& x) { return expm1(x); });
  unary(
      "sqrt", [](const Tensor& x) { return sqrt(x); }, 0.5, 2);
  unary(
      "rsqrt", [](const Tensor& x) { return rsqrt(x); }, 0.5, 2);
  unary(
      "abs", [](const Tensor& x) { return abs(x); }, -2, 2, false);
  unary(
      "sign", [](const Tensor& x) { return sign(x) * x; }, -2, 2, false);
  unary("sin", [](const Tensor& x) { return sin(x); });
  unary("cos", [](const Tensor& x) { return cos(x); });
  unary("tanh", [](const Tensor& x) { return tanh(x); });
  unary("sigmoid", [](const Tensor& x) { return sigmoid(x); });
  unary(
      "relu", [](const Tensor& x) { return relu(x); }, -2, 2, false);
  unary("silu", [](const Tensor& x) { return silu(x); });
  unary("gelu_erf", [](const Tensor& x) { return gelu(x, GeluApprox::Erf); });
  unary("gelu_tanh", [](const Tensor& x) { return gelu(x, GeluApprox::Tanh); });
  unary("softplus", [](const Tensor& x) { return softplus(x); });
  unary(
      "reciprocal", [](const Tensor& x) { return reciprocal(x); }, 0.5, 2);
  unary("square", [](const Tensor& x) { return square(x); });
  unary(
      "pow_scalar", [](const Tensor& x) { return pow(x, 2.5); }, 0.5, 2);
  unary(
      "clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); }, -2, 2, false);
  unary("add_scalar", [](const Tensor& x) { return x + 1.5; });
  unary("mul_scalar", [](const Tensor& x) { return x * -2.5; });
  unary(
      "scalar_div", [](const Tensor& x) { return 3.0 / x; }, 0.5, 2);
  // The fused backward op is itself differentiable (third-order derivatives of activations).
  for (auto [name, op] : std::vector<std::pair<std::string, UnaryOp>>{{"silu", UnaryOp::Silu},
                                                                      {"tanh", UnaryOp::Tanh},
                                                                      {"gelu_tanh", UnaryOp::GeluTanh},
                                                                      {"gelu_erf", UnaryOp::GeluErf},
                                                                      {"sigmoid", UnaryOp::Sigmoid},
                                                                      {"log", UnaryOp::Log},
                                                                      {"softplus", UnaryOp::Softplus},
                                                                      {"exp", UnaryOp::Exp},
                                                                      {"sqrt", UnaryOp::Sqrt}}) {
    double lo = (op == UnaryOp::Log || op == UnaryOp::Sqrt) ? 0.5 : -2;
    c.push_back({"unary_backward_" + name, {{Shape{3, 4}}, {Shape{3, 4}, lo, 2}}, [op](V x) {
                   return unary_backward(op, x[0], x[1]);
                 }});
  }

  auto binary = [&](const std::string& name, std::function<Tensor(const Tensor&, const Tensor&)> f, double blo = -2,
                    double bhi = 2, double alo = -2, double ahi = 2, bool smooth = true) {
    for (auto [sa, sb] : std::vector<std::pair<Shape, Shape>>{
             {Shape{3, 4}, Shape{3, 4}}, {Shape{3, 4}, Shape{4}}, {Shape{3, 1}, Shape{1, 4}}, {Shape{}, Shape{2, 3}}}) {
      c.push_back({name + " " + sa.str() + "x" + sb.str(),
                   {{sa, alo, ahi}, {sb, blo, bhi}},
                   [f](V x) { return f(x[0], x[1]); },
                   smooth});
    }
  };
  binary("add", [](const Tensor& a, const Tensor& b) { return a + b; });
  binary("sub", [](const Tensor& a, const Tensor& b) { return a - b; });
  binary("mul", [](const Tensor& a, const Tensor& b) { return a * b; });
  binary(
      "div", [](const Tensor& a, const Tensor& b) { return a / b; }, 0.5, 2);
  binary(
      "pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, -1, 2, 0.5, 2);
  binary(
      "minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, -2, 2, -2, 2, false);
  binary(
      "maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, -2, 2, -2, 2, false);
  c.push_back(
      {"where", {{Shape{3, 4}}, {Shape{4}}}, [](V x) {
         Tensor cond = from_vector(std::vector<int64_t>{1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}, Shape{3, 4}).to(DType::b8);
         return where(cond, x[0], x[1]);
       }});

  // reductions
  c.push_back({"sum_all", {{Shape{3, 4}}}, [](V x) { return sum(x[0]); }});
  c.push_back({"sum_dim0_keep", {{Shape{3, 4}}}, [](V x) { return sum(x[0], {0}, true); }});
  c.push_back({"sum_last", {{Shape{2, 3, 4}}}, [](V x) { return sum(x[0], {-1}); }});
  c.push_back({"sum_outer_inner", {{Shape{2, 3, 4}}}, [](V x) { return sum(x[0], {0, 2}); }});
  c.push_back({"sum_transposed", {{Shape{3, 4}}}, [](V x) { return sum(x[0].t(), {1}); }});
  c.push_back({"mean", {{Shape{2, 3, 4}}}, [](V x) { return mean(x[0], {1}); }});
  c.push_back({"amax", {{Shape{3, 5}}}, [](V x) { return amax(x[0], {1}); }, false});
  c.push_back({"amin_all", {{Shape{3, 5}}}, [](V x) { return amin(x[0]); }, false});
  c.push_back({"var", {{Shape{3, 5}}}, [](V x) { return var(x[0], {1}); }});
  c.push_back({"norm", {{Shape{3, 5}}}, [](V x) { return norm(x[0], 2.0, {1}); }});
  c.push_back({"norm_p3", {{Shape{3, 5}}}, [](V x) { return norm(x[0], 3.0, {0}); }, false});

  // linear algebra
  c.push_back({"matmul_2d", {{Shape{3, 4}}, {Shape{4, 5}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"matmul_fold", {{Shape{2, 3, 4}}, {Shape{4, 5}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"matmul_batched", {{Shape{2, 3, 4}}, {Shape{2, 4, 5}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"matmul_broadcast", {{Shape{2, 1, 3, 4}}, {Shape{3, 4, 2}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"matmul_left_2d", {{Shape{3, 4}}, {Shape{2, 4, 5}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"matmul_transposed", {{Shape{4, 3}}, {Shape{5, 4}}}, [](V x) { return matmul(x[0].t(), x[1].t()); }});
  // Batched operands read in place through one batch stride (transposed per entry), and a
  // batch whose dims do not nest, which is copied.
  c.push_back({"matmul_batched_transposed", {{Shape{2, 4, 3}}, {Shape{2, 5, 4}}}, [](V x) {
                 return matmul(x[0].transpose(-2, -1), x[1].transpose(-2, -1));
               }});
  c.push_back({"matmul_batch_permuted", {{Shape{2, 3, 3, 4}}, {Shape{3, 2, 4, 2}}}, [](V x) {
                 return matmul(x[0].permute({1, 0, 2, 3}), x[1].transpose(-2, -1).transpose(-1, -2));
               }});
  c.push_back({"matmul_fold_4d", {{Shape{2, 2, 3, 4}}, {Shape{5, 4}}}, [](V x) { return matmul(x[0], x[1].t()); }});
  c.push_back({"matmul_vec_mat", {{Shape{4}}, {Shape{4, 5}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"linear", {{Shape{3, 4}}, {Shape{5, 4}}, {Shape{5}}}, [](V x) { return linear(x[0], x[1], x[2]); }});
  c.push_back(
      {"linear_3d", {{Shape{2, 3, 4}}, {Shape{5, 4}}, {Shape{5}}}, [](V x) { return linear(x[0], x[1], x[2]); }});
  c.push_back({"linear_vector", {{Shape{4}}, {Shape{5, 4}}, {Shape{5}}}, [](V x) { return linear(x[0], x[1], x[2]); }});
  c.push_back({"linear_strided_input", {{Shape{4, 3}}, {Shape{5, 4}}, {Shape{5}}}, [](V x) {
                 return linear(x[0].t(), x[1], x[2]);
               }});
  c.push_back({"linear_no_bias", {{Shape{3, 4}}, {Shape{5, 4}}}, [](V x) { return linear(x[0], x[1], Tensor()); }});
  // The activation applied by the GEMM: each activation once, with and without the bias.
  for (auto [name, op] : {std::pair{"silu", UnaryOp::Silu}, std::pair{"gelu_tanh", UnaryOp::GeluTanh},
                          std::pair{"gelu_erf", UnaryOp::GeluErf}, std::pair{"tanh", UnaryOp::Tanh},
                          std::pair{"sigmoid", UnaryOp::Sigmoid}}) {
    c.push_back({std::string("linear_activation_") + name, {{Shape{2, 3, 4}}, {Shape{5, 4}}, {Shape{5}}}, [op](V x) {
                   return linear_activation(x[0], x[1], x[2], op);
                 }});
  }
  c.push_back({"linear_activation_silu_no_bias", {{Shape{3, 4}}, {Shape{5, 4}}}, [](V x) {
                 return linear_activation(x[0], x[1], Tensor(), UnaryOp::Silu);
               }});
  c.push_back({"linear_activation_relu",
               {{Shape{3, 4}}, {Shape{5, 4}}, {Shape{5}}},
               [](V x) { return linear_activation(x[0], x[1], x[2], UnaryOp::Relu); },
               /*smooth=*/false});
  // A Linear over parts: with every part an input (one product over the concatenated
  // tangents), and with a constant part between two inputs (each moving part multiplies its own
  // columns of the weight; the constant's cost nothing), with and without an activation.
  c.push_back({"linear_parts_silu", {{Shape{2, 3, 2}}, {Shape{2, 3, 3}}, {Shape{5, 5}}, {Shape{5}}}, [](V x) {
                 return linear_parts({x[0], x[1]}, x[2], x[3], UnaryOp::Silu);
               }});
  c.push_back({"linear_parts_constant_part_silu", {{Shape{3, 2}}, {Shape{3, 1}}, {Shape{5, 6}}, {Shape{5}}}, [](V x) {
                 const Tensor constant = arange(9, x[0].dtype()).reshape(Shape{3, 3}) * 0.25 - 1.0;
                 return linear_parts({x[0], constant, x[1]}, x[2], x[3], UnaryOp::Silu);
               }});
  c.push_back({"linear_parts_constant_part", {{Shape{3, 2}}, {Shape{5, 5}}}, [](V x) {
                 const Tensor constant = arange(9, x[0].dtype()).reshape(Shape{3, 3}) * 0.25 - 1.0;
                 return linear_parts({constant, x[0]}, x[1], Tensor());
               }});
  // Products with a side of at most 8 and a long one (the CPU's skinny GEMM loops: dot
  // products off the vector width, sums of outer products, scaled rows of B).
  c.push_back({"linear_to_two_outputs", {{Shape{2, 20, 23}}, {Shape{2, 23}}, {Shape{2}}}, [](V x) {
                 return linear(x[0], x[1], x[2]);
               }});
  c.push_back({"matmul_small_k_long_sides", {{Shape{17, 2}}, {Shape{2, 19}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back(
      {"matmul_small_m_transposed", {{Shape{19, 3}}, {Shape{19, 17}}}, [](V x) { return matmul(x[0].t(), x[1]); }});
  c.push_back({"matmul_mat_vec", {{Shape{3, 4}}, {Shape{4}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"dot", {{Shape{6}}, {Shape{6}}}, [](V x) { return matmul(x[0], x[1]); }});
  c.push_back({"addcmul", {{Shape{2, 3, 4}}, {Shape{2, 3, 4}}, {Shape{2, 3, 4}}},
               [](V x) { return addcmul(x[0], x[1], x[2]); }});
  // A gated residual: the gate per sample and channel, broadcast over the tokens.
  c.push_back({"addcmul_gate", {{Shape{2, 3, 4}}, {Shape{2, 1, 4}}, {Shape{2, 3, 4}}},
               [](V x) { return addcmul(x[0], x[1], x[2]); }});
  c.push_back({"addcmul_broadcast_all", {{Shape{4}}, {Shape{3, 1}}, {Shape{2, 1, 4}}},
               [](V x) { return addcmul(x[0], x[1], x[2]); }});

  // rows
  c.push_back({"softmax", {{Shape{3, 5}}}, [](V x) { return softmax(x[0], -1); }});
  c.push_back({"softmax_dim0", {{Shape{3, 5}}}, [](V x) { return softmax(x[0], 0); }});
  c.push_back({"log_softmax", {{Shape{3, 5}}}, [](V x) { return log_softmax(x[0], -1); }});
  c.push_back({"logsumexp", {{Shape{3, 5}}}, [](V x) { return logsumexp(x[0], 1); }});
  c.push_back(
      {"layer_norm", {{Shape{3, 6}}, {Shape{6}}, {Shape{6}}}, [](V x) { return layer_norm(x[0], 6, x[1], x[2]); }});
  c.push_back(
      {"layer_norm_bias_only", {{Shape{3, 6}}, {Shape{6}}}, [](V x) { return layer_norm(x[0], 6, Tensor(), x[1]); }});
  c.push_back({"layer_norm_plain", {{Shape{2, 3, 5}}}, [](V x) { return layer_norm(x[0], 5); }});
  // Per-sample affine rows (a DiT's adaLN modulation), a shared weight with per-sample bias, and
  // an affine with no per-group form.
  c.push_back({"layer_norm_per_sample", {{Shape{2, 3, 5}}, {Shape{2, 1, 5}}, {Shape{2, 1, 5}}},
               [](V x) { return layer_norm(x[0], 5, x[1], x[2]); }});
  c.push_back({"layer_norm_mixed_affine", {{Shape{2, 3, 5}}, {Shape{5}}, {Shape{2, 1, 5}}},
               [](V x) { return layer_norm(x[0], 5, x[1], x[2]); }});
  c.push_back({"layer_norm_token_affine", {{Shape{2, 3, 4}}, {Shape{3, 4}}},
               [](V x) { return layer_norm(x[0], 4, x[1]); }});
  c.push_back({"rms_norm", {{Shape{3, 6}}, {Shape{6}}}, [](V x) { return rms_norm(x[0], 6, x[1]); }});

  // shape
  c.push_back({"reshape", {{Shape{3, 4}}}, [](V x) { return x[0].reshape(Shape{2, 6}) * 1.0; }});
  c.push_back({"reshape_noncontig", {{Shape{3, 4}}}, [](V x) { return x[0].t().reshape(Shape{-1}); }});
  c.push_back({"permute", {{Shape{2, 3, 4}}}, [](V x) { return x[0].permute({2, 0, 1}).contiguous(); }});
  c.push_back({"narrow", {{Shape{5, 3}}}, [](V x) { return x[0].narrow(0, 1, 3); }});
  c.push_back({"slice_step", {{Shape{7, 3}}}, [](V x) { return x[0].slice(0, 1, 7, 2); }});
  c.push_back({"select", {{Shape{4, 3}}}, [](V x) { return x[0].select(1, 2); }});
  c.push_back({"expand", {{Shape{3, 1}}}, [](V x) { return x[0].expand(Shape{2, 3, 4}); }});
  c.push_back({"unsqueeze_squeeze", {{Shape{3, 4}}}, [](V x) { return x[0].unsqueeze(1).squeeze(1).unsqueeze(0); }});
  c.push_back({"cat", {{Shape{2, 3}}, {Shape{4, 3}}, {Shape{1, 3}}}, [](V x) { return cat({x[0], x[1], x[2]}, 0); }});
  c.push_back({"cat_dim1", {{Shape{2, 3}}, {Shape{2, 2}}}, [](V x) { return cat({x[0], x[1]}, 1); }});
  c.push_back({"stack", {{Shape{2, 3}}, {Shape{2, 3}}}, [](V x) { return stack({x[0], x[1]}, 1); }});
  c.push_back({"split", {{Shape{5, 2}}}, [](V x) {
                 auto p = split(x[0], 2, 0);
                 return p[1] * sum(p[2], {0}, true);
               }});
  c.push_back({"chunk", {{Shape{6, 2}}}, [](V x) {
                 auto p = chunk(x[0], 3, 0);
                 return p[0] - p[2];
               }});
  c.push_back({"index_select", {{Shape{4, 3}}}, [](V x) {
                 return index_select(x[0], 0, idx({3, 0, 3, 1}, Shape{4}));
               }});
  c.push_back({"index_add", {{Shape{4, 3}}, {Shape{3, 3}}}, [](V x) {
                 return index_add(x[0], 0, idx({1, 3, 1}, Shape{3}), x[1]);
               }});
  c.push_back({"gather", {{Shape{3, 4}}}, [](V x) {
                 return gather(x[0], 1, idx({0, 3, 3, 1, 2, 2, 0, 0, 1}, Shape{3, 3}));
               }});
  c.push_back({"scatter_add", {{Shape{3, 4}}, {Shape{3, 2}}}, [](V x) {
                 return scatter_add(x[0], 1, idx({0, 3, 2, 2, 1, 0}, Shape{3, 2}), x[1]);
               }});
  c.push_back({"flip", {{Shape{3, 4}}}, [](V x) { return flip(x[0], {0, 1}); }});
  // images (NCHW)
  c.push_back({"im2col_3x3_pad", {{Shape{2, 2, 4, 5}}}, [](V x) { return im2col(x[0], {3, 3}, {1, 1}, {1, 1}); }});
  c.push_back({"im2col_stride_dilation", {{Shape{1, 2, 7, 6}}}, [](V x) {
                 return im2col(x[0], {2, 3}, {2, 1}, {1, 0}, {2, 1});
               }});
  c.push_back({"col2im_3x3_stride2", {{Shape{2, 2 * 9, 4}}}, [](V x) {
                 return col2im(x[0], {4, 4}, {3, 3}, {2, 2}, {1, 1});
               }});
  c.push_back({"conv2d_3x3", {{Shape{2, 3, 5, 5}}, {Shape{4, 3, 3, 3}}, {Shape{4}}}, [](V x) {
                 return conv2d(x[0], x[1], x[2], {1, 1}, {1, 1});
               }});
  c.push_back({"conv2d_stride2_nobias", {{Shape{1, 2, 6, 5}}, {Shape{3, 2, 3, 2}}}, [](V x) {
                 return conv2d(x[0], x[1], Tensor(), {2, 2}, {1, 0});
               }});
  c.push_back({"conv2d_1x1", {{Shape{2, 3, 2, 3}}, {Shape{5, 3, 1, 1}}, {Shape{5}}}, [](V x) {
                 return conv2d(x[0], x[1], x[2]);
               }});
  c.push_back({"conv2d_groups", {{Shape{1, 4, 4, 4}}, {Shape{6, 2, 3, 3}}}, [](V x) {
                 return conv2d(x[0], x[1], Tensor(), {1, 1}, {1, 1}, {1, 1}, 2);
               }});
  c.push_back({"group_norm", {{Shape{2, 4, 3, 2}}, {Shape{4}}, {Shape{4}}}, [](V x) {
                 return group_norm(x[0], 2, x[1], x[2]);
               }});
  c.push_back({"group_norm_plain", {{Shape{2, 6, 5}}}, [](V x) { return group_norm(x[0], 3); }});
  c.push_back({"group_norm_silu", {{Shape{2, 4, 3, 2}}, {Shape{4}}, {Shape{4}}}, [](V x) {
                 return group_norm_silu(x[0], 2, x[1], x[2]);
               }});
  c.push_back({"group_norm_silu_plain", {{Shape{2, 6, 5}}}, [](V x) { return group_norm_silu(x[0], 3); }});
  c.push_back({"upsample_nearest", {{Shape{1, 2, 3, 2}}}, [](V x) { return upsample2d(x[0], 2); }});
  c.push_back(
      {"upsample_bilinear", {{Shape{1, 2, 3, 2}}}, [](V x) { return upsample2d(x[0], 2, UpsampleMode::Bilinear); }});
  c.push_back({"avg_pool2d", {{Shape{2, 2, 5, 4}}}, [](V x) { return avg_pool2d(x[0], 2); }});
  c.push_back({"attention", {{Shape{2, 3, 4}}, {Shape{2, 5, 4}}, {Shape{2, 5, 3}}}, [](V x) {
                 return scaled_dot_product_attention(x[0], x[1], x[2]);
               }});
  c.push_back({"attention_heads_scale", {{Shape{1, 2, 3, 2}}, {Shape{1, 2, 3, 2}}, {Shape{1, 2, 3, 2}}}, [](V x) {
                 return scaled_dot_product_attention(x[0], x[1], x[2], 0.7);
               }});
  c.push_back({"pad", {{Shape{2, 3}}}, [](V x) { return pad(x[0], {1, 2, 0, 1}, 0.5); }});
  c.push_back({"clone", {{Shape{2, 3}}}, [](V x) { return x[0].clone(); }});
  c.push_back({"sum_to", {{Shape{2, 3, 4}}}, [](V x) { return sum_to(x[0], Shape{3, 1}); }});
  return c;
}

}  // namespace dualflow::testing
