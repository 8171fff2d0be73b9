// Tests of the run-configuration layer: defaults, nested and dotted tables, --set overrides,
// each refusal (syntax, unknown key, wrong type, range, choice, malformed --set) with the words
// it must say, int-to-float widening, the to_toml round trip and the help listing.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "train/classifier_run.h"
#include "train/config.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;
using Overrides = std::vector<std::string>;

RunConfig parse(const std::string& text, const Overrides& overrides = {}) {
  return parse_config_text(text, "run.toml", overrides, flow_matching_schema());
}

TEST_CASE("config: defaults of the flow matching schema", "[config]") {
  RunConfig c = parse("");
  CHECK(c.get_int("run.seed") == 0);
  CHECK(c.get_string("run.device") == "cpu");
  CHECK(c.get_string("data.name") == "checkerboard");
  CHECK(c.get_string("data.path") == "/usr/share/datasets/fashion-mnist");
  CHECK(c.get_int("model.width") == 256);
  CHECK(c.get_int_list("model.unet_mult") == std::vector<int64_t>{1, 2, 2});
  CHECK(c.get_int_list("model.unet_attention") == std::vector<int64_t>{7});
  CHECK(c.get_string("optim.name") == "adam");
  CHECK(c.get_float("optim.lr") == 1e-3);
  CHECK(c.get_float("meanflow.time_mu") == -0.4);
  CHECK(c.get_int("train.batch") == 1024);
  CHECK(c.get_string("sample.solver") == "euler");
  CHECK(c == RunConfig(flow_matching_schema()));
}

TEST_CASE("config: nested tables, dotted keys and inline tables map to dotted names", "[config]") {
  RunConfig c = parse(R"(
[run]
seed = 7
[optim]
lr = 3e-4
name = "adamw"
[model]
kind = "unet"
unet_mult = [1, 2, 4, 8]
)");
  CHECK(c.get_int("run.seed") == 7);
  CHECK(c.get_float("optim.lr") == 3e-4);
  CHECK(c.get_string("optim.name") == "adamw");
  CHECK(c.get_string("model.kind") == "unet");
  CHECK(c.get_int_list("model.unet_mult") == std::vector<int64_t>{1, 2, 4, 8});
  // "train.steps" inside [model] is model.train.steps, which does not exist.
  REQUIRE_THROWS_WITH(parse("[model]\ntrain.steps = 5\n"), Contains("unknown key 'model.train.steps'"));
  RunConfig top = parse("train.steps = 50\nsample = { solver = \"dopri5\", rtol = 1e-6 }\n");
  CHECK(top.get_int("train.steps") == 50);
  CHECK(top.get_string("sample.solver") == "dopri5");
  CHECK(top.get_float("sample.rtol") == 1e-6);
}

TEST_CASE("config: --set overrides apply after the file, last one wins", "[config]") {
  RunConfig c = parse("[optim]\nlr = 0.01\n",
                      {"optim.lr=3e-4", "data.name=\"moons\"", "run.device=cuda:1", "model.unet_attention=[4, 8]",
                       "train.steps = 20", "train.steps=30", "data.path=/tmp/my data", "run.seed=5"});
  CHECK(c.get_float("optim.lr") == 3e-4);
  CHECK(c.get_string("data.name") == "moons");
  CHECK(c.get_string("run.device") == "cuda:1");
  CHECK(c.get_int_list("model.unet_attention") == std::vector<int64_t>{4, 8});
  CHECK(c.get_int("train.steps") == 30);
  CHECK(c.get_string("data.path") == "/tmp/my data");
  CHECK(c.get_int("run.seed") == 5);
  // Quoted strings use TOML's escapes; a bare string is taken verbatim.
  CHECK(parse("", {R"(data.path="a\tb")"}).get_string("data.path") == "a\tb");
  CHECK(parse("", {R"(data.path=a\tb)"}).get_string("data.path") == "a\\tb");
}

TEST_CASE("config: an int is accepted where a float is expected, not the reverse", "[config]") {
  RunConfig c = parse("[optim]\nlr = 1\ngrad_clip = 2\n", {"sample.cfg_scale=3"});
  CHECK(c.get_float("optim.lr") == 1.0);
  CHECK(c.get_float("optim.grad_clip") == 2.0);
  CHECK(c.get_float("sample.cfg_scale") == 3.0);
  REQUIRE_THROWS_WITH(parse("[train]\nsteps = 10.0\n"),
                      Contains("run.toml:2:9") && Contains("train.steps expects an int, got a float 10.0"));
  REQUIRE_THROWS_WITH(parse("", {"train.batch=1.5"}),
                      Contains("--set train.batch=1.5") && Contains("expects an int, got a float 1.5"));
}

