#!/usr/bin/env python3
"""Minimal simplestreams image server (HTTPS, 127.0.0.1 only) for the real-LXD tests.

Serves the image built by build-image.sh:

  /streams/v1/index.json
  /streams/v1/images.json
  /images/debian/bookworm/amd64/crostini-test/<version>/lxd.tar.xz
  /images/debian/bookworm/amd64/crostini-test/<version>/rootfs.squashfs

The same tree is also served under /u/<tag>/ (tag = --url-tag, default: random per server start).
LXD caches index.json/images.json for an hour in $LXD_DIR/cache/<sha256(server URL)>/ and does not
even contact the server while that entry is fresh, so clients should use the printed URL: every
server start (new image, other --fail-mode, same port) then gets its own cache entry.

Stdout (line-buffered, in this order, then nothing else):
  PORT=<port>
  URL=https://127.0.0.1:<port>/u/<tag>
  VERSION=<version key>
  FINGERPRINT=<LXD image fingerprint>
  ALIAS=crostini-test
Request logs go to stderr. Stops on SIGTERM/SIGINT.
"""

import argparse
import datetime
import http.server
import json
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time

CACHE_DIR = os.environ.get("CROSTINI_TEST_CACHE", "/var/cache/crostini-tests")
PRODUCT_ID = "debian:bookworm:amd64:crostini-test"
ALIASES = "crostini-test,debian/bookworm"
IMAGE_PATH = "images/debian/bookworm/amd64/crostini-test"
FAIL_MODES = (
    "none",
    "404-index",  # index.json -> 404
    "404-images",  # images.json -> 404
    "404-rootfs",  # rootfs download -> 404
    "500-rootfs",  # rootfs download -> 500
    "truncate-rootfs",  # rootfs: send half of the bytes, then close the connection
    "corrupt-rootfs",  # rootfs: full length but wrong bytes (sha256 mismatch in LXD)
)
CHUNK = 64 * 1024


