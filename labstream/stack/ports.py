"""Is a TCP port free, and if not, which process listens on it (read from /proc)."""

from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from labstream.stack.procs import command_line

_TCP_LISTEN = "0A"
RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


@dataclass(frozen=True)
class Listener:
    pid: int
    command: str

    def describe(self) -> str:
        # long java command lines: the start (program) and the end (main class, config) tell
        command = self.command
        if len(command) > 120:
            command = f"{command[:55]} ... {command[-60:]}"
        return f"pid {self.pid} ({command})"


def port_in_use(host: str, port: int) -> bool:
    """True when binding host:port fails because something already holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def listening_inodes(port: int, proc_net: Path = Path("/proc/net")) -> set[str]:
    """Socket inodes listening on `port` (any address), from /proc/net/tcp and tcp6."""
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(fields[9])
    return inodes


def find_listener(port: int, proc: Path = Path("/proc")) -> Listener | None:
    """The process holding a listening socket on `port`, when /proc lets us see it."""
    inodes = listening_inodes(port, proc / "net")
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    pid = int(entry.name)
                    return Listener(pid, command_line(pid) or "?")
            except OSError:
                continue
    return None


def ensure_port_free(
    service: str, host: str, port: int, *, env_var: str, wait_s: float = 65.0
) -> None:
    """Raise PortTaken naming the port, its holder (when visible) and the variable to change.

    A port held by no listening server is held by a connection that was given it as
    its source port (or by its TIME_WAIT remains): that goes away within a minute,
    so wait for it rather than fail.
    """
    from labstream.stack.exceptions import PortTaken

    deadline = time.monotonic() + wait_s
    while port_in_use(host, port):
        holder = find_listener(port)
        if holder is not None:
            raise PortTaken(
                f"{service} cannot start: port {host}:{port} is already taken "
                f"by {holder.describe()}",
                hint=f"stop that process, or choose another port with {env_var}",
            )
        if time.monotonic() >= deadline:
            raise PortTaken(
                f"{service} cannot start: port {host}:{port} is held by a connection, "
                "not a server (an outgoing connection got it as its source port), "
                "or by a process this user cannot see",
                hint=f"try again in a minute, or choose another port with {env_var}",
            )
        time.sleep(1.0)


def parse_port_list(text: str) -> set[int]:
    """Ports of a kernel port list such as `55432,59092-59093`."""
    ports: set[int] = set()
    for item in text.replace("\n", "").split(","):
        first, _, last = item.strip().partition("-")
        if first.isdigit():
            ports.update(range(int(first), int(last or first) + 1))
    return ports


def reserve_ports(ports: list[int], path: Path = RESERVED_PORTS) -> list[int]:
    """Keep `ports` out of the kernel's ephemeral range (ip_local_reserved_ports).

    Our default ports lie inside 32768-60999, where any outgoing connection can be
    given one as its source port and so block the server from binding it. Returns
    the ports newly reserved; does nothing when the file cannot be written (not root).
    """
    try:
        current = path.read_text().strip()
    except OSError:
        return []
    missing = sorted(set(ports) - parse_port_list(current))
    if not missing:
        return []
    merged = ",".join([current, *map(str, missing)] if current else map(str, missing))
    try:
        path.write_text(merged)
    except OSError:
        return []
    return missing