TEST_CASE("config: a TOML syntax error names file, line and column", "[config]") {
  REQUIRE_THROWS_WITH(parse("[optim]\nlr = 1e-3\nname = adam\n"),
                      Contains("run.toml:3:") && Contains("TOML syntax error"));
  REQUIRE_THROWS_WITH(parse("[train\nsteps = 1\n"), Contains("run.toml:1:") && Contains("TOML syntax error"));
}

TEST_CASE("config: unknown keys are refused with a suggestion", "[config]") {
  REQUIRE_THROWS_WITH(parse("[optim]\nlrr = 1e-3\n"),
                      Contains("run.toml:2:1") && Contains("unknown key 'optim.lrr'; did you mean 'optim.lr'?"));
  REQUIRE_THROWS_WITH(parse("[train]\nlr = 1e-3\n"), Contains("did you mean 'optim.lr'?"));
  REQUIRE_THROWS_WITH(parse("[optimizer]\nlr = 1e-3\n"),
                      Contains("unknown key 'optimizer.lr'; did you mean 'optim.lr'?"));
  REQUIRE_THROWS_WITH(parse("[optimizer]\n"), Contains("run.toml:1:2: unknown key 'optimizer'"));
  REQUIRE_THROWS_WITH(parse("", {"optim.lrr=1"}),
                      Contains("--set optim.lrr=1") && Contains("did you mean 'optim.lr'?"));
  REQUIRE_THROWS_WITH(parse("", {"zzzzzz=1"}), Contains("unknown key 'zzzzzz'") && !Contains("did you mean"));
  // A section given a value is not silently ignored.
  REQUIRE_THROWS_WITH(parse("optim = 3\n"), Contains("'optim' is a section of keys"));
  REQUIRE_THROWS_WITH(parse("", {"optim=3"}), Contains("'optim' is a section"));
}

TEST_CASE("config: wrong types name expected and given", "[config]") {
  REQUIRE_THROWS_WITH(parse("[optim]\nlr = \"fast\"\n"),
                      Contains("run.toml:2:6") && Contains("optim.lr expects a float, got a string 'fast'"));
  REQUIRE_THROWS_WITH(parse("[data]\nname = 3\n"), Contains("data.name expects a string, got an int 3"));
  REQUIRE_THROWS_WITH(parse("[model]\nunet_mult = [1, 2.5]\n"), Contains("model.unet_mult expects a list of ints"));
  REQUIRE_THROWS_WITH(parse("[model]\nunet_mult = 2\n"), Contains("expects a list of ints, got an int 2"));
  // Lists are written element by element (toml++'s formatter casts log10(inf) to an integer).
  REQUIRE_THROWS_WITH(parse("[model]\nunet_mult = [2, \"x\", +inf, [nan, {a = -inf}]]\n"),
                      Contains("expects a list of ints, got a list [2, 'x', inf, [nan, {a = -inf}]]"));
  REQUIRE_THROWS_WITH(parse("[optim.lr]\nx = 1\n"), Contains("optim.lr expects a float, got a table"));
  REQUIRE_THROWS_WITH(parse("", {"train.steps=many"}), Contains("'many' is not a TOML value") && Contains("an int"));
}

TEST_CASE("config: ranges and choices are checked", "[config]") {
  REQUIRE_THROWS_WITH(parse("[train]\nsteps = 0\n"), Contains("run.toml:2:9: train.steps must be >= 1, got 0"));
  REQUIRE_THROWS_WITH(parse("", {"train.steps=0"}), Contains("--set train.steps=0: train.steps must be >= 1, got 0"));
  REQUIRE_THROWS_WITH(parse("", {"optim.lr=0"}), Contains("optim.lr must be > 0, got 0.0"));
  REQUIRE_THROWS_WITH(parse("", {"optim.beta2=1"}), Contains("optim.beta2 must be < 1, got 1.0"));
  REQUIRE_THROWS_WITH(parse("", {"optim.lr=nan"}), Contains("optim.lr must be a number, got nan"));
  REQUIRE_THROWS_WITH(parse("", {"model.unet_mult=[1, 0]"}), Contains("model.unet_mult elements must be >= 1, got 0"));
  REQUIRE_THROWS_WITH(parse("[data]\nname = \"mons\"\n"),
                      Contains("data.name must be one of checkerboard, moons, 8gaussians") &&
                          Contains("; got 'mons'; did you mean 'moons'?"));
  REQUIRE_THROWS_WITH(parse("", {"optim.name=rmsprop"}),
                      Contains("optim.name must be one of sgd, adam, adamw; got 'rmsprop'"));
}

