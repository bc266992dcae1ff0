"""Regenerate src/kwire/api/data/proto.json: the protobuf schemas of the kinds kwire serves.

kubectl's typed commands send Kubernetes protobuf (see kwire/api/protobuf.py). Decoding
it needs, for each message, the field numbers and wire types (from generated.proto) and
how each field appears in JSON (from the Go struct: the json tag's name, omitempty,
embedding, and whether the field is a pointer). A kubectl binary carries both, exactly
as its client-go was built:
  - gogo registers every generated.proto as a gzipped FileDescriptorProto;
  - encoding/json needs the API structs' reflection data, so the Go type descriptors,
    struct tags included, are kept even in a stripped binary.

    .venv/bin/python tools/gen_proto.py [KUBECTL_BINARY]

The default binary is the newest kubectl.1.N beside the `kubectl` on PATH (the Google
Cloud SDK dispatcher bundles several), else that kubectl. It must be a non-PIE ELF
amd64 Go binary built with Go >= 1.20 (whose type layout this reads).
"""
import json
import re
import shutil
import struct
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from kwire.api.protobuf import ProtobufError, iter_fields, varint  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "src/kwire/api/data/proto.json"
API, META = "k8s.io.api.", "k8s.io.apimachinery.pkg.apis.meta.v1."
# "apiVersion/kind" -> message. DeleteOptions is keyed by kind alone: a client sends it
# under its own group's version.
KINDS = {f"v1/{k}": f"{API}core.v1.{k}" for k in (
    "Namespace", "Pod", "Service", "Endpoints", "Node", "ConfigMap", "Secret", "Event",
    "ServiceAccount", "Binding")}
KINDS |= {f"apps/v1/{k}": f"{API}apps.v1.{k}" for k in ("Deployment", "ReplicaSet", "DaemonSet")}
KINDS |= {f"networking.k8s.io/v1/{k}": f"{API}networking.v1.{k}"
          for k in ("Ingress", "IngressClass", "NetworkPolicy")}
KINDS |= {"discovery.k8s.io/v1/EndpointSlice": f"{API}discovery.v1.EndpointSlice",
          "coordination.k8s.io/v1/Lease": f"{API}coordination.v1.Lease",
          "autoscaling/v1/Scale": f"{API}autoscaling.v1.Scale",
          "policy/v1/Eviction": f"{API}policy.v1.Eviction",
          "authorization.k8s.io/v1/SelfSubjectAccessReview":
              f"{API}authorization.v1.SelfSubjectAccessReview",

          "DeleteOptions": f"{META}DeleteOptions"}
# Messages whose JSON form is not their fields; kwire/api/protobuf.py converts them.
SPECIAL = {f"{META}Time", f"{META}MicroTime", f"{META}FieldsV1",
           "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
           "k8s.io.apimachinery.pkg.api.resource.Quantity"}
# FieldDescriptorProto.Type numbers of the scalars kwire/api/protobuf.py reads.
SCALARS = {3: "int64", 5: "int32", 8: "bool", 9: "string", 12: "bytes"}
TYPE_MESSAGE, LABEL_REPEATED = 11, 3
# Go reflection (internal/abi): Kind values, and the byte offsets used below.
KIND_MASK, KIND_POINTER, KIND_STRUCT = 0x1F, 22, 25
TFLAG_UNCOMMON, TFLAG_EXTRA_STAR = 1, 2
NAME_HAS_TAG, NAME_EMBEDDED = 2, 8


