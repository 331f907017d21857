// dht/lt.cpp — the only C++ in cairn: libtorrent-rasterbar 2.0 behind dht/lt.h.
// Settings follow ../shared/LIBTORRENT-NOTES.md: several defaults silently break a small
// private network (routing-table IP restrictions, DHT rate limits, uTP for bulk, seeds
// dropping each other, Nagle on request/response traffic).

#include "dht/lt.h"
extern "C" {
#include "crypto/crypto.h"
}

#include <libtorrent/alert_types.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/kademlia/item.hpp>
#include <libtorrent/magnet_uri.hpp>
#include <libtorrent/peer_connection_handle.hpp>
#include <libtorrent/peer_info.hpp>
#include <libtorrent/posix_disk_io.hpp>
#include <libtorrent/extensions.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/extensions/ut_metadata.hpp>
#include <libtorrent/extensions/ut_pex.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/torrent_info.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace lt = libtorrent;

namespace {

lt::sha256_hash to_sha256(const uint8_t ih[32]) {
  return lt::sha256_hash(reinterpret_cast<const char *>(ih));
}

void copy_err(char *err, size_t len, const std::string &msg) {
  if (err && len) snprintf(err, len, "%s", msg.c_str());
}

// libtorrent 2.0.8 never sets TCP_NODELAY, so every small request waits for Nagle
// (~40 ms). Set it on this process's TCP sockets whenever a connection appears; the call
// is idempotent and the process has few descriptors.
void set_nodelay_all() {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);
    if (fd <= 2) continue;
    int type = 0, domain = 0;
    socklen_t l = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0 || type != SOCK_STREAM) continue;
    l = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0) continue;
    if (domain != AF_INET && domain != AF_INET6) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  closedir(d);
}

