"""Identities that stay current: the kernel's (device, inode) keys follow the host's files.

- ``notify``: inotify and fanotify through ctypes (the agent is stdlib + bcc).
- ``mounts``: the filesystems to watch, and the overlay mounts a process sees.
- ``content``: byte-identical copies of protected executables, by size then SHA-256.
- ``keeper``: the thread that keeps the active slot's "inodes" map current.
"""
