"""TEST DOUBLE (k3s stand-in, not the real k3s).

HTTPS server plumbing: threading TLS server with optional client certificates, the request
handler, Accept negotiation (Table or JSON).

Upstream: kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/writers.go
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import socket
import socketserver
import ssl
import traceback

from .store import ApiError
from .util import log


class TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, ctx, app):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.ctx, self.app = ctx, app
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("debug", "TLS handshake with %s failed: %s" % (client_address[0], e))
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        log("debug", "connection error from %s" % (client_address,))


def server_ssl_context(cert_file, key_file, client_ca_file):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(client_ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k3s-standin"
    sys_version = ""
    timeout = 600

    def log_message(self, fmt, *args):
        log("debug", "%s %s" % (self.client_address[0], fmt % args))

    def _dispatch(self):
        try:
            self.server.app.handle(self, self.command)
        except ApiError as e:
            self.send_json(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001
            log("error", "internal error on %s %s: %s\n%s" % (self.command, self.path, e, traceback.format_exc()))
            try:
                self.send_json(500, ApiError(500, "InternalError", "stand-in internal error: %s" % e).status())
            except OSError:
                self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_bytes(self, code, body, ctype="application/json", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, code, obj, extra=None):
        self.send_bytes(code, (json.dumps(obj) + "\n").encode(), "application/json", extra)

    def client_cert_identity(self):
        try:
            cert = self.connection.getpeercert()
        except (ValueError, AttributeError):
            return None
        if not cert:
            return None
        ident = {"cn": "", "groups": []}
        for rdn in cert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    ident["cn"] = v
                elif k == "organizationName":
                    ident["groups"].append(v)
        return ident

    def basic_credentials(self):
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("basic "):
            return None, None
        try:
            user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, None
        return user, pw


def parse_accept(accept):
    out = []
    for item in (accept or "").split(","):
        parts = [p.strip() for p in item.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        out.append((parts[0].lower(), params))
    return out


def wants_table(accept):
    for mt, params in parse_accept(accept):
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v", "v1")
        if mt in ("application/json", "*/*") and "as" not in params:
            return None
    return None
