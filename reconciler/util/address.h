// address.h — what kind of traffic target a stack's `address` is, and which
// DNS record types can hold it.
//
// A records hold IPv4 addresses, AAAA records IPv6 addresses, CNAME records
// one host name. validate checks every address against the types of its
// group's records (so a typo is refused before a switch starts, issue 11),
// and the PowerDNS driver uses the same test to pick a stack's values for a
// record type.
#pragma once

#include <string>

namespace stackflip {

enum class AddressKind { ipv4, ipv6, name, invalid };

// inet_pton for the two families; a name is letters, digits, '-', '_' and
// dots, at most 253 characters, with a trailing dot or not.
AddressKind address_kind(const std::string& text);

const char* to_string(AddressKind k);  // "an IPv4 address", ...

// The kind a record type holds: A → ipv4, AAAA → ipv6, CNAME → name;
// invalid for any other type.
AddressKind kind_for_record_type(const std::string& type);

// How a value is compared with what a provider holds: IP addresses in their
// canonical text (so "2001:DB8::0:1" equals "2001:db8::1"), names lower-case
// and fully qualified.
std::string canonical_address(const std::string& text);

}  // namespace stackflip
