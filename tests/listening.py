"""Which addresses the test process and its children listen on (Linux /proc), to prove servers stay on loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

import pytest


def listening_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses of the TCP sockets listened on by this process and its descendants.

    IPv4-mapped IPv6 addresses come back as IPv4. Skips the calling test where Linux's /proc is absent.
    """
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("listening sockets are read from Linux's /proc")
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    pids, todo = set(), [os.getpid()]
    while todo:
        pids.add(pid := todo.pop())
        todo += children.get(pid, [])
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if (link := os.readlink(fd)).startswith("socket:["):
                        inodes.add(link[8:-1])
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(cols[1].split(":")[0])
                host = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words
                addr = ipaddress.ip_address(host)
                found.append(getattr(addr, "ipv4_mapped", None) or addr)
    return found
