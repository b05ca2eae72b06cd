"""A WebSocket client small enough to read, run inside sandboxes by the egress tests (the base
template's Python has no WebSocket library, its Node 18 no WebSocket). It trusts the sandbox's
own certificate store, as any client there would.
Usage: python3 ws-client.py <host> <port> ws|wss <path>; prints one JSON line: the status line
and, once upgraded, the server's first frame, the echoes of two frames and the close."""
import base64, json, os, socket, ssl, sys

host, port, scheme, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), 20)
if scheme == 'wss':
    s = ssl.create_default_context().wrap_socket(s, server_hostname=host)
s.settimeout(20)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f'GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
           f'Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: mine\r\n\r\n').encode())
buf = b''

def need(n):
    global buf
    while len(buf) < n:
        data = s.recv(65536)
        if not data:
            raise EOFError('closed')
        buf += data

while b'\r\n\r\n' not in buf:
    data = s.recv(65536)
    if not data:
        break
    buf += data
head, _, buf = buf.partition(b'\r\n\r\n')
out = {'status': head.split(b'\r\n')[0].decode()}

def recv_frame():
    global buf
    need(2)
    n, at = buf[1] & 0x7f, 2
    if n == 126:
        need(4)
        n, at = int.from_bytes(buf[2:4], 'big'), 4
    need(at + n)
    opcode, payload, buf = buf[0] & 0x0f, buf[at:at + n], buf[at + n:]
    return opcode, payload.decode()

def send(opcode, text):
    payload, mask = text.encode(), os.urandom(4)
    size = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + len(payload).to_bytes(2, 'big')
    s.sendall(bytes([0x80 | opcode]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

if ' 101 ' in out['status']:
    out['hello'] = json.loads(recv_frame()[1])
    send(1, 'ping-1')
    out['echo1'] = recv_frame()[1]
    send(1, 'x' * 300)
    out['echo2'] = recv_frame()[1]
    send(8, '')
    out['close'] = recv_frame()[0]
else:
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
    except OSError:
        pass
    out['body'] = buf.decode(errors='replace')
print(json.dumps(out))
