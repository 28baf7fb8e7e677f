#include "service/exposition.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace vfiod::service {

namespace {

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

/// [a-zA-Z_:][a-zA-Z0-9_:]* for metric names (colons: `colon`), labels without.
bool ValidName(std::string_view name, bool colon) {
  if (name.empty() || !(IsNameStart(name[0]) || (colon && name[0] == ':'))) {
    return false;
  }
  for (char c : name) {
    if (!IsNameChar(c) && !(colon && c == ':')) {
      return false;
    }
  }
  return true;
}

[[noreturn]] void Misuse(std::string_view what, std::string_view name) {
  const std::string message =
      fmt::format("metrics exposition: {}: \"{}\" (a bug in vfiod)", what, name);
  spdlog::critical("{}", message);
  (void)std::fprintf(stderr, "%s\n", message.c_str());  // the log may be the journal
  std::abort();
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kHistogram:
      return "histogram";
    case MetricType::kGauge:
      break;
  }
  return "gauge";
}

std::string Seconds(uint64_t micros) {
  return Exposition::FormatFloat(static_cast<double>(micros) / 1e6);
}

}  // namespace

std::string Exposition::EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Exposition::EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Exposition::FormatFloat(double value) {
  if (std::isnan(value)) {
    return "NaN";
  }
  if (std::isinf(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }
  return fmt::format("{}", value);
}

void Exposition::Family(std::string_view name, MetricType type, std::string_view help) {
  if (!ValidName(name, true)) {
    Misuse("invalid metric name", name);
  }
  if (!families_.insert(std::string(name)).second) {
    Misuse("metric family written twice", name);
  }
  if ((type == MetricType::kCounter) != name.ends_with("_total")) {
    Misuse("a counter's name, and only a counter's, ends in _total", name);
  }
  family_ = name;
  type_ = type;
  text_ +=
      fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, EscapeHelp(help), name, TypeName(type));
}

void Exposition::WriteSeries(std::string_view suffix, const Labels& labels, const std::string* le,
                             std::string_view value) {
  if (family_.empty()) {
    Misuse("a sample before any family", suffix);
  }
  text_ += family_;
  text_ += suffix;
  if (!labels.empty() || le != nullptr) {
    char sep = '{';
    for (const auto& [name, label_value] : labels) {
      if (!ValidName(name, false) || name.starts_with("__") || name == "le") {
        Misuse("invalid label name", name);
      }
      text_ += fmt::format("{}{}=\"{}\"", sep, name, EscapeLabelValue(label_value));
      sep = ',';
    }
    if (le != nullptr) {
      text_ += fmt::format("{}le=\"{}\"", sep, *le);
    }
    text_ += '}';
  }
  text_ += ' ';
  text_ += value;
  text_ += '\n';
}

void Exposition::Sample(const Labels& labels, uint64_t value) {
  if (type_ == MetricType::kHistogram) {
    Misuse("a plain sample in a histogram family", family_);
  }
  WriteSeries("", labels, nullptr, std::to_string(value));
}

void Exposition::Sample(const Labels& labels, double value) {
  if (type_ == MetricType::kHistogram) {
    Misuse("a plain sample in a histogram family", family_);
  }
  WriteSeries("", labels, nullptr, FormatFloat(value));
}

void Exposition::Histogram(const Labels& labels, std::span<const uint64_t> bounds_us,
                           std::span<const uint64_t> counts, uint64_t sum_us) {
  if (type_ != MetricType::kHistogram || counts.size() != bounds_us.size() + 1) {
    Misuse("a histogram outside a histogram family, or counts that do not fit", family_);
  }
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_us.size(); ++i) {
    cumulative += counts[i];
    const std::string le = Seconds(bounds_us[i]);
    WriteSeries("_bucket", labels, &le, std::to_string(cumulative));
  }
  cumulative += counts.back();
  const std::string inf = "+Inf";
  WriteSeries("_bucket", labels, &inf, std::to_string(cumulative));
  WriteSeries("_sum", labels, nullptr, Seconds(sum_us));
  WriteSeries("_count", labels, nullptr, std::to_string(cumulative));
}

std::string Exposition::Take() {
  std::string out = std::move(text_);
  text_.clear();
  family_.clear();
  families_.clear();
  return out;
}

}  // namespace vfiod::service
