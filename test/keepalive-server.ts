/**
 * A Python server for gVisor's memory pause: HTTP/1.1 with keep-alive, waiting with poll()
 * (socketserver), and letting the client close first. This gVisor cannot checkpoint a TCP
 * socket watched by epoll, nor the TIME_WAIT a server that closes first leaves for 60 s
 * (`python3 -m http.server` does): docs/runtimes.md.
 */
export const KEEPALIVE_SERVER = `import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            while self.rfile.readline() not in (b"\\r\\n", b"\\n", b""):
                pass
            self.wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            self.wfile.flush()
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("0.0.0.0", 8000), H).serve_forever()
`;