def short(name: str) -> str:
    """Message names without the common prefixes: core.v1.Pod, meta.v1.ObjectMeta."""
    for prefix in ("k8s.io.api.", "k8s.io.apimachinery.pkg.apis.", "k8s.io.apimachinery.pkg."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def default_binary() -> Path:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        sys.exit("no kubectl on PATH: give the binary to read")
    kubectl = Path(kubectl).resolve()
    bundled = sorted(kubectl.parent.glob("kubectl.1.*"), key=lambda p: int(p.suffix[1:]))
    return bundled[-1] if bundled else kubectl


class Binary:
    """A non-PIE ELF file read by virtual address."""

    def __init__(self, path: Path):
        self.data = path.read_bytes()
        if self.data[:4] != b"\x7fELF" or self.data[4] != 2:
            sys.exit(f"{path}: not a 64-bit ELF file")
        shoff, = struct.unpack_from("<Q", self.data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", self.data, 0x3A)
        headers = [struct.unpack_from("<IIQQQQ", self.data, shoff + i * shentsize)
                   for i in range(shnum)]
        names_off = headers[shstrndx][4]
        self.sections = {}
        for name_idx, _, _, addr, offset, size in headers:
            end = self.data.index(b"\0", names_off + name_idx)
            self.sections[self.data[names_off + name_idx:end].decode()] = (addr, offset, size)

    def at(self, addr: int, size: int) -> bytes:
        for base, offset, length in self.sections.values():
            if base and base <= addr < base + length:
                return self.data[offset + addr - base:offset + addr - base + size]
        raise ValueError(f"address {addr:#x} is in no section")

    def u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.at(addr, 8))[0]

    def i32(self, addr: int) -> int:
        return struct.unpack("<i", self.at(addr, 4))[0]


def file_descriptors(binary: Binary) -> list[bytes]:
    """Every gzipped FileDescriptorProto of a k8s.io generated.proto in the binary."""
    out = []
    for m in re.finditer(rb"\x1f\x8b\x08\x00\x00\x00\x00\x00", binary.data):
        try:
            fd = zlib.decompressobj(31).decompress(binary.data[m.start():m.start() + 4_000_000])
        except zlib.error:
            continue
        if fd.startswith(b"\n") and fd[2:2 + fd[1]].startswith(b"k8s.io/"):
            out.append(fd)
    return out


def descriptor_messages(fds: list[bytes]) -> dict[str, dict]:
    """Full message name -> {"fields": [(number, name, type, repeated)], "map_entry": bool},
    where type is a message name or a FieldDescriptorProto.Type number."""
    messages: dict[str, dict] = {}

    def walk(buf: bytes, scope: str) -> None:
        name, fields, map_entry = "", [], False
        nested = []
        for num, _, val in iter_fields(buf):
            if num == 1:
                name = val.decode()
            elif num == 2:
                f = {n: v for n, _, v in iter_fields(val)}
                typ = f[6].decode().lstrip(".") if f[5] == TYPE_MESSAGE else f[5]
                fields.append((f[3], f[1].decode(), typ, f[4] == LABEL_REPEATED))
            elif num == 3:
                nested.append(val)
            elif num == 7:
                map_entry = any(n == 7 and v for n, _, v in iter_fields(val))
        full = f"{scope}.{name}"
        messages[full] = {"fields": fields, "map_entry": map_entry}
        for n in nested:
            walk(n, full)

    for fd in fds:
        package = next(v.decode() for n, _, v in iter_fields(fd) if n == 2)
        for num, _, val in iter_fields(fd):
            if num == 4:
                walk(val, package)
    return messages


def go_structs(binary: Binary) -> dict[str, dict[int, tuple[str, bool, bool, bool]]]:
    """Proto message name -> {field number: (json name, omitempty, pointer, inline)}.

    Found from the struct tags: each tag with `protobuf:"..."` is in a Name that a
    StructField points at; the StructField array (offsets from 0) belongs to the
    StructType whose Fields slice points at it, and that type's name and package
    path give the message name (package path with / as .).
    """
    rodata, rod_off, rod_size = binary.sections[".rodata"]
    types_base = rodata  # runtime.types, which NameOffs count from, opens .rodata

    def name(addr: int) -> tuple[int, str, str]:
        raw = binary.at(addr, 4096)
        size, i = varint(raw, 1)
        text = raw[i:i + size].decode()
        tag = ""
        if raw[0] & NAME_HAS_TAG:
            tsize, j = varint(raw, i + size)
            tag = raw[j:j + tsize].decode()
        return raw[0], text, tag

    tagged = set()
    for m in re.finditer(rb'protobuf:"', binary.data[rod_off:rod_off + rod_size]):
        addr = tag_name_start(binary.data, rod_off + m.start())
        if addr is not None:
            tagged.add(rodata + addr - rod_off)

    words = struct.unpack_from(f"<{rod_size // 8}Q", binary.data, rod_off)
    arrays = set()
    for k, w in enumerate(words):
        if w in tagged:
            field = rodata + 8 * k
            # A StructField is (Name, Typ, Offset), 24 bytes: walk back to offset 0.
            while binary.u64(field + 16):
                field -= 24
            arrays.add(field)

    out = {}
    for k, w in enumerate(words):
        if w not in arrays:
            continue
        # StructType: abi.Type (48 bytes: kind at 23, tflag at 20, Str at 40), PkgPath,
        # Fields (pointer at 56, length at 64), then UncommonType (PkgPath at 80).
        typ = rodata + 8 * k - 56
        tflag, kind = binary.at(typ + 20, 4)[0], binary.at(typ + 23, 1)[0] & KIND_MASK
        if kind != KIND_STRUCT or not tflag & TFLAG_UNCOMMON:
            continue
        type_name = name(types_base + binary.i32(typ + 40))[1]
        type_name = type_name[1:] if tflag & TFLAG_EXTRA_STAR else type_name
        pkg = name(types_base + binary.i32(typ + 80))[1]
        fields = {}
        for i in range(binary.u64(typ + 64)):
            fname, ftype, _ = struct.unpack("<QQQ", binary.at(w + 24 * i, 24))
            flags, go_name, tag = name(fname)
            proto = re.search(r'protobuf:"[a-z0-9]+,(\d+),', tag)
            if not proto:
                continue
            js = re.search(r'json:"([^"]*)"', tag)
            js_name, *opts = (js.group(1) if js else "").split(",")
            pointer = binary.at(ftype + 23, 1)[0] & KIND_MASK == KIND_POINTER
            inline = not js_name and bool(flags & NAME_EMBEDDED)
            fields[int(proto.group(1))] = ("" if inline else js_name or go_name,
                                           "omitempty" in opts, pointer, inline)
        out[f"{pkg}.{type_name.split('.', 1)[1]}".replace("/", ".")] = fields
    return out


def tag_name_start(data: bytes, pos: int) -> int | None:
    """The start of the Go Name (flags, varint length, name, varint length, tag) whose tag
    holds the `protobuf:"` at pos, or None."""
    for tag_start in range(pos, max(pos - 512, 0), -1):
        for width in (1, 2):
            try:
                size, after = varint(data, tag_start - width)
            except ProtobufError:
                continue
            tag_end = tag_start + size
            if after != tag_start or tag_end <= pos or data[tag_end - 1] != ord('"'):
                continue
            name_end = tag_start - width
            for length in range(1, 64):
                start = name_end - length
                if (data[start - 1] == length and data[start - 2] & NAME_HAS_TAG
                        and re.fullmatch(rb"[A-Za-z_]\w*", data[start:name_end])):
                    return start - 2
    return None


def build(messages: dict[str, dict], structs: dict[str, dict]) -> dict:
    out: dict[str, list] = {}
    todo = list(KINDS.values())
    while todo:
        msg = todo.pop()
        if msg in out or msg in SPECIAL:
            continue
        if msg not in messages or msg not in structs:
            sys.exit(f"{msg}: no {'descriptor' if msg not in messages else 'Go struct'} found")
        go = structs[msg]
        fields = []
        for number, proto_name, typ, repeated in sorted(messages[msg]["fields"]):
            if number not in go:
                sys.exit(f"{msg}.{proto_name}: no Go field with protobuf number {number}")
            js, omitempty, pointer, inline = go[number]
            label = "omit" if omitempty and not pointer else "keep"
            if messages.get(typ, {}).get("map_entry"):
                key, value = sorted(messages[typ]["fields"])
                if SCALARS.get(key[2]) != "string":
                    sys.exit(f"{msg}.{proto_name}: map key is {key[2]}, not string")
                typ, label = value[2], "map"
            elif repeated:
                label = "rep"
            elif inline:
                label = "inline"
            if isinstance(typ, int):
                if typ not in SCALARS:
                    sys.exit(f"{msg}.{proto_name}: unsupported type {typ}")
                typ = SCALARS[typ]
            else:
                todo.append(typ)
                typ = short(typ)
            fields.append([number, js, typ, label])
        out[short(msg)] = fields
    check_acyclic(out)
    return {"kinds": {k: short(v) for k, v in KINDS.items()}, "messages": dict(sorted(out.items()))}


def check_acyclic(messages: dict[str, list]) -> None:
    """kwire/api/protobuf.py relies on no message containing itself: nesting is then
    bounded by the schema, whatever the body."""
    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            sys.exit(f"recursive message: {' -> '.join(path + (name,))}")
        for _, _, typ, _ in messages.get(name, ()):
            visit(typ, path + (name,))

    for name in messages:
        visit(name, ())


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default_binary()
    binary = Binary(path)
    messages = descriptor_messages(file_descriptors(binary))
    data = build(messages, go_structs(binary))
    compact = {"separators": (",", ":")}
    body = ",\n".join(f"{json.dumps(name)}:{json.dumps(fields, **compact)}"
                      for name, fields in data["messages"].items())
    OUT.write_text(f'{{"kinds":{json.dumps(data["kinds"], **compact)},\n'
                   f'"messages":{{\n{body}}}}}\n')
    print(f"{len(data['messages'])} messages from {path} -> {OUT}")


if __name__ == "__main__":
    main()
