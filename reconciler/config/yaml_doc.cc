#include "config/yaml_doc.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <cerrno>
#include <cstdlib>
#include <istream>
#include <streambuf>
#include <unordered_map>

namespace stackflip {

namespace {

constexpr int kMaxDepth = 64;  // also stops alias cycles
// Past kMaxDepth a subtree is reported and skipped, but yaml-cpp still
// recurses through it (up to its own limit of 2,000 levels, which then only
// says "bad file"); at this depth the parse stops.
constexpr int kStopDepth = 4 * kMaxDepth;
constexpr const char* kTooDeep = "nesting is too deep";

Mark to_mark(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return Mark{file, 0, 0};
  return Mark{file, m.line + 1, m.column + 1};
}

bool is_core_null(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<bool> core_bool(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// [-+]?[0-9]+
bool is_core_int(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (!is_digit(s[i])) return false;
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_core_float(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && is_digit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

// One parser event. Live events point into yaml-cpp's arguments; the events
// of an anchored node are also kept (as Event) so that an alias replays them.
struct EventRef {
  enum Kind : uint8_t { kNull, kScalar, kSeqStart, kSeqEnd, kMapStart, kMapEnd, kAlias };
  Kind kind;
  bool plain;  // scalar: neither quoted nor tagged (yaml-cpp's tag "?")
  const YAML::Mark* mark;
  YAML::anchor_t anchor;  // anchor defined by this node, or (kAlias) referred to
  const std::string* value;

  bool starts() const { return kind == kSeqStart || kind == kMapStart; }
  bool ends() const { return kind == kSeqEnd || kind == kMapEnd; }
};

struct Event {
  EventRef::Kind kind;
  bool plain;
  YAML::Mark mark;
  YAML::anchor_t anchor;
  std::string value;
  EventRef ref() const { return EventRef{kind, plain, &mark, anchor, &value}; }
};

// The events of one anchored node, recorded while it is parsed.
struct Recording {
  std::vector<Event> events;
  int level = 0;  // open containers; 0 once the node is complete
  bool complete = false;
};

// Keys seen in one mapping, with the mark of their first occurrence.
class KeySet {
 public:
  void clear() {
    small_.clear();
    large_.clear();
  }
  // The first mark of `name`, or nullptr after recording it at `mark`.
  const std::pair<int, int>* insert(const std::string& name, std::pair<int, int> mark) {
    if (large_.empty()) {
      for (const auto& [n, m] : small_)
        if (n == name) return &m;
      if (small_.size() < kSmall) {
        small_.emplace_back(name, mark);
        return nullptr;
      }
      for (auto& [n, m] : small_) large_.emplace(std::move(n), m);
      small_.clear();
    }
    auto [it, inserted] = large_.emplace(name, mark);
    return inserted ? nullptr : &it->second;
  }

 private:
  static constexpr size_t kSmall = 16;
  std::vector<std::pair<std::string, std::pair<int, int>>> small_;
  std::unordered_map<std::string, std::pair<int, int>> large_;
};

// Builds the RapidJSON document (through its SAX interface) and the marks
// from the events of one YAML document; behaves as a walk over the node
// tree that yaml-cpp's YAML::Load would build, without building it.
class Builder {
 public:
  // `budget`: how many values (scalars, nulls, containers) the document may
  // expand to. Aliases replay their anchor's events, so a few lines of nested
  // aliases ("billion laughs") would otherwise ask for 10^9 values; a file
  // without aliases has fewer values than bytes and never reaches it.
  Builder(YamlDocument& doc, std::vector<Diagnostic>& errors, size_t budget)
      : doc_(doc), errors_(errors), budget_(budget) {}

  // One event straight from the parser.
  void live(const EventRef& e) {
    for (size_t i = 0; i < open_.size();) {
      Recording& r = anchors_[open_[i]];
      r.events.push_back(Event{e.kind, e.plain, *e.mark, e.anchor, *e.value});
      r.level += e.starts() ? 1 : e.ends() ? -1 : 0;
      if (r.level == 0) {
        r.complete = true;
        open_.erase(open_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (e.kind != EventRef::kAlias && !e.ends() && e.anchor != YAML::NullAnchor) {
      if (anchors_.size() <= e.anchor) anchors_.resize(e.anchor + 1);
      Recording& r = anchors_[e.anchor];
      r = Recording{};
      r.events.push_back(Event{e.kind, e.plain, *e.mark, e.anchor, *e.value});
      if (e.starts()) {
        r.level = 1;
        open_.push_back(e.anchor);
      } else {
        r.complete = true;
      }
    }
    if (!have_root_) {
      have_root_ = true;
      root_null_ = e.kind == EventRef::kNull || e.mark->is_null();
    }
    handle(e);
  }

  bool done() const { return done_; }
  bool root_null() const { return root_null_; }

 private:
  struct Frame {
    bool is_map = false;
    bool want_key = false;    // map: the next node is a key
    bool skip_value = false;  // map: the next node is the value of a rejected key
    rapidjson::SizeType count = 0;
    size_t ptr_len = 0;  // length of this container's pointer
    size_t slot = 0;     // map: mark slot of the current member
    std::pair<int, int> key_mark;
    KeySet seen;
  };

  static std::pair<int, int> pos(const YAML::Mark& m) {
    if (m.is_null()) return {0, 0};
    return {m.line + 1, m.column + 1};
  }
  void error(std::pair<int, int> m, std::string message) {
    errors_.push_back({Mark{doc_.file, m.first, m.second}, std::move(message)});
  }

  void handle(const EventRef& e) {
    if (exhausted_) return;
    if (!e.ends() && budget_-- == 0) {
      exhausted_ = true;
      error(pos(*e.mark), "aliases expand to too many values; the file is not loaded");
      return;
    }
    if (skip_ > 0) {  // inside a subtree that the tree walk would not visit
      skip_ += e.starts() ? 1 : e.ends() ? -1 : 0;
      return;
    }
    if (e.ends()) {
      Frame& f = frames_[--depth_];
      if (f.is_map)
        doc_.json.EndObject(f.count);
      else
        doc_.json.EndArray(f.count);
      value_done();
      return;
    }
    Frame* top = depth_ ? &frames_[depth_ - 1] : nullptr;
    if (top && top->is_map && top->want_key) return key(e, *top);
    if (top && top->is_map && top->skip_value) {
      top->skip_value = false;
      top->want_key = true;
      if (e.starts()) skip_ = 1;
      return;
    }
    if (e.kind == EventRef::kAlias) return alias(e);

    size_t slot;
    if (!top) {
      slot = doc_.marks.add("");
    } else if (!top->is_map) {
      ptr_.resize(top->ptr_len);
      ptr_ += '/';
      ptr_ += std::to_string(top->count);
      slot = doc_.marks.add(ptr_);
    } else {
      slot = top->slot;
    }
    auto mark = pos(*e.mark);
    // yaml-cpp marks an empty value at the next token (often the next line);
    // the key is where the operator has to look.
    auto shown = top && top->is_map && e.kind == EventRef::kNull ? top->key_mark : mark;
    doc_.marks.set_value(slot, shown.first, shown.second);
    if (depth_ > static_cast<size_t>(kMaxDepth)) {
      error(mark, kTooDeep);
      doc_.json.Null();
      if (e.starts()) skip_ = 1;
      return value_done();
    }
    switch (e.kind) {
      case EventRef::kNull:
        doc_.json.Null();
        return value_done();
      case EventRef::kScalar:
        scalar(e);
        return value_done();
      case EventRef::kSeqStart:
      case EventRef::kMapStart: {
        if (depth_ == frames_.size()) frames_.emplace_back();
        Frame& f = frames_[depth_++];
        f.is_map = e.kind == EventRef::kMapStart;
        f.want_key = f.is_map;
        f.skip_value = false;
        f.count = 0;
        f.ptr_len = ptr_.size();
        f.seen.clear();
        if (f.is_map)
          doc_.json.StartObject();
        else
          doc_.json.StartArray();
        return;
      }
      default:
        return;
    }
  }

  void value_done() {
    if (depth_ == 0) {
      done_ = true;
      return;
    }
    Frame& f = frames_[depth_ - 1];
    ++f.count;
    if (f.is_map) f.want_key = true;
  }

  void key(const EventRef& e, Frame& f) {
    f.want_key = false;
    const EventRef* k = &e;
    EventRef first{};
    if (e.kind == EventRef::kAlias) {  // the anchored node is the key
      const Recording& r = anchors_[e.anchor];
      first = r.events.front().ref();
      if (!r.complete) first.kind = EventRef::kMapStart;  // an alias inside its own anchor
      k = &first;
    }
    auto km = pos(*k->mark);
    if (k->kind != EventRef::kScalar) {
      error(km, "a mapping key must be a plain name");
      if (e.starts()) skip_ = 1;
      f.skip_value = true;
      return;
    }
    const std::string& name = *k->value;
    if (const auto* first_at = f.seen.insert(name, km)) {
      error(km, "duplicate key '" + name + "' (first at line " + std::to_string(first_at->first) +
                    ":" + std::to_string(first_at->second) + ")");
      f.skip_value = true;
      return;
    }
    ptr_.resize(f.ptr_len);
    ptr_ += '/';
    for (char c : name) {
      if (c == '~')
        ptr_ += "~0";
      else if (c == '/')
        ptr_ += "~1";
      else
        ptr_ += c;
    }
    f.slot = doc_.marks.add(ptr_);
    doc_.marks.set_key(f.slot, km.first, km.second);
    f.key_mark = km;
    doc_.json.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()), true);
  }

  // An alias is the anchored node again: its events replayed here, with
  // their own marks.
  void alias(const EventRef& e) {
    const Recording& r = anchors_[e.anchor];
    if (!r.complete) {
      // An alias inside its own anchor is an endless tree; the tree walk
      // stopped it at kMaxDepth. Report that at the anchor, with null here.
      EventRef null = r.events.front().ref();
      null.kind = EventRef::kNull;
      Frame* top = depth_ ? &frames_[depth_ - 1] : nullptr;
      size_t slot = top && top->is_map ? top->slot : 0;
      if (top && !top->is_map) {
        ptr_.resize(top->ptr_len);
        ptr_ += '/';
        ptr_ += std::to_string(top->count);
        slot = doc_.marks.add(ptr_);
      }
      auto mark = pos(*null.mark);
      doc_.marks.set_value(slot, mark.first, mark.second);
      error(mark, kTooDeep);
      doc_.json.Null();
      return value_done();
    }
    for (const Event& ev : r.events) handle(ev.ref());
  }

  void scalar(const EventRef& e) {
    const std::string& s = *e.value;
    auto& json = doc_.json;
    if (e.plain) {
      if (is_core_null(s)) {
        json.Null();
        return;
      }
      if (auto b = core_bool(s)) {
        json.Bool(*b);
        return;
      }
      if (is_core_int(s)) {
        errno = 0;
        long long v = std::strtoll(s.c_str(), nullptr, 10);
        if (errno == 0) {
          json.Int64(v);
          return;
        }
        errno = 0;
        unsigned long long u = std::strtoull(s.c_str(), nullptr, 10);
        if (errno == 0 && s[0] != '-')
          json.Uint64(u);
        else
          json.Double(std::strtod(s.c_str(), nullptr));
        return;
      }
      if (is_core_float(s)) {
        json.Double(std::strtod(s.c_str(), nullptr));
        return;
      }
    }
    json.String(s.data(), static_cast<rapidjson::SizeType>(s.size()), true);
  }

  YamlDocument& doc_;
  std::vector<Diagnostic>& errors_;
  std::vector<Frame> frames_;  // frames_[0, depth_) are the open containers
  size_t depth_ = 0;
  std::string ptr_;  // pointer of the node being handled
  int skip_ = 0;     // open containers of a subtree being skipped
  std::vector<Recording> anchors_;
  std::vector<YAML::anchor_t> open_;  // anchors whose node is being parsed
  bool have_root_ = false, root_null_ = false, done_ = false;
  size_t budget_;
  bool exhausted_ = false;
};

const std::string kEmpty;

// yaml-cpp's EventHandler over a Builder (the first document) or, for any
// later document, only noting where it starts.
class Handler : public YAML::EventHandler {
 public:
  explicit Handler(Builder* b) : b_(b) {}
  std::optional<YAML::Mark> first_mark;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t a) override {
    on({EventRef::kNull, false, &m, a, &kEmpty});
  }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t a) override {
    on({EventRef::kAlias, false, &m, a, &kEmpty});
  }
  void OnScalar(const YAML::Mark& m, const std::string& tag, YAML::anchor_t a,
                const std::string& v) override {
    on({EventRef::kScalar, tag == "?", &m, a, &v});
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                       YAML::EmitterStyle::value) override {
    on({EventRef::kSeqStart, false, &m, a, &kEmpty});
  }
  void OnSequenceEnd() override { on({EventRef::kSeqEnd, false, &kNoMark, 0, &kEmpty}); }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                  YAML::EmitterStyle::value) override {
    on({EventRef::kMapStart, false, &m, a, &kEmpty});
  }
  void OnMapEnd() override { on({EventRef::kMapEnd, false, &kNoMark, 0, &kEmpty}); }

 private:
  void on(const EventRef& e) {
    if (!first_mark) first_mark = *e.mark;
    if (e.starts() && ++depth_ > kStopDepth)
      throw YAML::ParserException(*e.mark, std::string(kTooDeep) + " (more than " +
                                               std::to_string(kMaxDepth) +
                                               " levels); the file is not read further");
    if (e.ends()) --depth_;
    if (b_) b_->live(e);
  }
  int depth_ = 0;
  static inline const YAML::Mark kNoMark = YAML::Mark::null_mark();
  Builder* b_;
};

// A read-only streambuf over a string, so the parser reads the text in place.
class ViewBuf : public std::streambuf {
 public:
  explicit ViewBuf(const std::string& s) {
    char* p = const_cast<char*>(s.data());
    setg(p, p, p + s.size());
  }
};

}  // namespace

std::string pointer_append(const std::string& pointer, std::string_view token) {
  std::string out = pointer;
  out += '/';
  for (char c : token) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

std::vector<std::string> pointer_tokens(const std::string& pointer) {
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < pointer.size()) {
    size_t next = pointer.find('/', i + 1);
    std::string raw =
        pointer.substr(i + 1, next == std::string::npos ? std::string::npos : next - i - 1);
    std::string tok;
    for (size_t k = 0; k < raw.size(); ++k) {
      if (raw[k] == '~' && k + 1 < raw.size()) {
        tok += raw[k + 1] == '1' ? '/' : '~';
        ++k;
      } else {
        tok += raw[k];
      }
    }
    tokens.push_back(tok);
    if (next == std::string::npos) break;
    i = next;
  }
  return tokens;
}

size_t MarkTable::add(std::string_view pointer) {
  entries_.push_back(
      Entry{static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(pointer.size()), {}, {}});
  arena_.append(pointer);
  return entries_.size() - 1;
}

void MarkTable::reserve_for(size_t text_size) {
  // About 2 bytes of pointers and one entry per 20 bytes of a typical config;
  // growing instead would copy (and fault in) the arena several times.
  arena_.reserve(2 * text_size);
  entries_.reserve(text_size / 16);
}

void MarkTable::seal() {
  size_t cap = 16;
  while (cap < entries_.size() * 2) cap *= 2;
  index_.assign(cap, 0);
  const size_t mask = cap - 1;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const std::string_view p = pointer(entries_[i]);
    for (size_t h = std::hash<std::string_view>{}(p)&mask;; h = (h + 1) & mask) {
      if (index_[h] == 0) {
        index_[h] = static_cast<uint32_t>(i + 1);
        break;
      }
      if (pointer(entries_[index_[h] - 1]) == p) break;  // the first one stays
    }
  }
}

const MarkTable::Entry* MarkTable::find(std::string_view p) const {
  if (index_.empty()) return nullptr;
  const size_t mask = index_.size() - 1;
  for (size_t h = std::hash<std::string_view>{}(p)&mask;; h = (h + 1) & mask) {
    if (index_[h] == 0) return nullptr;
    const Entry& e = entries_[index_[h] - 1];
    if (pointer(e) == p) return &e;
  }
}

Mark YamlDocument::mark_of(const std::string& pointer) const {
  std::string_view p = pointer;
  for (;;) {
    const MarkTable::Entry* e = marks.find(p);
    if (e && e->value.known()) return Mark{file, e->value.line, e->value.column};
    if (p.empty()) return Mark{file, 1, 1};
    size_t slash = p.rfind('/');
    p = p.substr(0, slash == std::string_view::npos ? 0 : slash);
  }
}

Mark YamlDocument::key_mark_of(const std::string& pointer) const {
  const MarkTable::Entry* e = marks.find(pointer);
  if (e && e->key.known()) return Mark{file, e->key.line, e->key.column};
  return mark_of(pointer);
}

YamlParse parse_yaml(const std::string& file, const std::string& text) {
  YamlParse out;
  YamlDocument doc;
  doc.file = file;
  doc.marks.reserve_for(text.size());
  std::vector<Diagnostic> errors;
  Builder builder(doc, errors, 2 * text.size() + 10000);
  std::optional<YAML::Mark> second;  // where a second document starts
  bool any = false;
  auto generate = [&](rapidjson::Document& json) {
    (void)json;  // the builder writes to doc.json, which is `json`
    ViewBuf buf(text);
    std::istream in(&buf);
    YAML::Parser parser(in);
    Handler first(&builder);
    if (!parser.HandleNextDocument(first)) return false;
    any = true;
    // A second document is an error; a syntax error in a later one wins.
    // Bounded: yaml-cpp 0.7 can report documents forever without consuming
    // input (a stray ',' where a document starts; found by the loader fuzzer).
    for (int n = 0; n < 64; ++n) {
      Handler rest(nullptr);
      if (!parser.HandleNextDocument(rest)) break;
      if (!second) second = rest.first_mark.value_or(YAML::Mark::null_mark());
    }
    return !second && builder.done();
  };
  try {
    doc.json.Populate(generate);
  } catch (const YAML::DeepRecursion& e) {  // yaml-cpp's own guard: "bad file"
    Mark m = to_mark(file, e.mark);
    if (m.line == 0) m = Mark{file, 1, 1};
    out.errors.push_back({m, std::string(kTooDeep) + " (more than " + std::to_string(kMaxDepth) +
                                 " levels); the file is not read further"});
    return out;
  } catch (const YAML::Exception& e) {
    Mark m = to_mark(file, e.mark);
    if (m.line == 0) m = Mark{file, 1, 1};
    out.errors.push_back({m, e.msg});
    return out;
  }
  if (second) {
    out.errors.push_back({to_mark(file, *second), "only one YAML document per file is allowed"});
    return out;
  }
  if (!any) doc.marks.add("");
  if (!any || builder.root_null()) doc.marks.set_value(0, 1, 1);
  doc.marks.seal();
  out.errors = std::move(errors);
  out.doc = std::move(doc);
  return out;
}

Result<YamlDocument> parse_yaml_document(const std::string& file, const std::string& text) {
  YamlParse p = parse_yaml(file, text);
  if (!p.errors.empty() || !p.doc) {
    sort_diagnostics(p.errors);
    return Err(format_diagnostics(p.errors));
  }
  return std::move(*p.doc);
}

}  // namespace stackflip
