#include "vfioctl/commands.h"

#include "vfioctl/sizes.h"

namespace vfiod::vfioctl {

void OnParsed(CLI::App* sub, Dispatch& dispatch, Action action) {
  sub->callback([&dispatch, action = std::move(action)] { dispatch.action = action; });
}

CLI::Validator SizeArg() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto value = ParseSize(text);
        if (!value) {
          return "'" + text + "' is not a size or address (examples: 4096, 2M, 1G, 0x100000)";
        }
        text = std::to_string(*value);
        return {};
      },
      "SIZE", "size");
}

CmdResult CallAndEmit(Session& session, const std::string& method, const nlohmann::json& params,
                      const std::function<void(std::ostream&, const nlohmann::json&)>& human) {
  auto reply = session.Call(method, params);
  if (!reply) {
    return std::unexpected(std::move(reply).error());
  }
  const nlohmann::json& result = reply->result;
  session.Emit(result, [&](std::ostream& out) { human(out, result); });
  return {};
}

}  // namespace vfiod::vfioctl