std::string endpoint_str(const lt::tcp::endpoint &ep) {
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

struct cn_lt {
  lt::session *ses = nullptr;
  cn_lt_event_fn fn = nullptr;
  void *ctx = nullptr;
  int efd = -1;
  std::atomic<bool> stopping{false};
  std::thread pump;
  std::mutex mu;  // guards torrents
  std::map<lt::sha256_hash, lt::torrent_handle> torrents;
  std::vector<lt::tcp::endpoint> known;  // cn_lt_add_peer; guarded by mu
  // Files whose pieces passed their hash check but whose writes may still be queued:
  // reported once the torrent's disk cache has been flushed. Pump thread only.
  std::map<lt::sha256_hash, std::vector<int>> completed;
  // Roots pushed to this node (query "cairn_root") and holdings announced to it ("cairn_held"):
  // queued on libtorrent's network thread, handed to fn on the pump thread like any other
  // event.
  struct pushed_root {
    bool held;  // a cairn_held: pk, seq, tag and from only
    uint8_t pk[32], sig[64];
    uint64_t seq;
    std::string value;
    char tag[13];
    std::string from;
  };
  std::mutex push_mu;
  std::vector<pushed_root> pushed;
  // Peers banned from a torrent for sending data that failed its hash check, by peer id.
  // libtorrent bans the address it dialled, but the same peer dialling in again is let
  // back in; guarded_peer closes its connection at the handshake.
  std::mutex ban_mu;
  std::set<std::pair<lt::torrent_handle, lt::peer_id>> banned;
  // What small_file_guard refused, for the pump to report: (pack, peer or "" if no peer
  // could be blamed and the piece is only fetched again)
  std::vector<std::pair<lt::sha256_hash, std::string>> refused;

  // Records bad data refused in a pack, banning the peer by id when it is known to have
  // sent it, and wakes the pump to report it.
  void refuse(const lt::torrent_handle &h, lt::peer_connection_handle *culprit) {
    // asked of libtorrent before the lock, which the pump also takes
    lt::sha256_hash ih = h.info_hashes().v2;
    std::string from = culprit ? endpoint_str(culprit->remote()) : std::string();
    {
      std::lock_guard<std::mutex> g(ban_mu);
      if (culprit) banned.insert({h, culprit->pid()});
      refused.push_back({ih, from});
    }
    uint64_t one = 1;
    (void)!write(efd, &one, sizeof one);
  }

  bool is_banned(const lt::torrent_handle &h, const lt::peer_id &pid) {
    std::lock_guard<std::mutex> g(ban_mu);
    return banned.count({h, pid}) != 0;
  }

  lt::torrent_handle find(const uint8_t ih[32]) {
    std::lock_guard<std::mutex> g(mu);
    auto it = torrents.find(to_sha256(ih));
    return it == torrents.end() ? lt::torrent_handle() : it->second;
  }
  void handle(lt::alert *a);
  void run();
};

void cn_lt::handle(lt::alert *a) {
  cn_lt_event ev;
  memset(&ev, 0, sizeof ev);
  ev.file = -1;
  auto torrent_ih = [&](const lt::torrent_handle &h) {
    auto ih = h.info_hashes().v2;
    memcpy(ev.ih, ih.data(), 32);
  };
  if (auto *m = lt::alert_cast<lt::dht_mutable_item_alert>(a)) {
    if (m->item.type() != lt::entry::string_t) return;
    std::string v = m->item.string();
    ev.kind = CN_LT_ITEM;
    ev.salt = reinterpret_cast<const uint8_t *>(m->salt.data());
    ev.salt_len = m->salt.size();
    memcpy(ev.pk, m->key.data(), 32);
    memcpy(ev.sig, m->signature.data(), 64);
    ev.seq = static_cast<uint64_t>(m->seq);
    ev.authoritative = m->authoritative;
    ev.value = reinterpret_cast<const uint8_t *>(v.data());
    ev.value_len = v.size();
    fn(&ev, ctx);
  } else if (auto *p = lt::alert_cast<lt::dht_put_alert>(a)) {
    ev.kind = CN_LT_PUT_DONE;
    memcpy(ev.pk, p->public_key.data(), 32);
    ev.seq = static_cast<uint64_t>(p->seq);
    ev.count = p->num_success;
    fn(&ev, ctx);
  } else if (auto *g = lt::alert_cast<lt::dht_get_peers_reply_alert>(a)) {
    std::vector<lt::tcp::endpoint> eps = g->peers();
    std::vector<std::string> strs;
    for (auto &e : eps) strs.push_back(endpoint_str(e));
    std::vector<const char *> ptrs;
    for (auto &s : strs) ptrs.push_back(s.c_str());
    ev.kind = CN_LT_PEERS;
    memset(ev.ih, 0, 32);
    memcpy(ev.ih, g->info_hash.data(), 20);  // the DHT speaks truncated v2 hashes
    ev.count = static_cast<int>(ptrs.size());
    ev.peers = ptrs.data();
    fn(&ev, ctx);
  } else if (auto *md = lt::alert_cast<lt::metadata_received_alert>(a)) {
    auto ti = md->handle.torrent_file();
    if (!ti) return;
    // Only the metadata was wanted; the full torrent is added again by the caller.
    md->handle.prioritize_files(
        std::vector<lt::download_priority_t>(static_cast<size_t>(ti->num_files()), lt::dont_download));
    // The info dictionary is all the metadata exchange carries (no piece layers): wrap it
    // as a torrent file by hand, since create_torrent would insist on the layers.
    auto info = ti->info_section();
    std::vector<char> buf;
    const char head[] = "d4:info";
    buf.insert(buf.end(), head, head + 7);
    buf.insert(buf.end(), info.begin(), info.end());
    buf.push_back('e');
    ev.kind = CN_LT_METADATA;
    torrent_ih(md->handle);
    ev.value = reinterpret_cast<const uint8_t *>(buf.data());
    ev.value_len = buf.size();
    fn(&ev, ctx);
  } else if (auto *fc = lt::alert_cast<lt::file_completed_alert>(a)) {
    // The piece is verified in memory; its bytes may not be in the file yet.
    completed[fc->handle.info_hashes().v2].push_back(static_cast<int>(fc->index));
    fc->handle.flush_cache();
  } else if (auto *cf = lt::alert_cast<lt::cache_flushed_alert>(a)) {
    auto it = completed.find(cf->handle.info_hashes().v2);
    if (it == completed.end()) return;
    std::vector<int> files;
    files.swap(it->second);
    completed.erase(it);
    ev.kind = CN_LT_FILE_DONE;
    torrent_ih(cf->handle);
    for (int f : files) {
      ev.file = f;
      fn(&ev, ctx);
    }
  } else if (auto *hf = lt::alert_cast<lt::hash_failed_alert>(a)) {
    ev.kind = CN_LT_HASH_FAILED;
    torrent_ih(hf->handle);
    auto ti = hf->handle.torrent_file();
    if (ti) ev.file = static_cast<int>(ti->files().file_index_at_piece(hf->piece_index));
    fn(&ev, ctx);
  } else if (auto *pb = lt::alert_cast<lt::peer_ban_alert>(a)) {
    if (!pb->pid.is_all_zeros()) {
      std::lock_guard<std::mutex> g(ban_mu);
      banned.insert({pb->handle, pb->pid});
    }
    std::string peer = endpoint_str(pb->endpoint);
    ev.kind = CN_LT_PEER_BANNED;
    torrent_ih(pb->handle);
    ev.peer = peer.c_str();
    fn(&ev, ctx);
  } else if (auto *te = lt::alert_cast<lt::torrent_error_alert>(a)) {
    std::string msg = te->error.message() + " (" + te->filename() + ")";
    // A failed disk operation pauses the torrent for good; the data is still wanted and
    // every piece is re-verified, so clear the error and carry on.
    te->handle.clear_error();
    te->handle.resume();
    ev.kind = CN_LT_TORRENT_ERROR;
    torrent_ih(te->handle);
    ev.message = msg.c_str();
    fn(&ev, ctx);
  } else if (getenv("CAIRN_LT_DEBUG") && (a->category() & (lt::alert_category::peer | lt::alert_category::connect | lt::alert_category::error | lt::alert_category::status | lt::alert_category::peer_log))) {
    fprintf(stderr, "lt: %s\n", a->message().c_str());
    if (lt::alert_cast<lt::peer_connect_alert>(a) || lt::alert_cast<lt::incoming_connection_alert>(a)) set_nodelay_all();
  } else if (lt::alert_cast<lt::peer_connect_alert>(a) ||
             lt::alert_cast<lt::incoming_connection_alert>(a)) {
    set_nodelay_all();
  }
}

namespace {

// Answers "cairn_root" and "cairn_held" DHT queries (FORMAT.md §11.2). cairn_root: a peer
// handing over a namespace's newest signed root so that followers need not wait for their
// next poll. cairn_held: a host saying it holds a root's packs in full. Only the shape is
// checked here; the node checks the root's signature and seq like any root's.
struct cairn_query_plugin final : lt::plugin {
  cn_lt *l;
  explicit cairn_query_plugin(cn_lt *owner) : l(owner) {}
  lt::feature_flags_t implemented_features() override { return dht_request_feature; }
  bool on_dht_request(lt::string_view query, lt::udp::endpoint const &from, lt::bdecode_node const &msg,
                      lt::entry &response) override {
    bool held = query == CN_LT_HELD_QUERY;
    if (!held && query != CN_LT_ROOT_PUSH_QUERY) return false;
    lt::bdecode_node a = msg.dict_find_dict("a");
    lt::string_view pk = a ? a.dict_find_string_value("k") : lt::string_view();
    std::int64_t seq = a ? a.dict_find_int_value("seq", -1) : -1;
    std::int64_t version = a ? a.dict_find_int_value("cv", 0) : 0;
    cn_lt::pushed_root r;
    r.held = held;
    bool ok = pk.size() == 32 && seq >= 0;
    if (held) {
      lt::string_view tag = a ? a.dict_find_string_value("n") : lt::string_view();
      ok = ok && version == CN_LT_HELD_VERSION && tag.size() == 12 &&
           tag.find_first_not_of("0123456789abcdef") == lt::string_view::npos;
      if (ok) {
        memcpy(r.tag, tag.data(), 12);
        r.tag[12] = 0;
        r.from = endpoint_str(lt::tcp::endpoint(from.address(), from.port()));
      }
    } else {
      lt::string_view sig = a ? a.dict_find_string_value("sig") : lt::string_view();
      lt::string_view v = a ? a.dict_find_string_value("v") : lt::string_view();
      ok = ok && version == CN_LT_ROOT_PUSH_VERSION && sig.size() == 64 && !v.empty() && v.size() <= 1000;
      if (ok) {
        memcpy(r.sig, sig.data(), 64);
        r.value.assign(v.data(), v.size());
      }
    }
    if (!ok) {
      response["y"] = "e";
      response["e"] = lt::entry::list_type{lt::entry(203), lt::entry(held ? "malformed cairn_held" : "malformed cairn_root")};
      return true;
    }
    memcpy(r.pk, pk.data(), 32);
    r.seq = static_cast<uint64_t>(seq);
    {
      std::lock_guard<std::mutex> g(l->push_mu);
      if (l->pushed.size() < 1024) l->pushed.push_back(std::move(r)); // a flood is dropped
    }
    uint64_t one = 1;
    (void)!write(l->efd, &one, sizeof one);
    return true;
  }
};

// libtorrent 2.0.8 answers a piece that fails its hash check by asking a peer for the
// piece's block hashes, and when that peer rejects the request it writes through an empty
// vector (hash_picker::hashes_rejected; fixed upstream in arvidn/libtorrent#8630, after
// 2.0.11) if the file fits in one piece. For a file of one 16 KiB block the request is
// malformed, so every peer rejects it; for two blocks, every peer that holds the pack
// without having hashed its blocks (a writer, a merge made locally) does. So data for a
// one-piece file is checked here against the file's pieces root before libtorrent takes
// it, and bad data never reaches its hash check. Larger files (objects are at most 1 MiB,
// 32 pieces) keep libtorrent's own path, where a rejection is harmless.
struct small_file_guard;

// The blocks received so far of a one-piece file of two blocks, and who sent them.
struct two_block_piece {
  std::string data[2];
  lt::peer_id from[2];
  bool have[2] = {false, false};
  // Bad, though which block is bad cannot be told. The piece is rewritten with what was
  // received, as if by nobody (add_piece), once no block of it is still being written; it
  // then fails as data found on disk, which asks for no block hashes, and is fetched again
  // once libtorrent has cleared it. Until then no block of it is taken from anyone.
  enum { collecting, bad, rewritten } state = collecting;
};

struct guarded_peer final : lt::peer_plugin {
  cn_lt *l;
  std::shared_ptr<small_file_guard> guard;
  lt::peer_connection_handle peer;
  guarded_peer(cn_lt *owner, std::shared_ptr<small_file_guard> g, lt::peer_connection_handle p)
      : l(owner), guard(std::move(g)), peer(std::move(p)) {}
  // Closes a connection from a peer this torrent banned as soon as its handshake names it,
  // before its listening port would replace (and so lift) the ban.
  bool on_handshake(lt::span<char const>) override;
  bool on_piece(lt::peer_request const &req, lt::span<char const> buf) override;
};

struct small_file_guard final : lt::torrent_plugin, std::enable_shared_from_this<small_file_guard> {
  cn_lt *l;
  lt::torrent_handle torrent;
  std::shared_ptr<const lt::torrent_info> ti;  // fetched once the metadata is there
  // only touched on libtorrent's thread
  std::map<lt::piece_index_t, two_block_piece> pending;
  std::vector<bool> passed;  // by piece
  small_file_guard(cn_lt *owner, lt::torrent_handle t) : l(owner), torrent(std::move(t)) {}

  std::shared_ptr<lt::peer_plugin> new_connection(lt::peer_connection_handle const &p) override {
    return std::make_shared<guarded_peer>(l, shared_from_this(), p);
  }
  void on_piece_pass(lt::piece_index_t piece) override {
    pending.erase(piece);
    size_t i = static_cast<size_t>(static_cast<int>(piece));
    if (passed.size() <= i) passed.resize(i + 1);
    passed[i] = true;
  }
  void on_piece_failed(lt::piece_index_t piece) override {
    size_t i = static_cast<size_t>(static_cast<int>(piece));
    if (i < passed.size()) passed[i] = false;
    auto it = pending.find(piece);
    if (it != pending.end() && it->second.state == two_block_piece::collecting) pending.erase(it);
  }
  bool has_passed(lt::piece_index_t piece) const {
    size_t i = static_cast<size_t>(static_cast<int>(piece));
    return i < passed.size() && passed[i];
  }
  void tick() override {
    bool any = false;
    for (auto &e : pending) any |= e.second.state != two_block_piece::collecting;
    if (!any) return;
    // handle calls made here run at once: this is libtorrent's own thread
    std::vector<lt::partial_piece_info> queue = torrent.get_download_queue();
    const lt::file_storage *fs = files();
    for (auto it = pending.begin(); fs && it != pending.end();) {
      two_block_piece &b = it->second;
      bool written = false, writing = false;
      for (auto &q : queue) {
        if (q.piece_index != it->first) continue;
        for (int i = 0; i < q.blocks_in_piece; i++) {
          written |= q.blocks[i].state >= lt::block_info::writing;
          writing |= q.blocks[i].state == lt::block_info::writing;
        }
      }
      if (b.state == two_block_piece::bad && !writing) {
        std::vector<char> piece(static_cast<size_t>(fs->piece_size(it->first)), 0);
        memcpy(piece.data(), b.data[0].data(), b.data[0].size());
        memcpy(piece.data() + lt::default_block_size, b.data[1].data(), b.data[1].size());
        torrent.add_piece(it->first, piece.data(), lt::torrent_handle::overwrite_existing);
        b.state = two_block_piece::rewritten;
      } else if (b.state == two_block_piece::rewritten && !written) {
        it = pending.erase(it);  // failed and cleared: collect it afresh
        continue;
      }
      ++it;
    }
  }
  const lt::file_storage *files() {
    if (!ti || !ti->is_valid()) ti = torrent.torrent_file();
    return ti && ti->is_valid() ? &ti->files() : nullptr;
  }
};

bool guarded_peer::on_handshake(lt::span<char const>) {
  if (l->is_banned(guard->torrent, peer.pid()))
    peer.disconnect(lt::errors::peer_banned, lt::operation_t::bittorrent);
  return true;
}

bool guarded_peer::on_piece(lt::peer_request const &req, lt::span<char const> buf) {
  const lt::file_storage *fs = guard->files();
  if (!fs) return false;
  lt::file_index_t f = fs->file_index_at_piece(req.piece);
  int64_t size = fs->file_size(f);
  if (size > fs->piece_length() || req.start % lt::default_block_size) return false;
  int nblocks = static_cast<int>((size + lt::default_block_size - 1) / lt::default_block_size);
  int block = req.start / lt::default_block_size;
  // a block past the file's end is padding (v2 files start on a piece boundary)
  int len = static_cast<int>(std::min<int64_t>(lt::default_block_size, size - req.start));
  if (block >= nblocks || req.length < len || static_cast<int>(buf.size()) < len) return false;
  buf = buf.first(len);
  lt::sha256_hash root = fs->root(f);
  if (nblocks == 1) {
    if (lt::hasher256(buf).final() == root) return false;
    l->refuse(guard->torrent, &peer);
    peer.disconnect(lt::errors::peer_banned, lt::operation_t::bittorrent);
    return true;  // dropped; the block is asked of another peer
  }
  // A second copy of a block (two peers asked for it, or a late answer) is discarded by
  // libtorrent, which keeps the first it took: so does the guard.
  if (guard->has_passed(req.piece)) return false;
  two_block_piece &b = guard->pending[req.piece];
  if (b.state != two_block_piece::collecting) {
    // To be fetched again from scratch. A block dropped from a peer that stays connected
    // would wait on that peer for good (its request never times out while the peer sends
    // others), so the connection goes, and its requests with it.
    peer.disconnect(lt::errors::too_many_corrupt_pieces, lt::operation_t::bittorrent);
    return true;
  }
  if (b.have[block]) return false;
  b.data[block].assign(buf.data(), buf.size());
  b.from[block] = peer.pid();
  b.have[block] = true;
  if (!b.have[0] || !b.have[1]) return false;
  lt::hasher256 h;
  h.update(lt::hasher256(b.data[0]).final());
  h.update(lt::hasher256(b.data[1]).final());
  if (h.final() == root) {
    guard->pending.erase(req.piece);
    return false;
  }
  // a peer that sent the whole file is to blame; with two senders either may be
  bool culprit = b.from[0] == b.from[1];
  l->refuse(guard->torrent, culprit ? &peer : nullptr);
  peer.disconnect(culprit ? lt::errors::peer_banned : lt::errors::too_many_corrupt_pieces,
                  lt::operation_t::bittorrent);
  b.state = two_block_piece::bad;
  return true;
}

struct guard_plugin final : lt::plugin {
  cn_lt *l;
  explicit guard_plugin(cn_lt *owner) : l(owner) {}
  std::shared_ptr<lt::torrent_plugin> new_torrent(lt::torrent_handle const &t, lt::client_data_t) override {
    return std::make_shared<small_file_guard>(l, t);
  }
};

}  // namespace

void cn_lt::run() {
  std::vector<lt::alert *> alerts;
  while (!stopping.load()) {
    struct pollfd p = {efd, POLLIN, 0};
    poll(&p, 1, 500);
    uint64_t n;
    if (p.revents & POLLIN) (void)!read(efd, &n, sizeof n);
    std::vector<pushed_root> roots;
    {
      std::lock_guard<std::mutex> g(push_mu);
      roots.swap(pushed);
    }
    for (auto &r : roots) {
      cn_lt_event ev;
      memset(&ev, 0, sizeof ev);
      ev.kind = r.held ? CN_LT_HELD : CN_LT_ITEM;
      ev.file = -1;
      ev.pushed = 1;
      memcpy(ev.pk, r.pk, 32);
      memcpy(ev.sig, r.sig, 64);
      ev.seq = r.seq;
      ev.value = reinterpret_cast<const uint8_t *>(r.value.data());
      ev.value_len = r.value.size();
      ev.tag = r.tag;
      ev.peer = r.from.c_str();
      fn(&ev, ctx);
    }
    std::vector<std::pair<lt::sha256_hash, std::string>> bad;
    {
      std::lock_guard<std::mutex> g(ban_mu);
      bad.swap(refused);
    }
    for (auto &r : bad) {
      cn_lt_event ev;
      memset(&ev, 0, sizeof ev);
      ev.file = -1;
      memcpy(ev.ih, r.first.data(), 32);
      ev.kind = CN_LT_HASH_FAILED;
      fn(&ev, ctx);
      if (r.second.empty()) continue;
      ev.kind = CN_LT_PEER_BANNED;
      ev.peer = r.second.c_str();
      fn(&ev, ctx);
    }
    ses->pop_alerts(&alerts);
    for (auto *a : alerts) {
      try {
        handle(a);
      } catch (std::exception &e) {
        fprintf(stderr, "cairn: libtorrent alert %s: %s\n", a->what(), e.what());
      }
    }
  }
}

extern "C" cn_lt *cn_lt_start(const char *listen, const char *node_tag, const char *client, cn_lt_event_fn fn,
                              void *ctx, char *err, size_t err_len) {
  try {
    lt::settings_pack sp;
    sp.set_str(lt::settings_pack::listen_interfaces, listen);
    sp.set_str(lt::settings_pack::dht_bootstrap_nodes, "");
    std::string fp = std::string("-CN0001-") + node_tag;
    sp.set_str(lt::settings_pack::peer_fingerprint, fp);
    sp.set_str(lt::settings_pack::handshake_client_version, client);
    sp.set_bool(lt::settings_pack::enable_dht, true);
    sp.set_bool(lt::settings_pack::enable_lsd, false);
    sp.set_bool(lt::settings_pack::enable_upnp, false);
    sp.set_bool(lt::settings_pack::enable_natpmp, false);
    sp.set_bool(lt::settings_pack::dht_restrict_routing_ips, false);
    sp.set_bool(lt::settings_pack::dht_restrict_search_ips, false);
    sp.set_int(lt::settings_pack::dht_block_ratelimit, 100000);
    sp.set_int(lt::settings_pack::dht_upload_rate_limit, 10000000);
    sp.set_int(lt::settings_pack::dht_announce_interval, 60);
    // uTP moves bulk data at a tenth of TCP's rate here.
    sp.set_bool(lt::settings_pack::enable_outgoing_utp, false);
    sp.set_bool(lt::settings_pack::enable_incoming_utp, false);
    sp.set_bool(lt::settings_pack::close_redundant_connections, false);
    sp.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
    // Two nodes that connect to each other at once may both drop both connections as
    // duplicates; with the default minute before a reconnect, a host restarting or a
    // new pack went unconnected that long. Known peers are few: retry them soon.
    sp.set_int(lt::settings_pack::min_reconnect_time, 1);
    // Chunks are sealed already; stream encryption only adds handshake latency.
    sp.set_int(lt::settings_pack::out_enc_policy, lt::settings_pack::pe_disabled);
    sp.set_int(lt::settings_pack::in_enc_policy, lt::settings_pack::pe_disabled);
    sp.set_int(lt::settings_pack::tick_interval, 50);
    sp.set_int(lt::settings_pack::alert_queue_size, 100000);
    sp.set_int(lt::settings_pack::max_metadata_size, 64 << 20);
    sp.set_int(lt::settings_pack::active_limit, -1);
    sp.set_int(lt::settings_pack::active_downloads, -1);
    sp.set_int(lt::settings_pack::active_seeds, -1);
    sp.set_int(lt::settings_pack::send_buffer_watermark, 4 << 20);
    sp.set_int(lt::settings_pack::send_buffer_low_watermark, 1 << 20);
    sp.set_int(lt::settings_pack::max_out_request_queue, 1500);
    sp.set_int(lt::settings_pack::max_queued_disk_bytes, 16 << 20);
    sp.set_int(lt::settings_pack::connection_speed, 200);
    // libtorrent 2.0.8 scans every file of a torrent for each HAVE it receives (PEERS.md): a
    // seed hears of its hosts' progress by cairn_held instead, once per commit.
    sp.set_bool(lt::settings_pack::send_redundant_have, false);
    // Complete packs (every pack of a host, a merge a host makes itself) get a connection
    // attempt as often as downloading ones, not one in ten: `sync` counts a host only
    // over a connection on every pack, and two seeds never connect otherwise.
    sp.set_int(lt::settings_pack::connect_seed_every_n_download, 1);
    // A peer that refused a pack it did not have yet (a merge it is still making itself,
    // a commit it has not heard of) is not given up on after 3 refusals: the peers are
    // few and known, and a complete pack can only learn that a peer holds it too over
    // such a connection.
    sp.set_int(lt::settings_pack::max_failcount, 1000);
    // A block asked of a peer that then got banned or vanished is asked elsewhere soon,
    // not after the default minute.
    sp.set_int(lt::settings_pack::request_timeout, 4);
    sp.set_int(lt::settings_pack::piece_timeout, 4);
    sp.set_int(lt::settings_pack::peer_timeout, 20);
    sp.set_int(lt::settings_pack::alert_mask,
               lt::alert_category::error | lt::alert_category::status |
                   lt::alert_category::dht | lt::alert_category::storage |
                   lt::alert_category::file_progress | lt::alert_category::peer |
                   lt::alert_category::connect | lt::alert_category::dht_operation |
                   (getenv("CAIRN_LT_PEERLOG") ? lt::alert_category::peer_log : lt::alert_category_t{}));
    auto *l = new cn_lt;
    l->fn = fn;
    l->ctx = ctx;
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    // No smart_ban plugin: with v2 torrents it crashes 2.0.8 after a hash failure, and v2
    // block hashes already tell which peer sent bad data.
    lt::session_params params(sp, std::vector<std::shared_ptr<lt::plugin>>{});
    // pread/pwrite storage: the default mmap storage reports "End of file" on chunk files
    // that are complete and of the right size, here, and stops the torrent.
    params.disk_io_constructor = lt::posix_disk_io_constructor;
    l->ses = new lt::session(std::move(params));
    l->ses->add_extension(&lt::create_ut_metadata_plugin);
    l->ses->add_extension(&lt::create_ut_pex_plugin);
    l->ses->add_extension(std::make_shared<cairn_query_plugin>(l));
    l->ses->add_extension(std::make_shared<guard_plugin>(l));
    int efd = l->efd;
    l->ses->set_alert_notify([efd] {
      uint64_t one = 1;
      (void)!write(efd, &one, sizeof one);  // only signal: this runs on libtorrent's thread
    });
    l->pump = std::thread([l] { l->run(); });
    return l;
  } catch (std::exception &e) {
    copy_err(err, err_len, e.what());
    return nullptr;
  }
}

extern "C" void cn_lt_stop(cn_lt *l) {
  if (!l) return;
  l->stopping = true;
  uint64_t one = 1;
  (void)!write(l->efd, &one, sizeof one);
  l->pump.join();
  {
    lt::session_proxy proxy = l->ses->abort();
    delete l->ses;
  }
  close(l->efd);
  delete l;
}

extern "C" int cn_lt_listen_port(cn_lt *l) {
  return l->ses->is_listening() ? l->ses->listen_port() : 0;
}

extern "C" void cn_lt_dht_add_node(cn_lt *l, const char *host, int port) {
  l->ses->add_dht_node({host, port});
}

extern "C" void cn_lt_dht_put(cn_lt *l, const uint8_t pk[32], const uint8_t *salt, size_t salt_len,
                              uint64_t seq, const uint8_t sig[64], const uint8_t *value, size_t len) {
  std::array<char, 32> key;
  memcpy(key.data(), pk, 32);
  std::string v(reinterpret_cast<const char *>(value), len);
  std::array<char, 64> s;
  memcpy(s.data(), sig, 64);
  int64_t sq = static_cast<int64_t>(seq);
  // The signature was made by libsodium over libtorrent's signing bytes; hand it over
  // as is (hosts re-publish items they cannot sign).
  l->ses->dht_put_item(key, [v, s, sq](lt::entry &e, std::array<char, 64> &sig, std::int64_t &seqo,
                                       std::string const &) {
    e = v;
    sig = s;
    seqo = sq;
  }, std::string(reinterpret_cast<const char *>(salt), salt_len));
}

// One of our own DHT queries (FORMAT.md §11.2) about namespace pk at seq, for host:port:
// false when host is not an address (that peer polls instead). The caller adds its keys
// to e["a"] and sends it.
static bool cairn_query(const char *host, int port, const char *query, int version, const uint8_t pk[32],
                        uint64_t seq, lt::entry &e, lt::udp::endpoint &to) {
  lt::error_code ec;
  auto addr = lt::make_address(host, ec);
  if (ec || port <= 0 || port > 65535) return false;
  to = lt::udp::endpoint(addr, static_cast<std::uint16_t>(port));
  e["q"] = query;
  lt::entry &a = e["a"];
  a["cv"] = version;
  a["k"] = std::string(reinterpret_cast<const char *>(pk), 32);
  a["seq"] = static_cast<std::int64_t>(seq);
  return true;
}

extern "C" void cn_lt_push_root(cn_lt *l, const char *host, int port, const uint8_t pk[32], uint64_t seq,
                                const uint8_t sig[64], const uint8_t *value, size_t len) {
  lt::entry e;
  lt::udp::endpoint to;
  if (!cairn_query(host, port, CN_LT_ROOT_PUSH_QUERY, CN_LT_ROOT_PUSH_VERSION, pk, seq, e, to)) return;
  e["a"]["sig"] = std::string(reinterpret_cast<const char *>(sig), 64);
  e["a"]["v"] = std::string(reinterpret_cast<const char *>(value), len);
  l->ses->dht_direct_request(to, e);
}

extern "C" void cn_lt_push_held(cn_lt *l, const char *host, int port, const uint8_t pk[32], uint64_t seq,
                                const char *node_tag) {
  lt::entry e;
  lt::udp::endpoint to;
  if (!cairn_query(host, port, CN_LT_HELD_QUERY, CN_LT_HELD_VERSION, pk, seq, e, to)) return;
  e["a"]["n"] = std::string(node_tag, strnlen(node_tag, 12));
  l->ses->dht_direct_request(to, e);
}

extern "C" void cn_lt_dht_get(cn_lt *l, const uint8_t pk[32], const uint8_t *salt, size_t salt_len) {
  std::array<char, 32> key;
  memcpy(key.data(), pk, 32);
  l->ses->dht_get_item(key, std::string(reinterpret_cast<const char *>(salt), salt_len));
}

extern "C" void cn_lt_dht_announce(cn_lt *l, const uint8_t ih[32], int port) {
  lt::sha1_hash h(reinterpret_cast<const char *>(ih));
  l->ses->dht_announce(h, port);
}

extern "C" void cn_lt_dht_get_peers(cn_lt *l, const uint8_t ih[32]) {
  lt::sha1_hash h(reinterpret_cast<const char *>(ih));
  l->ses->dht_get_peers(h);
}

static std::string chunk_path(const uint8_t id[32]) {
  static const char hx[] = "0123456789abcdef";
  std::string h;
  for (int i = 0; i < 32; i++) {
    h += hx[id[i] >> 4];
    h += hx[id[i] & 15];
  }
  return "chunks/" + h.substr(0, 2) + "/" + h; // FORMAT §11.1: the store's own path
}

// libtorrent 2.0.8 looks up each file's directory in a list when it builds a torrent's
// file table, so parsing a pack costs files x directories: 0.2 s for a corpus commit of
// 6,000 chunks. The pack a commit makes is parsed by its maker, then by the store and by
// the session; the last few parsed are kept here, by their exact bytes, and copied.
namespace {
struct parsed_torrent {
  std::vector<char> bytes;
  std::shared_ptr<const lt::torrent_info> ti;
};
std::mutex parsed_lock;
std::deque<parsed_torrent> parsed_recent; // newest first
const size_t PARSED_KEEP = 4;

void remember_parsed(std::vector<char> bytes, std::shared_ptr<const lt::torrent_info> ti) {
  std::lock_guard<std::mutex> g(parsed_lock);
  parsed_recent.push_front(parsed_torrent{std::move(bytes), std::move(ti)});
  if (parsed_recent.size() > PARSED_KEEP) parsed_recent.pop_back();
}

// The parsed torrent of these bytes: a kept one or a fresh parse (then kept); null with
// ec set when they are not a torrent.
std::shared_ptr<const lt::torrent_info> parse_torrent(const uint8_t *torrent, size_t len,
                                                      lt::error_code &ec) {
  {
    std::lock_guard<std::mutex> g(parsed_lock);
    for (const auto &p : parsed_recent)
      if (p.bytes.size() == len && memcmp(p.bytes.data(), torrent, len) == 0) return p.ti;
  }
  auto ti = std::make_shared<const lt::torrent_info>(
      lt::span<const char>(reinterpret_cast<const char *>(torrent), static_cast<std::ptrdiff_t>(len)),
      ec, lt::from_span);
  if (ec) return nullptr;
  remember_parsed(std::vector<char>(torrent, torrent + len), ti);
  return ti;
}
} // namespace

extern "C" int cn_lt_pack_create(const uint8_t (*ids)[32], const uint64_t *sizes,
                                 const uint8_t *const *layers, size_t n, uint8_t **torrent,
                                 size_t *torrent_len, uint8_t ih[32], char *err, size_t err_len) {
  try {
    if (n == 0) {
      copy_err(err, err_len, "an empty pack");
      return -EINVAL;
    }
    // Sorted by path so equal sets of chunks give equal torrents.
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; i++) order[i] = i;
    std::sort(order.begin(), order.end(),
              [ids](size_t a, size_t b) { return memcmp(ids[a], ids[b], 32) < 0; });
    lt::file_storage fs;
    std::vector<size_t> object_of_file;
    const uint8_t *prev = nullptr;
    for (size_t i : order) {
      if (prev && memcmp(prev, ids[i], 32) == 0) continue;
      prev = ids[i];
      if (sizes[i] == 0) {
        copy_err(err, err_len, "a pack cannot hold an empty object");
        return -EINVAL;
      }
      fs.add_file(chunk_path(ids[i]), static_cast<std::int64_t>(sizes[i]));
      object_of_file.push_back(i);
    }
    // Two blocks per piece. After a peer sends bad data, 2.0.8 asks for block hashes:
    // with pieces as big as a chunk (so a torrent would follow from the IDs alone) it
    // then crashes, and with one-block pieces it calls the good peers' answers invalid
    // and stalls for a minute. Measured here; see docs/FORMAT.md.
    lt::create_torrent ct(fs, CN_PIECE_BYTES, lt::create_torrent::v2_only);
    const lt::file_storage &cfs = ct.files();
    size_t next = 0;
    for (auto f : cfs.file_range()) {
      if (cfs.pad_file_at(f)) continue;
      size_t obj = object_of_file[next++];
      int pieces = cfs.file_num_pieces(f);
      if (pieces == 1) {
        ct.set_hash2(f, 0, lt::sha256_hash(reinterpret_cast<const char *>(ids[obj])));
        continue;
      }
      if (!layers[obj] || static_cast<uint64_t>(pieces) != cn_piece_count(sizes[obj])) {
        copy_err(err, err_len, "chunk " + cfs.file_name(f).to_string() + " has no piece layer");
        return -EINVAL;
      }
      for (int p = 0; p < pieces; p++)
        ct.set_hash2(f, p, lt::sha256_hash(reinterpret_cast<const char *>(layers[obj] + 32 * p)));
    }
    // The torrent's file roots come from the layers given; a pack whose roots differ from
    // the IDs would be refused by every reader, so check them.
    std::vector<char> buf;
    lt::bencode(std::back_inserter(buf), ct.generate());
    auto parsed = std::make_shared<const lt::torrent_info>(buf, lt::from_span);
    const lt::torrent_info &ti = *parsed;
    for (auto f : ti.files().file_range()) {
      if (ti.files().pad_file_at(f)) continue;
      std::string name = ti.files().file_name(f).to_string();
      char hex[65];
      static const char hx[] = "0123456789abcdef";
      lt::sha256_hash root_hash = ti.files().root(f);
      const char *root = root_hash.data();
      for (int i = 0; i < 32; i++) {
        hex[2 * i] = hx[(root[i] >> 4) & 15];
        hex[2 * i + 1] = hx[root[i] & 15];
      }
      hex[64] = 0;
      if (name != hex) {
        copy_err(err, err_len, "the piece layer of chunk " + name + " does not hash to its name");
        return -EIO;
      }
    }
    memcpy(ih, ti.info_hashes().v2.data(), 32);
    *torrent = static_cast<uint8_t *>(malloc(buf.size()));
    if (!*torrent) return -ENOMEM;
    memcpy(*torrent, buf.data(), buf.size());
    *torrent_len = buf.size();
    remember_parsed(std::move(buf), std::move(parsed));
    return 0;
  } catch (std::exception &e) {
    copy_err(err, err_len, e.what());
    return -EINVAL;
  }
}

