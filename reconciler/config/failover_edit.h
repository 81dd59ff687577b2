// failover_edit.h — the text of a failover commit (issue 14): the config as
// written, with one group's `active:` naming another stack and, when asked,
// `allow_data_loss: true`. Nothing else of the file changes (comments,
// order, quoting and the other groups stay byte for byte), and the result is
// checked before it is offered: parsed again, it must be the same document
// with exactly those two values changed, and it must load without error.
#pragma once

#include <string>

#include "util/result.h"

namespace stackflip {

// `file` names the text in errors. Fails (saying why, so a person can make
// the commit by hand) when the group's keys are written in a way this edit
// does not handle, e.g. a flow mapping `{active: fra, ...}` that would need a
// new key, or when the edited text does not check out.
Result<std::string> edit_failover(const std::string& file, const std::string& text,
                                  const std::string& group, const std::string& new_active,
                                  bool allow_data_loss);

}  // namespace stackflip
