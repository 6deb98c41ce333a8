"""A TCP relay between the gateway and the store that can lose a reply.

MongoDB's wire protocol frames every message with its total length (the
first four bytes, little-endian int32), so the relay moves whole messages
and can look into each. Armed with markers, it forwards the next
client-to-store message that contains all of them, lets the store answer,
then drops that connection instead of relaying the answer: the operation
has landed, but the client sees only a broken stream. Standard library
only; one thread per direction and connection."""
import socket
import struct
import threading


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _read_message(sock):
    head = _read_exact(sock, 4)
    (length,) = struct.unpack("<i", head)
    if length < 16:
        raise ConnectionError("bad message length %d" % length)
    return head + _read_exact(sock, length - 4)


def _close(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class StoreRelay:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.markers = None     # armed: a tuple of byte strings
        self.remaining = 0
        self.dropped = 0        # replies lost so far
        self.seen = 0           # messages that matched while armed
        self.watched = {}       # marker -> messages that held it
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.uri = "mongodb://127.0.0.1:%d" % self.port
        self.stopping = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def watch(self, marker):
        """Counts, from now on, client-to-store messages that hold marker."""
        with self.lock:
            self.watched[marker] = 0

    def count(self, marker):
        with self.lock:
            return self.watched[marker]

    def drop_reply(self, *markers, count=1):
        """Loses the store's reply to the next `count` client messages that
        contain every one of markers (bytes)."""
        with self.lock:
            self.markers = tuple(markers)
            self.remaining = count

    def disarm(self):
        with self.lock:
            self.markers = None
            self.remaining = 0

    def stop(self):
        self.stopping = True
        _close(self.listener)
        with self.lock:
            conns, self.conns = self.conns, []
        for c, s in conns:
            _close(c, s)

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"doomed": False}
            with self.lock:
                self.conns.append((client, server))
            threading.Thread(target=self._up, args=(client, server, state),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(client, server, state),
                             daemon=True).start()

    def _matches(self, msg):
        with self.lock:
            if not self.markers or self.remaining <= 0:
                return False
            if not all(m in msg for m in self.markers):
                return False
            self.remaining -= 1
            self.seen += 1
            return True

    def _up(self, client, server, state):
        """Client to store."""
        try:
            while True:
                msg = _read_message(client)
                with self.lock:
                    for m in self.watched:
                        if m in msg:
                            self.watched[m] += 1
                if self._matches(msg):
                    # Doomed before the store can answer: the reply thread
                    # then swallows the answer and cuts the connection.
                    state["doomed"] = True
                server.sendall(msg)
        except (OSError, ConnectionError):
            _close(client, server)

    def _down(self, client, server, state):
        """Store to client."""
        try:
            while True:
                msg = _read_message(server)
                if state["doomed"]:
                    with self.lock:
                        self.dropped += 1
                    break
                client.sendall(msg)
        except (OSError, ConnectionError):
            pass
        _close(client, server)