extern "C" int cn_lt_torrent_parse(const uint8_t *torrent, size_t len, uint8_t ih[32],
                                   cn_lt_file_fn fn, void *ctx, char *err, size_t err_len) {
  lt::error_code ec;
  auto parsed = parse_torrent(torrent, len, ec);
  if (!parsed) {
    copy_err(err, err_len, ec.message());
    return -EBADMSG;
  }
  const lt::torrent_info &ti = *parsed;
  if (!ti.info_hashes().has_v2()) {
    copy_err(err, err_len, "not a BitTorrent v2 torrent");
    return -EBADMSG;
  }
  memcpy(ih, ti.info_hashes().v2.data(), 32);
  if (!fn) return 0;
  const lt::file_storage &fs = ti.files();
  for (auto f : fs.file_range()) {
    if (fs.pad_file_at(f)) continue;
    auto layer = ti.piece_layer(f);
    const uint8_t *layer_bytes =
        fs.file_num_pieces(f) > 1 && static_cast<size_t>(layer.size()) == 32u * static_cast<size_t>(fs.file_num_pieces(f))
            ? reinterpret_cast<const uint8_t *>(layer.data()) : nullptr;
    int rc = fn(static_cast<int>(f), fs.file_path(f).c_str(),
                static_cast<uint64_t>(fs.file_size(f)), layer_bytes, ctx);
    if (rc) return rc;
  }
  return 0;
}

