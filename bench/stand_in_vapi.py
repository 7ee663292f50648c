"""A stand-in for Vapi's POST /call/web on loopback, fast enough not to be the bottleneck.

    python bench/stand_in_vapi.py --port 9100 --delay-ms 1000

Plain asyncio with HTTP/1.1 keep-alive: every POST is answered 201 with a new call id after
the delay; anything else 404. Reads Content-Length bodies; no chunked uploads (nobody sends them).
"""

import argparse
import asyncio
import itertools
import json
import os
import signal

_ids = itertools.count(1)


def _answer() -> bytes:
    number = next(_ids)
    body = json.dumps(
        {
            "id": f"bench-{os.getpid()}-{number:09d}",
            "orgId": "bench-org",
            "type": "webCall",
            "status": "queued",
            "createdAt": "2026-12-03T10:15:00.000Z",
            "webCallUrl": f"https://vapi.daily.co/bench{number}",
            "assistant": {"model": {"messages": [{"role": "system", "content": "bench prompt"}]}},
            "monitor": {"listenUrl": "wss://example.invalid/l", "controlUrl": "https://example.invalid/c"},
        }
    ).encode()
    return (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method = lines[0].split(b" ", 1)[0]
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            if delay:
                await asyncio.sleep(delay)
            writer.write(_answer() if method == b"POST" else _NOT_FOUND)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int, delay_ms: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, delay_ms / 1000), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"stand-in Vapi on http://127.0.0.1:{port} (delay {delay_ms} ms)", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.delay_ms))
