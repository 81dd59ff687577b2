# git_http.py HOST PORT ROOT LOG [TOKEN_FILE|- [CERT KEY]]: `git http-backend`
# as CGI over smart HTTP, for the e2e suites (git_transport_e2e.sh,
# netns_lib.sh). With a TOKEN_FILE every request without the token gets
# 401 + WWW-Authenticate: Basic; with CERT and KEY it speaks TLS. Each
# request is logged as "CLIENT METHOD PATH auth=ok|wrong|none|open".
# HTTP/1.1 with keep-alive, as Git hosts answer. Every response has a
# Content-Type: libgit2 1.5 reads a body only when there is one, and would
# parse an untyped 401 body as the next response.
import base64, http.server, os, ssl, subprocess, sys
host, port, root, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
token = open(sys.argv[5]).read().strip() if len(sys.argv) > 5 and sys.argv[5] != "-" else None
good = {"Basic " + base64.b64encode(("x-access-token:" + token).encode()).decode(), "Bearer " + token} if token else set()
backend = os.path.join(subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout.strip(),
                       "git-http-backend")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, code, headers, body):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))
    def serve(self):
        auth = self.headers.get("Authorization", "")
        verdict = "open" if token is None else "ok" if auth in good else "wrong" if auth else "none"
        with open(log, "a") as f:
            f.write("%s %s %s auth=%s\n" % (self.client_address[0], self.command, self.path, verdict))
        data = self.body()
        if verdict not in ("ok", "open"):
            return self.reply(401, [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")],
                              b"authentication required\n")
        path, _, query = self.path.partition("?")
        env = {"GIT_PROJECT_ROOT": root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_ADDR": self.client_address[0],
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(data)),
               "PATH": os.environ["PATH"], "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
        if token: env["REMOTE_USER"] = "x-access-token"
        if self.headers.get("Content-Encoding"): env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run([backend], input=data, env=env, capture_output=True, timeout=20).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, body = out.partition(sep)
        code, headers = 200, []
        for line in head.decode().splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status": code = int(v.split()[0])
            elif k: headers.append((k, v.strip()))
        self.reply(code, headers, body)
    do_GET = do_POST = serve
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer((host, port), H)
if len(sys.argv) > 7:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[6], sys.argv[7])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
