// A small, strict parser of the Prometheus text exposition format 0.0.4, for
// tests: written from the format's description, independent of vfiod's
// writer (daemon/service/exposition.cc), so the two check each other.
//
// It checks every line: `# HELP name text` and `# TYPE name type` (each at
// most once per family, both before the family's first sample), metric and
// label names, label value and HELP escapes (only \\, \" and \n; \" not in
// HELP), numbers as Go's ParseFloat takes them (+Inf, -Inf, NaN), optional
// integer timestamps; a family's lines form one group; no series twice.
// Counters: not negative, not NaN. Histograms, per label set: `le` only on
// _bucket, bounds strictly increasing and ending with +Inf, cumulative
// counts never decreasing, +Inf's count == _count, _sum and _count present.
// Stricter than the format where vfiod never writes the thing: every family
// needs both HELP and TYPE; no blank lines, other comments or summaries.
#pragma once

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace vfiod::promtest {

using PromLabels = std::map<std::string, std::string>;

struct PromSample {
  std::string name;  ///< with a histogram's suffix
  PromLabels labels;
  double value = 0;
};

struct PromFamily {
  std::string name;
  std::string type;
  std::string help;  ///< unescaped
  std::vector<PromSample> samples;
};

struct PromText {
  std::map<std::string, PromFamily> families;
  /// The value of series `name{labels}` (any family); nullopt when absent.
  [[nodiscard]] std::optional<double> Value(const std::string& name,
                                            const PromLabels& labels = {}) const {
    for (const auto& [fname, family] : families) {
      for (const PromSample& s : family.samples) {
        if (s.name == name && s.labels == labels) {
          return s.value;
        }
      }
    }
    return std::nullopt;
  }
  /// Every sample of series name `name`, whatever its labels.
  [[nodiscard]] std::vector<PromSample> All(const std::string& name) const {
    std::vector<PromSample> out;
    for (const auto& [fname, family] : families) {
      for (const PromSample& s : family.samples) {
        if (s.name == name) {
          out.push_back(s);
        }
      }
    }
    return out;
  }
};

namespace prom_detail {

inline bool NameStart(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}
inline bool NameChar(char c, bool colon) { return NameStart(c, colon) || (c >= '0' && c <= '9'); }

/// Takes a name ([a-zA-Z_:][a-zA-Z0-9_:]*, no colon for labels) off the front of `s`.
inline std::optional<std::string> TakeName(std::string_view& s, bool colon) {
  if (s.empty() || !NameStart(s[0], colon)) {
    return std::nullopt;
  }
  size_t n = 1;
  while (n < s.size() && NameChar(s[n], colon)) {
    ++n;
  }
  std::string name(s.substr(0, n));
  s.remove_prefix(n);
  return name;
}

/// A float as Go's strconv.ParseFloat takes it (decimal forms and Inf/NaN).
inline std::optional<double> ParseNumber(std::string_view s) {
  if (s == "+Inf" || s == "Inf") {
    return HUGE_VAL;
  }
  if (s == "-Inf") {
    return -HUGE_VAL;
  }
  if (s == "NaN") {
    return std::nan("");
  }
  if (s.empty()) {
    return std::nullopt;
  }
  size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  bool digits = false;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    ++i, digits = true;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      ++i, digits = true;
    }
  }
  if (!digits) {
    return std::nullopt;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
      ++i;
    }
    size_t exp_start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    if (i == exp_start) {
      return std::nullopt;
    }
  }
  if (i != s.size()) {
    return std::nullopt;
  }
  return std::strtod(std::string(s).c_str(), nullptr);
}

/// Unescapes text up to an unescaped `end` char ('"' for a label value, or
/// '\0' for the rest of a HELP line); `quote_escape`: \" allowed.
inline std::optional<std::string> Unescape(std::string_view& s, char end, bool quote_escape) {
  std::string out;
  while (!s.empty()) {
    char c = s[0];
    if (end != '\0' && c == end) {
      return out;
    }
    s.remove_prefix(1);
    if (c == '\\') {
      if (s.empty()) {
        return std::nullopt;
      }
      char e = s[0];
      s.remove_prefix(1);
      if (e == '\\') {
        out += '\\';
      } else if (e == 'n') {
        out += '\n';
      } else if (e == '"' && quote_escape) {
        out += '"';
      } else {
        return std::nullopt;
      }
    } else {
      out += c;
    }
  }
  if (end != '\0') {
    return std::nullopt;  // unterminated
  }
  return out;
}

