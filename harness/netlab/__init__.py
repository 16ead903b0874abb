"""The network lab: namespaces, veth links and the TUN link emulator."""