TEST_CASE("config: malformed --set arguments are refused", "[config]") {
  REQUIRE_THROWS_WITH(parse("", {"optim.lr"}), Contains("--set optim.lr: expected key=value"));
  REQUIRE_THROWS_WITH(parse("", {"=3"}), Contains("expected key=value"));
  REQUIRE_THROWS_WITH(parse("", {"optim.lr="}), Contains("no value after '='"));
  REQUIRE_THROWS_WITH(parse("", {"train.steps=1\nx=2"}), Contains("more than one TOML value"));
  REQUIRE_THROWS_WITH(parse("", {"data.name=\"moons"}), Contains("is not a TOML value"));
  // A bare string skips the TOML parser, which alone checked its UTF-8 (found by fuzzing: the
  // config then failed to be written back).
  REQUIRE_THROWS_WITH(parse("", {"data.path=/data/\xff"}), Contains("--set data.path=") && Contains("not UTF-8"));
  REQUIRE_THROWS_WITH(parse("", {"data.path=\xc0\xaf"}), Contains("not UTF-8"));      // overlong '/'
  REQUIRE_THROWS_WITH(parse("", {"data.path=\xed\xa0\x80"}), Contains("not UTF-8"));  // a surrogate
  REQUIRE_THROWS_WITH(parse("", {"data.path=caf\xc3"}), Contains("not UTF-8"));       // cut short
  RunConfig accented = parse("", {"data.path=/données/\xf0\x9f\x98\x80"});
  REQUIRE(parse(accented.to_toml()) == accented);
}

TEST_CASE("config: non-ASCII characters where whitespace may stand are refused, and kept inside strings", "[config]") {
  // toml++ 3.3 classifies these code points through a table whose default case is
  // __builtin_unreachable() (marzer/tomlplusplus#190, #295); this pins down that the library the
  // program links answers "not whitespace" for every one of them.
  auto utf8 = [](char32_t c) {
    std::string s;
    if (c < 0x800) {
      s += char(0xc0 | (c >> 6));
    } else {
      s += char(0xe0 | (c >> 12));
      s += char(0x80 | ((c >> 6) & 0x3f));
    }
    s += char(0x80 | (c & 0x3f));
    return s;
  };
  const ConfigSchema schema = flow_matching_schema();
  int checked = 0;
  for (auto [first, last] : {std::pair<char32_t, char32_t>{0xa1, 0x499}, {0x2c5e, 0x3057}, {0xfb26, 0xfefe}}) {
    for (char32_t c = first; c <= last; ++c) {
      if (c == 0x3000) continue;  // IDEOGRAPHIC SPACE, which toml++ knows
      const std::string u = utf8(c);
      INFO("U+" << std::hex << uint32_t(c));
      REQUIRE_THROWS_AS(parse_config_text("run.seed = 1" + u + "\n", "run.toml", {}, schema), Error);
      REQUIRE_THROWS_AS(parse_config_text("[" + u + "]\n", "run.toml", {}, schema), Error);
      // After a line-ending backslash a multi-line string skips whitespace only.
      RunConfig kept = parse_config_text("[data]\npath = \"\"\"\\\n" + u + "\"\"\"\n", "run.toml", {}, schema);
      REQUIRE(kept.get_string("data.path") == u);
      ++checked;
    }
  }
  REQUIRE(checked == 3019);
}

TEST_CASE("config: typed getters refuse unknown keys and other types", "[config]") {
  RunConfig c = parse("");
  REQUIRE_THROWS_WITH(c.get_int("train.step"), Contains("no key 'train.step'; did you mean 'train.steps'?"));
  REQUIRE_THROWS_WITH(c.get_float("train.steps"), Contains("train.steps is an int, read as a float"));
  REQUIRE_THROWS_WITH(c.get_string("optim.lr"), Contains("optim.lr is a float, read as a string"));
  REQUIRE_THROWS_AS(c.get_int_list("model.width"), Error);
}

