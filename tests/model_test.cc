#include "core/model.h"

#include <catch2/catch.hpp>

#include "config/secret.h"
#include "core/plan.h"

using namespace stackflip;

TEST_CASE("LSNs round-trip between PostgreSQL text and 64-bit positions") {
  REQUIRE(parse_lsn("0/3000060") == 0x3000060u);
  REQUIRE(parse_lsn("1A/FF") == ((0x1Aull << 32) | 0xFF));
  REQUIRE(format_lsn(0x3000060u) == "0/3000060");
  REQUIRE(format_lsn((0x1Aull << 32) | 0xFF) == "1A/FF");
  for (const char* bad : {"", "/", "0/", "/1", "x/1", "123456789/0", "0/3000060/1"})
    CHECK_FALSE(parse_lsn(bad).has_value());
}

TEST_CASE("action kinds use DESIGN.md's names") {
  for (auto k :
       {ActionKind::maintenance_on, ActionKind::replication_wait, ActionKind::replication_stop,
        ActionKind::database_promote, ActionKind::maintenance_off, ActionKind::traffic_switch,
        ActionKind::replication_start})
    REQUIRE(parse_action_kind(to_string(k)) == k);
  REQUIRE(std::string(to_string(ActionKind::traffic_switch)) == "traffic.switch");
  REQUIRE_FALSE(parse_action_kind("database.demote"));
}

TEST_CASE("secret references resolve from the environment and files, never echoing values") {
  setenv("STACKFLIP_TEST_SECRET", "s3cr3t-value", 1);
  REQUIRE(is_secret_reference("${env:STACKFLIP_TEST_SECRET}"));
  REQUIRE_FALSE(is_secret_reference("s3cr3t-value"));
  REQUIRE_FALSE(is_secret_reference("x${env:A}"));
  auto v = resolve_secret("${env:STACKFLIP_TEST_SECRET}");
  REQUIRE(v.ok());
  REQUIRE(*v == "s3cr3t-value");
  auto missing = resolve_secret("${env:STACKFLIP_TEST_UNSET_VARIABLE}");
  REQUIRE_FALSE(missing.ok());
  REQUIRE(missing.error().message.find("STACKFLIP_TEST_UNSET_VARIABLE") != std::string::npos);
  auto nofile = resolve_secret("${file:/nonexistent/secret}");
  REQUIRE_FALSE(nofile.ok());
}