extern "C" void cn_lt_add_peer(cn_lt *l, const char *host, int port) {
  lt::error_code ec;
  auto addr = lt::make_address(host, ec);
  if (ec || port <= 0 || port > 65535) return;
  lt::tcp::endpoint ep(addr, static_cast<std::uint16_t>(port));
  std::lock_guard<std::mutex> g(l->mu);
  if (std::find(l->known.begin(), l->known.end(), ep) == l->known.end()) l->known.push_back(ep);
}

extern "C" int cn_lt_add(cn_lt *l, const uint8_t *torrent, size_t len, const char *save_path,
                         int seed, int want_all, char *err, size_t err_len) {
  try {
    lt::add_torrent_params p;
    lt::error_code ec;
    auto parsed = parse_torrent(torrent, len, ec);
    if (!parsed) {
      copy_err(err, err_len, ec.message());
      return -EINVAL;
    }
    p.ti = std::make_shared<lt::torrent_info>(*parsed); // the session's own copy
    p.save_path = save_path;
    p.flags &= ~(lt::torrent_flags::auto_managed | lt::torrent_flags::paused);
    // seed_mode makes 2.0.8 announce HAVE_NONE for v2 torrents; resume data saying every
    // piece is here (checked against file sizes, not hashed) gives a working seed.
    if (seed) p.have_pieces.resize(p.ti->num_pieces(), true);
    if (!want_all)
      p.file_priorities.assign(static_cast<size_t>(p.ti->num_files()), lt::dont_download);
    lt::sha256_hash ih = p.ti->info_hashes().v2;
    {
      std::lock_guard<std::mutex> g(l->mu);
      if (l->torrents.count(ih)) return 0;
      // Known from the start; connected on the next connect round (resuming as in
      // cn_lt_add_magnet would not help: the torrent is still checking its resume data).
      p.peers = l->known;
    }
    lt::torrent_handle h = l->ses->add_torrent(std::move(p));
    std::lock_guard<std::mutex> g(l->mu);
    l->torrents[ih] = h;
    return 0;
  } catch (std::exception &e) {
    copy_err(err, err_len, e.what());
    return -EINVAL;
  }
}