inline std::string Fail(size_t line, const std::string& why) {
  return "line " + std::to_string(line) + ": " + why;
}

/// The family a sample name belongs to: itself, or a histogram's base name.
inline std::string FamilyOf(const std::string& name,
                            const std::map<std::string, PromFamily>& fams) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    std::string_view n(name);
    if (n.ends_with(suffix)) {
      std::string base(n.substr(0, n.size() - std::string_view(suffix).size()));
      auto it = fams.find(base);
      if (it != fams.end() && it->second.type == "histogram") {
        return base;
      }
    }
  }
  return name;
}

/// Checks the histogram invariants of `f`; "" when they hold.
inline std::string CheckHistogram(const PromFamily& f) {
  struct Series {
    std::vector<std::pair<double, double>> buckets;  // (le, cumulative count), in text order
    std::optional<double> sum, count;
  };
  std::map<PromLabels, Series> by_labels;
  for (const PromSample& s : f.samples) {
    PromLabels labels = s.labels;
    const bool bucket = s.name == f.name + "_bucket";
    if (bucket != labels.contains("le")) {
      return f.name + ": le must be on _bucket samples and only there";
    }
    if (s.name == f.name) {
      return f.name + ": a histogram sample needs _bucket, _sum or _count";
    }
    if (bucket) {
      auto le = ParseNumber(labels["le"]);
      if (!le || std::isnan(*le)) {
        return f.name + ": bad le \"" + labels["le"] + "\"";
      }
      labels.erase("le");
      by_labels[labels].buckets.emplace_back(*le, s.value);
    } else if (s.name == f.name + "_sum") {
      by_labels[labels].sum = s.value;
    } else {
      by_labels[labels].count = s.value;
    }
  }
  for (const auto& [labels, series] : by_labels) {
    if (series.buckets.empty() || !series.sum || !series.count) {
      return f.name + ": a series lacks buckets, _sum or _count";
    }
    for (size_t i = 1; i < series.buckets.size(); ++i) {
      if (!(series.buckets[i].first > series.buckets[i - 1].first)) {
        return f.name + ": bucket bounds not strictly increasing";
      }
      if (series.buckets[i].second < series.buckets[i - 1].second) {
        return f.name + ": bucket counts not cumulative";
      }
    }
    if (!std::isinf(series.buckets.back().first)) {
      return f.name + ": no +Inf bucket last";
    }
    if (series.buckets.back().second != *series.count) {
      return f.name + ": the +Inf bucket differs from _count";
    }
    if (*series.count < 0 || std::isnan(*series.sum)) {
      return f.name + ": bad _count or _sum";
    }
  }
  return "";
}

}  // namespace prom_detail

