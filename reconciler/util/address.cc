#include "util/address.h"

#include <arpa/inet.h>

#include <cctype>

namespace stackflip {

AddressKind address_kind(const std::string& text) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) return AddressKind::ipv4;
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) return AddressKind::ipv6;
  if (text.empty() || text.size() > 254 || text == "." || text.front() == '.')
    return AddressKind::invalid;
  if (text.size() == 254 && text.back() != '.') return AddressKind::invalid;
  size_t label = 0;
  for (char c : text) {
    if (c == '.') {
      if (label == 0) return AddressKind::invalid;  // ".." or a leading dot
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_')
      return AddressKind::invalid;
    if (++label > 63) return AddressKind::invalid;
  }
  // All-numeric dotted text that inet_pton refused ("10.0.0.256") is a
  // mistyped address, not a name.
  bool numeric = true;
  for (char c : text) numeric &= std::isdigit(static_cast<unsigned char>(c)) || c == '.';
  return numeric ? AddressKind::invalid : AddressKind::name;
}

const char* to_string(AddressKind k) {
  switch (k) {
    case AddressKind::ipv4:
      return "an IPv4 address";
    case AddressKind::ipv6:
      return "an IPv6 address";
    case AddressKind::name:
      return "a host name";
    case AddressKind::invalid:
      return "neither an IP address nor a host name";
  }
  return "";
}

AddressKind kind_for_record_type(const std::string& type) {
  if (type == "A") return AddressKind::ipv4;
  if (type == "AAAA") return AddressKind::ipv6;
  if (type == "CNAME") return AddressKind::name;
  return AddressKind::invalid;
}

std::string canonical_address(const std::string& text) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1 && inet_ntop(AF_INET, buf, out, sizeof out))
    return out;
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1 && inet_ntop(AF_INET6, buf, out, sizeof out))
    return out;
  std::string name = text;
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!name.empty() && name.back() != '.') name += '.';
  return name;
}

}  // namespace stackflip