extern "C" int cn_lt_add_magnet(cn_lt *l, const uint8_t ih[32], const char *save_path) {
  try {
    lt::add_torrent_params p;
    p.info_hashes.v2 = to_sha256(ih);
    p.save_path = save_path;
    p.flags &= ~(lt::torrent_flags::auto_managed | lt::torrent_flags::paused);
    // Metadata only, no piece, until the caller has set file priorities: a piece taken
    // while its file is at priority 0 goes to the part file, which 2.0.8 mishandles.
    p.flags |= lt::torrent_flags::upload_mode;
    // Added paused and resumed at once: resuming connects to the peers in p.peers right
    // away ("connect boost"). A magnet that simply starts does not: 2.0.8 connects it on
    // its connect round, once a second whatever tick_interval is, so the metadata (and
    // a cold read) waited up to a second.
    p.flags |= lt::torrent_flags::paused;
    {
      std::lock_guard<std::mutex> g(l->mu);
      if (l->torrents.count(p.info_hashes.v2)) return 0;
      p.peers = l->known;
    }
    lt::sha256_hash key = p.info_hashes.v2;
    lt::torrent_handle h = l->ses->add_torrent(std::move(p));
    h.resume();
    std::lock_guard<std::mutex> g(l->mu);
    l->torrents[key] = h;
    return 0;
  } catch (std::exception &) {
    return -EINVAL;
  }
}

