"""The local mirror of a remote lake's ``files/``.

torch, diffusers, numpy and PIL write and read local paths; a step writes its
arrays, checkpoints and pictures into the mirror, and `publish` puts each new
or changed file as one whole object (and removes the objects of files deleted
here). `fetch` brings what other machines
published. The mirror's path is the same on every machine
(DIFFMINE_LAKE_MIRROR, like a mount point), because tables record file paths.

A manifest records, per file, the local size and mtime and the object's ETag
at the last publish or fetch. A file is published when its size or mtime
changed since; it is fetched when the store's ETag differs from the recorded
one - so a file this machine is still writing is never overwritten by an older
copy from the store. Processes on one machine share the mirror: publish and
fetch take turns through a lock file, downloads land under a temporary name
and are renamed into place.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

MANIFEST = ".mirror.json"


def default_mirror_root(url: str) -> Path:
    env = os.environ.get("DIFFMINE_LAKE_MIRROR")
    if env:
        return Path(env)
    digest = hashlib.sha1(url.encode()).hexdigest()[:12]
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diffmine" / "lakes" / digest


class Mirror:
    def __init__(self, fs, prefix: str, local_root: Path):
        self.fs = fs
        self.prefix = prefix.rstrip("/")  # <bucket/path>/files
        self.local_root = Path(local_root)
        self.local_files = self.local_root / "files"

    @contextmanager
    def _turn(self):
        self.local_root.mkdir(parents=True, exist_ok=True)
        with open(self.local_root / ".mirror.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._load()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict:
        try:
            return json.loads((self.local_root / MANIFEST).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, manifest: dict) -> None:
        tmp = self.local_root / f".{MANIFEST}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(manifest, sort_keys=True))
        os.replace(tmp, self.local_root / MANIFEST)

    @staticmethod
    def _etag(info: dict) -> str:
        return str(info.get("ETag") or info.get("etag") or info.get("md5") or info.get("size"))

    def publish(self, dataset: str | None = None) -> int:
        """Put what changed under files/ (under files/<dataset> when given:
        the only files a table of that dataset can name)."""
        top = self.local_files / dataset if dataset else self.local_files
        if not top.exists():
            return 0
        scope = f"{dataset}/" if dataset else ""
        sent = 0
        with self._turn() as manifest:
            for dirpath, _dirs, names in os.walk(top):
                for name in names:
                    if name.endswith(".tmp") or name.startswith(".nfs"):
                        continue  # still being written by its owner
                    path = Path(dirpath) / name
                    rel = path.relative_to(self.local_files).as_posix()
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue
                    seen = manifest.get(rel)
                    if seen and seen["size"] == st.st_size and seen["mtime_ns"] == st.st_mtime_ns:
                        continue
                    key = f"{self.prefix}/{rel}"
                    self.fs.put_file(str(path), key)
                    manifest[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": self._etag(self.fs.info(key))}
                    sent += 1
            # deleted here (a run's old snapshots): deleted in the store, or a
            # later fetch would bring them back
            for rel in [r for r in manifest if r.startswith(scope) and not (self.local_files / r).exists()]:
                self.fs.rm_file(f"{self.prefix}/{rel}")
                del manifest[rel]
                sent += 1
            if sent:
                self._save(manifest)
        return sent

    def fetch(self) -> int:
        try:
            listing = self.fs.find(self.prefix, detail=True)
        except FileNotFoundError:
            return 0
        got = 0
        with self._turn() as manifest:
            for key, info in listing.items():
                if info.get("type") == "directory":
                    continue
                rel = key[len(self.prefix) + 1:]
                etag = self._etag(info)
                local = self.local_files / rel
                seen = manifest.get(rel)
                if seen and seen["etag"] == etag and local.exists():
                    continue
                local.parent.mkdir(parents=True, exist_ok=True)
                tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
                try:
                    self.fs.get_file(key, str(tmp))
                    os.replace(tmp, local)
                finally:
                    if tmp.exists():
                        tmp.unlink()
                st = local.stat()
                manifest[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": etag}
                got += 1
            if got:
                self._save(manifest)
        return got