/// Parses and checks `text` (see the file comment). The error names the line.
inline std::expected<PromText, std::string> ParsePrometheusText(std::string_view text) {
  using namespace prom_detail;  // NOLINT(google-build-using-namespace)
  PromText out;
  std::set<std::string> closed;  // families whose group of lines has ended
  std::string current;           // the family of the last line
  std::set<std::pair<std::string, PromLabels>> series;
  if (!text.empty() && text.back() != '\n') {
    return std::unexpected("the text does not end with a newline");
  }
  size_t line_no = 0;
  auto enter = [&](const std::string& family) -> bool {
    if (family != current) {
      if (closed.contains(family)) {
        return false;
      }
      if (!current.empty()) {
        closed.insert(current);
      }
      current = family;
    }
    return true;
  };
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const bool help = line[2] == 'H';
      line.remove_prefix(7);
      auto name = TakeName(line, true);
      if (!name || (!line.empty() && line[0] != ' ')) {
        return std::unexpected(Fail(line_no, "bad metric name in a HELP/TYPE line"));
      }
      if (!enter(*name)) {
        return std::unexpected(Fail(line_no, *name + ": its lines are not one group"));
      }
      PromFamily& f = out.families[*name];
      f.name = *name;
      if (!f.samples.empty()) {
        return std::unexpected(Fail(line_no, *name + ": HELP/TYPE after a sample"));
      }
      std::string_view rest = line.empty() ? line : line.substr(1);
      if (help) {
        auto unescaped = Unescape(rest, '\0', false);
        if (!unescaped || !f.help.empty()) {
          return std::unexpected(Fail(line_no, *name + ": bad or second HELP"));
        }
        f.help = *unescaped;
        if (f.help.empty()) {
          return std::unexpected(Fail(line_no, *name + ": empty HELP"));
        }
      } else {
        static const std::set<std::string_view> kTypes = {"counter", "gauge", "histogram",
                                                          "untyped"};
        if (!f.type.empty() || !kTypes.contains(rest)) {
          return std::unexpected(Fail(line_no, *name + ": bad or second TYPE"));
        }
        f.type = std::string(rest);
      }
      continue;
    }
    if (line.empty() || line[0] == '#') {
      return std::unexpected(Fail(line_no, "a blank line or a comment other than HELP/TYPE"));
    }
    PromSample sample;
    auto name = TakeName(line, true);
    if (!name) {
      return std::unexpected(Fail(line_no, "bad metric name"));
    }
    sample.name = *name;
    if (!line.empty() && line[0] == '{') {
      line.remove_prefix(1);
      while (!line.empty() && line[0] != '}') {
        auto label = TakeName(line, false);
        if (!label || label->starts_with("__") || line.size() < 2 || line[0] != '=' ||
            line[1] != '"') {
          return std::unexpected(Fail(line_no, "bad label"));
        }
        line.remove_prefix(2);
        auto value = Unescape(line, '"', true);
        if (!value) {
          return std::unexpected(Fail(line_no, *label + ": bad label value"));
        }
        line.remove_prefix(1);  // the closing quote
        if (!sample.labels.emplace(*label, *value).second) {
          return std::unexpected(Fail(line_no, *label + ": label twice"));
        }
        if (!line.empty() && line[0] == ',') {
          line.remove_prefix(1);
        } else if (line.empty() || line[0] != '}') {
          return std::unexpected(Fail(line_no, "expected , or }"));
        }
      }
      if (line.empty()) {
        return std::unexpected(Fail(line_no, "unterminated labels"));
      }
      line.remove_prefix(1);
    }
    if (line.empty() || line[0] != ' ') {
      return std::unexpected(Fail(line_no, "expected a space before the value"));
    }
    line.remove_prefix(1);
    std::string_view value_text = line.substr(0, line.find(' '));
    auto value = ParseNumber(value_text);
    if (!value) {
      return std::unexpected(Fail(line_no, "bad value \"" + std::string(value_text) + "\""));
    }
    if (value_text.size() < line.size()) {  // a timestamp: an int64 of milliseconds
      std::string_view ts = line.substr(value_text.size() + 1);
      size_t i = !ts.empty() && ts[0] == '-' ? 1 : 0;
      if (i == ts.size() || ts.find_first_not_of("0123456789", i) != std::string_view::npos) {
        return std::unexpected(Fail(line_no, "bad timestamp"));
      }
    }
    sample.value = *value;
    const std::string family = FamilyOf(sample.name, out.families);
    auto f = out.families.find(family);
    if (f == out.families.end() || f->second.type.empty() || f->second.help.empty()) {
      return std::unexpected(Fail(line_no, sample.name + ": no HELP and TYPE before it"));
    }
    if (!enter(family)) {
      return std::unexpected(Fail(line_no, family + ": its lines are not one group"));
    }
    if (!series.emplace(sample.name, sample.labels).second) {
      return std::unexpected(Fail(line_no, sample.name + ": the same series twice"));
    }
    if (f->second.type == "counter" && (std::isnan(sample.value) || sample.value < 0)) {
      return std::unexpected(Fail(line_no, sample.name + ": a counter must not be negative"));
    }
    if (f->second.type != "histogram" && sample.labels.contains("le")) {
      return std::unexpected(Fail(line_no, sample.name + ": le outside a histogram"));
    }
    f->second.samples.push_back(std::move(sample));
  }
  for (const auto& [name, f] : out.families) {
    if (f.type.empty() || f.help.empty()) {
      return std::unexpected(name + ": HELP or TYPE missing");
    }
    if (f.type == "histogram") {
      if (std::string why = CheckHistogram(f); !why.empty()) {
        return std::unexpected(why);
      }
    }
  }
  return out;
}

}  // namespace vfiod::promtest