extern "C" int cn_lt_remove(cn_lt *l, const uint8_t ih[32]) {
  lt::torrent_handle h;
  {
    std::lock_guard<std::mutex> g(l->mu);
    auto it = l->torrents.find(to_sha256(ih));
    if (it == l->torrents.end()) return -ENOENT;
    h = it->second;
    l->torrents.erase(it);
  }
  l->ses->remove_torrent(h);
  return 0;
}

extern "C" int cn_lt_has(cn_lt *l, const uint8_t ih[32]) { return l->find(ih).is_valid(); }

extern "C" int cn_lt_want_file(cn_lt *l, const uint8_t ih[32], int file, int deadline_ms) {
  lt::torrent_handle h = l->find(ih);
  if (!h.is_valid()) return -ENOENT;
  auto ti = h.torrent_file();
  if (!ti || file < 0 || file >= ti->num_files()) return -EINVAL;
  lt::file_index_t f(file);
  h.file_priority(f, lt::top_priority);
  const lt::file_storage &fs = ti->files();
  if (fs.file_size(f) == 0 || deadline_ms < 0) return 0;
  lt::piece_index_t first = fs.piece_index_at_file(f);
  int pieces = static_cast<int>((fs.file_size(f) + ti->piece_length() - 1) / ti->piece_length());
  for (int i = 0; i < pieces; i++) h.set_piece_deadline(lt::piece_index_t(static_cast<int>(first) + i), deadline_ms);
  return 0;
}

