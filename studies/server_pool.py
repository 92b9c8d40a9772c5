"""Spread TCP connections over several local servers (least connections first).

    python studies/server_pool.py --listen 28471 --backends 28481 28482

Used by studies/cpu_study.sh: on two busy cores, two single-threaded llama-server processes
decode about twice as fast as one (each gets its own share of the CPU), while one process
with two threads stalls at every thread barrier when a core is taken. Each client connection
is pinned to one backend for its lifetime, so HTTP keep-alive works. Runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio

ACTIVE: dict[int, int] = {}


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer) -> None:
    port = min(ACTIVE, key=ACTIVE.get)
    ACTIVE[port] += 1
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        ACTIVE[port] -= 1
        client_writer.close()
        return
    try:
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
    finally:
        ACTIVE[port] -= 1


async def main(listen: int, backends: list[int]) -> None:
    ACTIVE.update(dict.fromkeys(backends, 0))
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--backends", type=int, nargs="+", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.listen, args.backends))
