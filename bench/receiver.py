"""A webhook receiver for the benchmarks: answers 200 to every POST and records when each event arrived.

An asyncio HTTP/1.1 server with keep-alive, in a thread of the bench process (bench/webhooks.py, which
reads the arrival times) or as a process of its own (bench/events.py runs `nice -n 10 python
bench/receiver.py PORT`, standing for the integrator's server elsewhere; `GET /count` answers how many
events arrived).
"""

from __future__ import annotations

import asyncio
import threading
import time


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []  # (webhook-id, wall-clock arrival) of each request
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, message_id = 0, ""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        message_id = value.strip().decode()
                await reader.readexactly(length)
                if head.startswith(b"GET /count"):
                    count = str(len(self.arrivals)).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(count), count))
                    await writer.drain()
                    continue
                self.arrivals.append((message_id, time.time()))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _serve(self, port: int = 0) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", port, backlog=512)
        self.port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        async with server:
            await server.serve_forever()

    def start(self) -> Receiver:
        threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True).start()
        self._ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


if __name__ == "__main__":
    import sys

    asyncio.run(Receiver()._serve(int(sys.argv[1])))
