// redact.h — keeping secrets out of everything stackflip writes.
//
// Two layers. Every secret value stackflip resolves (secret.h) is remembered
// here, and redact() replaces it, and its URL-encoded and JSON-escaped forms,
// wherever it appears: this catches a secret echoed back by a server in an
// error body, whatever the surrounding syntax. Then, for secrets stackflip
// never resolved itself (a password in a DSN a server quotes back, a token in
// a URL), credential-shaped text is masked: the value after a credential key
// (password, passwd, pwd, secret, api_key, api-key, x-api-key, token,
// authorization, private_key, credential, in any case, followed by `=`, `:`,
// `%3D` or `%3A`, with quotes and blanks around it as JSON, YAML, headers and
// conninfo write them), the word after `Bearer`/`Basic` (any blank), and the
// password of URL userinfo (`scheme://user:pass@`). A value that is itself a
// secret reference (`${env:…}`, `${file:…}`) is kept: it says where the
// secret lives, not what it is.
//
// Every output goes through redact(): plan text/JSON/Markdown, observe, logs,
// the journal and state store, /status, /observed, /metrics, notifications.
//
// Thread safety: both functions may be called from any thread.
#pragma once

#include <string>
#include <string_view>

namespace stackflip {

// Values shorter than 4 bytes are not remembered (they would mask ordinary
// text); such a secret is too short to be one.
void remember_secret_value(std::string_view value);

std::string redact(std::string_view text);

}  // namespace stackflip