TEST_CASE("config: to_toml writes every key and parses back to the same values", "[config]") {
  RunConfig c = parse("", {"optim.lr=3e-4", "data.path=\"/tmp/a \\\"quoted\\\" dir\\n\"", "model.unet_mult=[]",
                           "meanflow.time_mu=-1", "sample.cfg_scale=2", "train.steps=123456789012"});
  std::string text = c.to_toml();
  CHECK_THAT(text, Contains("[optim]\n") && Contains("lr = 0.0003\n") && Contains("cfg_scale = 2.0\n") &&
                       Contains("unet_mult = []\n") && Contains("unet_attention = [7]\n"));
  RunConfig back = parse(text);
  CHECK(back == c);
  CHECK(back.get_string("data.path") == "/tmp/a \"quoted\" dir\n");
  CHECK(back.to_toml() == text);
  CHECK(parse(RunConfig(flow_matching_schema()).to_toml()) == RunConfig(flow_matching_schema()));
}

TEST_CASE("config: load_config reads a file and names it in errors", "[config]") {
  auto path = std::filesystem::temp_directory_path() / "dualflow_test_config.toml";
  {
    std::ofstream f(path);
    f << "[train]\nsteps = 5\n[sample]\nsolver = \"rk4\"\n";
  }
  RunConfig c = load_config(path.string(), {"sample.steps=10"}, flow_matching_schema());
  CHECK(c.get_int("train.steps") == 5);
  CHECK(c.get_string("sample.solver") == "rk4");
  CHECK(c.get_int("sample.steps") == 10);
  {
    std::ofstream f(path);
    f << "[train]\nsteps = = 5\n";
  }
  REQUIRE_THROWS_WITH(load_config(path.string(), {}, flow_matching_schema()), Contains(path.string() + ":2:"));
  std::filesystem::remove(path);
  REQUIRE_THROWS_WITH(load_config(path.string(), {}, flow_matching_schema()), Contains("cannot open"));
}

TEST_CASE("config: schema help lists keys, and schema mistakes are refused", "[config]") {
  std::string help = flow_matching_schema().help();
  CHECK_THAT(help, Contains("[optim]") && Contains("optim.lr") && Contains("float") && Contains("0.001") &&
                       Contains("[> 0]") && Contains("[one of sgd, adam, adamw]") && Contains("list of ints"));
  ConfigSchema s;
  s.add_int("a.b", 1, "a key");
  REQUIRE_THROWS_WITH(s.add_int("a.b", 2, "again"), Contains("added twice"));
  REQUIRE_THROWS_WITH(s.add_int("a", 2, "section"), Contains("already a section"));
  REQUIRE_THROWS_WITH(s.add_int("a.b.c", 2, "under a key"), Contains("both a key and the section"));
  REQUIRE_THROWS_WITH(s.add_int("bad key", 2, "space"), Contains("dotted segments"));
  s.add_int("small", 5, "a bad default").at_most(3);
  REQUIRE_THROWS_WITH(RunConfig(s), Contains("the default of small must be <= 3, got 5"));
}

}  // namespace
}  // namespace dualflow::testing

namespace dualflow::testing {

// A config's program is told by its file name: *classifier*.toml configure `dualflow
// train-classifier` (classifier_schema), every other one `dualflow train`.
TEST_CASE("every shipped config under configs/ loads against the schema", "[config]") {
  int flow = 0, classifier = 0;
  for (const auto& entry : std::filesystem::directory_iterator(DUALFLOW_CONFIG_DIR)) {
    if (entry.path().extension() != ".toml") continue;
    INFO(entry.path().string());
    if (entry.path().filename().string().find("classifier") != std::string::npos) {
      RunConfig c = load_config(entry.path().string(), {}, classifier_schema());
      REQUIRE_FALSE(c.get_string("data.name").empty());
      ++classifier;
    } else {
      RunConfig c = load_config(entry.path().string(), {}, flow_matching_schema());
      REQUIRE_FALSE(c.get_string("method.name").empty());
      ++flow;
    }
  }
  REQUIRE(flow >= 6);
  REQUIRE(classifier >= 1);
}

TEST_CASE("configs/fmnist_classifier.toml: the evaluation classifier's settings", "[config]") {
  RunConfig c = load_config(std::string(DUALFLOW_CONFIG_DIR) + "/fmnist_classifier.toml", {}, classifier_schema());
  REQUIRE(c.get_string("data.name") == "fashion_mnist");
  REQUIRE(c.get_int("model.features") == 128);
  REQUIRE(c.get_int("train.steps") > c.get_int("optim.warmup_steps"));
  // It round-trips through the TOML a checkpoint stores.
  REQUIRE(parse_config_text(c.to_toml(), "<round trip>", {}, classifier_schema()) == c);
  // The flow-matching schema refuses it with a pointer to the misplaced key.
  REQUIRE_THROWS(load_config(std::string(DUALFLOW_CONFIG_DIR) + "/fmnist_classifier.toml", {}, flow_matching_schema()));
}

}  // namespace dualflow::testing
