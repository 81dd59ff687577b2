// health_probe.h — a stack's application health check over HTTP (issue 14).
//
// GET the configured URL, bounded by its timeout; healthy on a 2xx status,
// failing on anything else: another status (a redirect is not followed), no
// answer in time, a refused connection, a TLS failure. Nothing but the
// request line and Host is sent (no secret, no cookie); the answer's body is
// not read beyond its first chunk. The host policy is asked again before
// every request (host_policy.h `health_urls:`): an origin it does not grant
// is never contacted, and the check then reports nothing (a config the host
// refused is an error at load time, never a failing stack).
#pragma once

#include <memory>

#include "core/model.h"
#include "core/provider.h"

namespace stackflip {

std::unique_ptr<HealthProbe> make_http_health_probe(const HealthSpec& spec);

}  // namespace stackflip
