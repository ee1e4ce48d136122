# Makes the add-local-archive case's context (run once; the outputs are committed).
import gzip, io, tarfile
def add(t, name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link=""):
    i = tarfile.TarInfo(name); i.type = kind; i.mode = mode; i.uid = i.gid = 0
    i.uname = i.gname = "root"; i.mtime = 1700000000; i.linkname = link; i.size = len(data)
    t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
def tar(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
        for e in entries: add(t, **e)
    return b.getvalue()
app = tar([dict(name="app", kind=tarfile.DIRTYPE, mode=0o750),
           dict(name="app/run.sh", data=b"#!/bin/sh\necho app\n", mode=0o755),
           dict(name="app/conf", kind=tarfile.DIRTYPE, mode=0o755),
           dict(name="app/conf/app.conf", data=b"key=value\n", mode=0o600),
           dict(name="app/current", kind=tarfile.SYMTYPE, link="run.sh", mode=0o777),
           dict(name="app/hard.sh", kind=tarfile.LNKTYPE, link="app/run.sh", mode=0o755)])
open("context/app.tar.gz", "wb").write(gzip.compress(app, mtime=0))
open("context/plain.tar", "wb").write(tar([dict(name="hello.txt", data=b"hello\n", mode=0o640),
                                           dict(name="sub/deep.txt", data=b"deep\n")]))
open("context/notatar.gz", "wb").write(gzip.compress(b"just gzipped text\n", mtime=0))