def log(msg):
    sys.stderr.write("[simplestreams %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def load_image(image_dir):
    path = os.path.join(image_dir, "image.json")
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("simplestreams: cannot read %s (run build-image.sh first): %s" % (path, e))
    for name in ("lxd.tar.xz", "rootfs.squashfs"):
        entry = info.get("files", {}).get(name)
        if entry is None:
            sys.exit("simplestreams: %s has no entry for %s" % (path, name))
        try:
            size = os.path.getsize(os.path.join(image_dir, name))
        except OSError as e:
            sys.exit("simplestreams: image file missing: %s" % e)
        if size != entry["size"]:
            sys.exit(
                "simplestreams: %s/%s is %d bytes, image.json says %d (rebuild the image)"
                % (image_dir, name, size, entry["size"])
            )
    return info


def default_version_key(info):
    # LXD parses the first 8 characters of the version key as YYYYMMDD (keys that do not parse are
    # ignored), so: <creation date>_<fingerprint prefix>.
    day = datetime.datetime.fromtimestamp(info["creation_date"], datetime.timezone.utc).strftime("%Y%m%d")
    return "%s_%s" % (day, info["combined_squashfs_sha256"][:12])


def build_tree(info, version):
    files = info["files"]
    base = "%s/%s" % (IMAGE_PATH, version)
    updated = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    images = {
        "content_id": "images",
        "datatype": "image-downloads",
        "format": "products:1.0",
        "updated": updated,
        "products": {
            PRODUCT_ID: {
                "aliases": ALIASES,
                "arch": "amd64",
                "os": "debian",
                "release": "bookworm",
                "release_title": "bookworm",
                "variant": "crostini-test",
                "versions": {
                    version: {
                        "items": {
                            "lxd.tar.xz": {
                                "ftype": "lxd.tar.xz",
                                "sha256": files["lxd.tar.xz"]["sha256"],
                                "size": files["lxd.tar.xz"]["size"],
                                "path": base + "/lxd.tar.xz",
                                # LXD takes the fingerprint of a split image from the metadata item.
                                "combined_squashfs_sha256": info["combined_squashfs_sha256"],
                            },
                            "squashfs": {
                                "ftype": "squashfs",
                                "sha256": files["rootfs.squashfs"]["sha256"],
                                "size": files["rootfs.squashfs"]["size"],
                                "path": base + "/rootfs.squashfs",
                            },
                        }
                    }
                },
            }
        },
    }
    index = {
        "format": "index:1.0",
        "updated": updated,
        "index": {
            "images": {
                "datatype": "image-downloads",
                "path": "streams/v1/images.json",
                "format": "products:1.0",
                "updated": updated,
                "products": [PRODUCT_ID],
            }
        },
    }
    routes = {
        "/streams/v1/index.json": ("json", json.dumps(index, indent=1).encode()),
        "/streams/v1/images.json": ("json", json.dumps(images, indent=1).encode()),
        "/%s/lxd.tar.xz" % base: ("file", "lxd.tar.xz"),
        "/%s/rootfs.squashfs" % base: ("file", "rootfs.squashfs"),
    }
    return routes


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "crostini-simplestreams/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log("%s %s" % (self.client_address[0], fmt % args))

    def do_HEAD(self):
        self.handle_get(head=True)

    def do_GET(self):
        self.handle_get(head=False)

    def send_status_only(self, code, msg):
        body = (msg + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_get(self, head):
        cfg = self.server.cfg
        path = self.path.split("?", 1)[0]
        prefix = "/u/%s" % cfg.url_tag
        if path.startswith(prefix + "/"):
            path = path[len(prefix):]
        route = cfg.routes.get(path)
        if route is None:
            self.send_status_only(404, "not found: " + self.path)
            return
        kind, value = route
        fail = cfg.fail_mode
        if (fail == "404-index" and path.endswith("/index.json")) or (
            fail == "404-images" and path.endswith("/images.json")
        ):
            self.send_status_only(404, "simulated failure (%s)" % fail)
            return
        if kind == "json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(value)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if not head:
                self.wfile.write(value)
            return
        is_rootfs = value == "rootfs.squashfs"
        if is_rootfs and fail in ("404-rootfs", "500-rootfs"):
            self.send_status_only(int(fail[:3]), "simulated failure (%s)" % fail)
            return
        self.send_file(os.path.join(cfg.image_dir, value), head, throttle=cfg.throttle if is_rootfs else 0,
                       fail=fail if is_rootfs else "none")

    def send_file(self, path, head, throttle, fail):
        try:
            f = open(path, "rb")
        except OSError as e:
            self.send_status_only(500, "cannot open %s: %s" % (path, e))
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if head:
                return
            limit = size // 2 if fail == "truncate-rootfs" else size
            sent = 0
            start = time.monotonic()
            chunk = CHUNK if throttle <= 0 else max(1024, min(CHUNK, throttle // 10))
            while sent < limit:
                data = f.read(min(chunk, limit - sent))
                if not data:
                    break
                if fail == "corrupt-rootfs":
                    data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout) as e:
                    log("client went away after %d/%d bytes of %s: %s" % (sent, size, path, e))
                    self.close_connection = True
                    return
                sent += len(data)
                if throttle > 0:
                    ahead = sent / throttle - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            if sent < size:
                log("simulated truncation: sent %d/%d bytes of %s" % (sent, size, path))
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                log("sent %s (%d bytes) in %.1fs" % (os.path.basename(path), size, time.monotonic() - start))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, cfg, ctx):
        self.cfg = cfg
        self.ctx = ctx
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # Runs in the per-connection thread: a slow or broken TLS client cannot block accept().
        request.settimeout(60)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("TLS handshake with %s failed: %s" % (client_address[0], e))
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-dir", default=os.path.join(CACHE_DIR, "image"))
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    ap.add_argument("--cert", default=os.path.join(CACHE_DIR, "ca", "server.crt"))
    ap.add_argument("--key", default=os.path.join(CACHE_DIR, "ca", "server.key"))
    ap.add_argument("--throttle", type=int, default=0, metavar="BYTES_PER_SEC",
                    help="limit the rootfs download speed per connection (0 = unlimited)")
    ap.add_argument("--version-key", default=None,
                    help="simplestreams version key; must start with YYYYMMDD (default: "
                         "<creation date>_<fingerprint prefix>)")
    ap.add_argument("--fail-mode", default="none", choices=FAIL_MODES)
    ap.add_argument("--url-tag", default=None,
                    help="path component of the printed URL (default: <version>-<random>)")
    args = ap.parse_args()

    info = load_image(args.image_dir)
    version = args.version_key or default_version_key(info)
    try:
        datetime.datetime.strptime(version[:8], "%Y%m%d")
    except ValueError:
        sys.exit("simplestreams: --version-key %r must start with YYYYMMDD (LXD ignores other keys)" % version)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as e:
        sys.exit("simplestreams: cannot load %s / %s (run ca.sh): %s" % (args.cert, args.key, e))

    class Cfg:
        pass

    cfg = Cfg()
    cfg.image_dir = args.image_dir
    cfg.version = version
    cfg.url_tag = args.url_tag or "%s-%s" % (version, secrets.token_hex(4))
    if not cfg.url_tag or "/" in cfg.url_tag or "?" in cfg.url_tag:
        sys.exit("simplestreams: --url-tag %r must be a non-empty path component" % cfg.url_tag)
    cfg.routes = build_tree(info, version)
    cfg.throttle = args.throttle
    cfg.fail_mode = args.fail_mode

    try:
        server = Server(("127.0.0.1", args.port), cfg, ctx)
    except OSError as e:
        sys.exit("simplestreams: cannot listen on 127.0.0.1:%d: %s" % (args.port, e))
    port = server.server_address[1]
    out = sys.stdout
    out.write("PORT=%d\n" % port)
    out.write("URL=https://127.0.0.1:%d/u/%s\n" % (port, cfg.url_tag))
    out.write("VERSION=%s\n" % version)
    out.write("FINGERPRINT=%s\n" % info["combined_squashfs_sha256"])
    out.write("ALIAS=crostini-test\n")
    out.flush()
    log("serving %s on https://127.0.0.1:%d (version %s, throttle %s, fail-mode %s)"
        % (args.image_dir, port, version, args.throttle or "off", args.fail_mode))

    def stop(signum, _frame):
        log("signal %d: shutting down" % signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