extern "C" int cn_lt_want_all(cn_lt *l, const uint8_t ih[32], int want) {
  lt::torrent_handle h = l->find(ih);
  if (!h.is_valid()) return -ENOENT;
  auto ti = h.torrent_file();
  if (!ti) return -EAGAIN;
  h.prioritize_files(std::vector<lt::download_priority_t>(
      static_cast<size_t>(ti->num_files()), want ? lt::default_priority : lt::dont_download));
  return 0;
}

extern "C" int cn_lt_start_download(cn_lt *l, const uint8_t ih[32]) {
  lt::torrent_handle h = l->find(ih);
  if (!h.is_valid()) return -ENOENT;
  h.unset_flags(lt::torrent_flags::upload_mode);
  return 0;
}

extern "C" int cn_lt_files_done(cn_lt *l, const uint8_t ih[32], uint8_t *done, int n_files) {
  lt::torrent_handle h = l->find(ih);
  if (!h.is_valid()) return -ENOENT;
  auto ti = h.torrent_file();
  if (!ti) return -EAGAIN;
  std::vector<std::int64_t> progress;
  h.file_progress(progress, lt::torrent_handle::piece_granularity);
  for (int f = 0; f < n_files && f < ti->num_files(); f++)
    done[f] = progress[static_cast<size_t>(f)] == ti->files().file_size(lt::file_index_t(f));
  return 0;
}

