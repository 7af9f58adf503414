#!/usr/bin/env python3
"""Write the root filesystem of the northstar image as a tar archive, for `docker import`.

The archive holds only what the binary needs to run:

- /usr/local/bin/northstar (debug info stripped unless --keep-debug);
- every shared library `ldd` says it links, and the dynamic loader, at the paths ldd names;
- /etc/passwd and /etc/group with root and the unprivileged user `northstar` (10001:10001),
  /etc/nsswitch.conf (so service names resolve through Docker's DNS), the CA bundle if the
  host has one;
- /data (owned by northstar, mode 0700: a new named volume mounted there takes this owner)
  and /tmp (mode 1777).

Owners, modes and times are set here, not taken from the host, so the archive is the same for
the same binary whoever builds it, and building needs no root. Prints the directories holding
the libraries, joined by ':', for the image's LD_LIBRARY_PATH.
"""

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

UID = GID = 10001
# A fixed time for every entry, so the same inputs make the same archive.
MTIME = 0
CA_BUNDLES = [
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
]


def linked_files(binary):
    """The shared libraries and loader the binary links, as (path in image, file on host)."""
    try:
        out = subprocess.run(
            ["ldd", binary], check=True, capture_output=True, text=True
        ).stdout
    except FileNotFoundError:
        sys.exit("mkrootfs: ldd not found; it comes with the C library (glibc: libc-bin)")
    except subprocess.CalledProcessError as e:
        msg = (e.stdout + e.stderr).strip()
        if "not a dynamic executable" in msg:
            return []  # a static binary needs nothing else
        sys.exit(f"mkrootfs: ldd {binary} failed: {msg}")
    files = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            sys.exit(f"mkrootfs: {binary} links a library ldd cannot find: {line}")
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(
            r"^(/\S+) \(0x[0-9a-f]+\)$", line
        )
        if m:  # skips linux-vdso.so.1, which the kernel provides
            path = m.group(1)
            files.append((path, os.path.realpath(path)))
    return files


def add_dir(tar, path, mode=0o755, uid=0, gid=0):
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, MTIME
    tar.addfile(info)


def add_bytes(tar, path, data, mode=0o644):
    info = tarfile.TarInfo(path.lstrip("/"))
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    tar.addfile(info, io.BytesIO(data))


def add_file(tar, path, source, mode):
    with open(source, "rb") as f:
        add_bytes(tar, path, f.read(), mode)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", required=True, help="the northstar binary to ship")
    p.add_argument("--out", required=True, help="the tar archive to write")
    p.add_argument("--keep-debug", action="store_true", help="do not strip debug info")
    args = p.parse_args()

    binary = args.binary
    tmp = None
    if not args.keep_debug:
        strip = shutil.which("strip")
        if strip is None:
            print("mkrootfs: no `strip` found; shipping the binary with its debug info",
                  file=sys.stderr)
        else:
            tmp = tempfile.NamedTemporaryFile(prefix="northstar-", delete=False)
            tmp.close()
            shutil.copyfile(args.binary, tmp.name)
            subprocess.run([strip, "--strip-debug", tmp.name], check=True)
            binary = tmp.name

    libs = linked_files(args.binary)
    dirs = {"/etc", "/usr", "/usr/local", "/usr/local/bin"}
    for path, _ in libs:
        d = os.path.dirname(path)
        while d != "/":
            dirs.add(d)
            d = os.path.dirname(d)
    ca = next((c for c in CA_BUNDLES if os.path.isfile(c)), None)
    if ca:
        dirs.update({"/etc/ssl", "/etc/ssl/certs"})

    try:
        with tarfile.open(args.out, "w", format=tarfile.GNU_FORMAT) as tar:
            for d in sorted(dirs):
                add_dir(tar, d)
            add_dir(tar, "/data", 0o700, UID, GID)
            add_dir(tar, "/tmp", 0o1777)
            add_file(tar, "/usr/local/bin/northstar", binary, 0o755)
            for path, real in sorted(libs):
                add_file(tar, path, real, 0o755)
            add_bytes(tar, "/etc/passwd",
                      b"root:x:0:0:root:/root:/sbin/nologin\n"
                      b"northstar:x:10001:10001:northstar:/data:/sbin/nologin\n")
            add_bytes(tar, "/etc/group", b"root:x:0:\nnorthstar:x:10001:\n")
            add_bytes(tar, "/etc/nsswitch.conf", b"hosts: files dns\n")
            if ca:
                add_file(tar, "/etc/ssl/certs/ca-certificates.crt", ca, 0o644)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)

    lib_dirs = []
    for path, _ in libs:
        d = os.path.dirname(path)
        if d not in lib_dirs:
            lib_dirs.append(d)
    print(":".join(lib_dirs))


if __name__ == "__main__":
    main()
