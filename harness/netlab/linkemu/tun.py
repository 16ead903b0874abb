"""TUN devices made inside the two namespaces, by the emulator process itself.

A TUN device belongs to the network namespace the opener of /dev/net/tun was in, so
the emulator enters each namespace in turn (setns on this thread; Python 3.11 has no
os.setns, hence ctypes) and opens one there. The devices are not persistent: they
exist exactly as long as the emulator holds their file descriptors, so an emulator
that dies for any reason takes them along.

IFF_TUN | IFF_NO_PI: bare IP packets, no 4-byte header, and no GSO super-packets
(no IFF_VNET_HDR), so every read is one wire packet of at most the MTU.
Device setup uses ioctls on a socket made inside the namespace (no `ip` subprocess,
which would cost ~5 ms each); IPv6 goes off through the namespace's /proc/sys before
the device comes up, so no router solicitation or DAD ever crosses the link.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from contextlib import contextmanager
from typing import Iterator

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_UP = 0x1
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFADDR, SIOCSIFNETMASK = 0x8916, 0x891C
SIOCSIFMTU, SIOCSIFTXQLEN = 0x8922, 0x8943

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the body with this thread in the network namespace at `path`
    (e.g. /proc/PID/ns/net), then come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target)
        yield
    finally:
        setns(home)
        os.close(target)
        os.close(home)


def open_tun(name: str) -> int:
    """A new non-blocking TUN device `name` in this thread's namespace; its fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def _ifreq_int(name: str, value: int) -> bytes:
    return struct.pack("16si20x", name.encode(), value)


def _ifreq_addr(name: str, addr: str) -> bytes:
    # struct sockaddr_in: family (host order), port, address, 8 bytes of zero
    return struct.pack("16sH2s4s8x8x", name.encode(), socket.AF_INET, b"\0\0",
                       socket.inet_aton(addr))


def _set_up(sock: socket.socket, name: str) -> None:
    got = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sh22x", name.encode(), 0))
    flags = struct.unpack_from("16sh", got)[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", name.encode(), flags | IFF_UP))


def _disable_ipv6(name: str) -> None:
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
    except FileNotFoundError:        # a kernel without IPv6: nothing to turn off
        pass


def configure(name: str, address: str, prefix: int, mtu: int = 1500,
              txqueuelen: int = 4096) -> None:
    """Address, MTU and queue length for `name` in this thread's namespace, then up;
    also brings up lo there. txqueuelen is the kernel's ring ahead of our read():
    long enough that a busy emulator does not drop what the model would not."""
    _disable_ipv6(name)
    netmask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFMTU, _ifreq_int(name, mtu))
        fcntl.ioctl(sock, SIOCSIFTXQLEN, _ifreq_int(name, txqueuelen))
        fcntl.ioctl(sock, SIOCSIFADDR, _ifreq_addr(name, address))
        fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq_addr(name, netmask))
        _set_up(sock, name)
        _set_up(sock, "lo")


def make_tun(netns_path: str, name: str, address: str, prefix: int, mtu: int = 1500) -> int:
    """Create, configure and bring up TUN `name` inside the namespace at `netns_path`."""
    with in_netns(netns_path):
        fd = open_tun(name)
        try:
            configure(name, address, prefix, mtu)
        except OSError:
            os.close(fd)
            raise
    return fd


def device_tx(proc_net_dev: str, dev: str) -> tuple[int, int]:
    """(tx bytes, tx packets) of `dev` as listed in a namespace's /proc/PID/net/dev."""
    with open(proc_net_dev) as f:
        for line in f:
            name, sep, rest = line.partition(":")
            if sep and name.strip() == dev:
                v = rest.split()
                return int(v[8]), int(v[9])
    raise OSError(f"no device {dev} in {proc_net_dev}")


def net_dev_of(netns_path: str) -> str | None:
    """/proc/PID/net/dev for a /proc/PID/ns/net path (None for any other form)."""
    parts = netns_path.rstrip("/").split("/")
    if len(parts) == 5 and parts[1] == "proc" and parts[3:] == ["ns", "net"]:
        return f"/proc/{parts[2]}/net/dev"
    return None
