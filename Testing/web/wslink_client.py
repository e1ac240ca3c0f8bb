"""A raw client of the page's WebSocket, as any program (or another site's script) could write one: aiohttp's
client and wslink's own message format (msgpack in chunks), no trame client."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import msgpack
from wslink.chunking import UnChunker, generate_chunks


def ws_url(page_url: str, key: str | None = None) -> str:
    """The page's WebSocket address, with ``key`` as its ``?secret=`` (None: none)."""
    base = page_url.split("?")[0].rstrip("/").replace("http", "ws", 1)
    return f"{base}/ws" + (f"?secret={key}" if key is not None else "")


def page_key(page_url: str) -> str:
    return page_url.split("secret=", 1)[1]


async def _exchange(url: str, messages: list[dict], headers: dict | None, origin: str | None, ssl) -> list[dict]:
    answers = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers=headers or {}, origin=origin, ssl=True if ssl is None else ssl) as ws:
            unchunker = UnChunker()
            unchunker.set_max_message_size(64 * 1024 * 1024)
            for message in messages:
                for chunk in generate_chunks(msgpack.packb(message), 0):
                    await ws.send_bytes(chunk)
                while True:            # the answer to this message (state pushes may come first)
                    msg = await ws.receive(timeout=20)
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        raise ConnectionError(f"the server closed the WebSocket: {msg.type}")
                    full = unchunker.process_chunk(msg.data)
                    if full is not None and full.get("id") == message["id"]:
                        answers.append(full)
                        break
    return answers


def talk(url: str, secret, *calls: tuple[str, list], headers: dict | None = None, origin: str | None = None,
         ssl=None) -> list[dict]:
    """Connect to ``url``, say hello with ``secret``, then make each (method, args) call; returns every answer
    (``result`` or ``error``). Raises aiohttp.WSServerHandshakeError when the upgrade itself is refused."""
    messages = [{"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello", "args": [{"secret": secret}],
                 "kwargs": {}}]
    messages += [{"wslink": "1.0", "id": f"rpc:c0:{i + 1}", "method": method, "args": args, "kwargs": {}}
                 for i, (method, args) in enumerate(calls)]
    with ThreadPoolExecutor(1) as pool:     # a thread of its own: Playwright's sync API holds this thread's loop
        return pool.submit(asyncio.run, _exchange(url, messages, headers, origin, ssl)).result()