extern "C" int cn_lt_recheck(cn_lt *l, const uint8_t ih[32]) {
  lt::torrent_handle h = l->find(ih);
  if (!h.is_valid()) return -ENOENT;
  h.force_recheck();
  return 0;
}

extern "C" int cn_lt_connect(cn_lt *l, const uint8_t ih[32], const char *host, int port) {
  lt::torrent_handle h = l->find(ih);
  if (!h.is_valid()) return -ENOENT;
  lt::error_code ec;
  auto addr = lt::make_address(host, ec);
  if (ec) return -EINVAL;
  h.connect_peer(lt::tcp::endpoint(addr, static_cast<std::uint16_t>(port)));
  return 0;
}

extern "C" int cn_lt_torrent_status(cn_lt *l, const uint8_t ih[32], cn_lt_status *st) {
  lt::torrent_handle h = l->find(ih);
  memset(st, 0, sizeof *st);
  if (!h.is_valid()) return -ENOENT;
  lt::torrent_status s = h.status();
  st->peers = s.num_peers;
  st->seeds = s.num_seeds;
  st->done = s.is_finished;
  st->checking = s.state == lt::torrent_status::checking_files ||
                 s.state == lt::torrent_status::checking_resume_data;
  st->progress = static_cast<double>(s.progress);
  st->uploaded = static_cast<uint64_t>(s.all_time_upload);
  st->downloaded = static_cast<uint64_t>(s.all_time_download);
  if (s.errc) snprintf(st->error, sizeof st->error, "%s", s.errc.message().c_str());
  return 0;
}

extern "C" int cn_lt_torrent_peers(cn_lt *l, const uint8_t ih[32], cn_lt_peer_fn fn, void *ctx) {
  lt::torrent_handle h = l->find(ih);
  if (!h.is_valid()) return -ENOENT;
  std::vector<lt::peer_info> peers;
  h.get_peer_info(peers);
  for (auto &p : peers) {
    std::string id(p.pid.data(), p.pid.size());
    std::string tag = id.size() >= 12 ? id.substr(id.size() - 12) : id;
    for (char &c : tag)
      if (c < 0x21 || c > 0x7e) c = '?';
    std::string ep = endpoint_str(p.ip);
    int rc = fn(tag.c_str(), ep.c_str(), (p.flags & lt::peer_info::seed) ? 1 : 0, p.client.c_str(), ctx);
    if (rc) return rc;
  }
  return 0;
}
