#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora from spec/vectors (docs/fuzzing.md).

Every input text of the vectors goes to the targets that read that kind of text, as
fuzz/corpus/<target>/seed-<name>. The seeds are committed; what the fuzzer adds beside them is
not (fuzz/.gitignore). With --check, writes nothing and fails if the committed seeds differ from
what the vectors give, so a change to the vectors cannot leave the corpora behind.
"""

import argparse
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors"
CORPUS = ROOT / "fuzz" / "corpus"

# The first byte of a signed_objects input picks the kind, in the order of KINDS in the target
# itself (fuzz/fuzz_targets/signed_objects.rs), read from there so the two cannot drift apart;
# 0x80 and above picks a vector to change.
TARGET = ROOT / "fuzz" / "fuzz_targets" / "signed_objects.rs"
KINDS = re.findall(
    r'"([a-z_]+)"',
    re.search(r"const KINDS: \[&str; \d+\] = \[(.*?)\];", TARGET.read_text(encoding="utf-8"), re.S)[1],
)
def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def seeds():
    """(target, name, bytes) for every seed."""
    ns = json.loads((VECTORS / "northstar.json").read_text(encoding="utf-8"))
    prim = json.loads((VECTORS / "primitives.json").read_text(encoding="utf-8"))

    def utf8(text):
        return text.encode("utf-8")

    # strict_json: every text the vectors parse strictly or encode canonically.
    for i, case in enumerate(ns["canonical"]):
        yield "strict_json", f"canonical-{i}-input", utf8(case["input"])
        yield "strict_json", f"canonical-{i}-output", utf8(case["canonical"])
    for i, case in enumerate(ns["canonical_invalid"]):
        yield "strict_json", f"canonical-invalid-{i}", utf8(case["input"])
    for case in ns["signed"]:
        yield "strict_json", f"signed-{case['name']}", utf8(compact(case["object"]))
        yield "strict_json", f"unsigned-{case['name']}", utf8(case["canonical_unsigned"])
    for i, case in enumerate(ns["signed_invalid"]):
        yield "strict_json", f"signed-invalid-{i}", utf8(case["object_text"])

    # did_address: DIDs, addresses, authorities, and raw 32-byte public keys.
    for key in ns["keys"]:
        yield "did_address", f"did-{key['name']}", utf8(key["did"])
        yield "did_address", f"key-{key['name']}", bytes.fromhex(key["public_key_hex"])
    for i, case in enumerate(ns["dids_invalid"]):
        yield "did_address", f"did-invalid-{i}", utf8(case["did"])
    for i, case in enumerate(prim["did_key"]["cases"]):
        yield "did_address", f"did-key-{i}", utf8(case["did"])
        yield "did_address", f"did-key-{i}-public-key", bytes.fromhex(case["public_key_hex"])
    for i, case in enumerate(ns["addresses"]["spaces"]):
        yield "did_address", f"space-id-{i}", utf8(case["space_id"])
        yield "did_address", f"space-uri-{i}", utf8(case["uri"])
    for i, case in enumerate(ns["addresses"]["beams"]):
        yield "did_address", f"beam-path-{i}", utf8(case["path"])
        yield "did_address", f"beam-uri-{i}", utf8(case["uri"])
        yield "did_address", f"beam-id-{i}", utf8(case["beam_id"])
    for authority in sorted({"node.example:7700", "bob.example", "[::1]:7700", "127.0.0.1:7700"}):
        yield "did_address", f"authority-{authority}", utf8(authority)

    # signed_objects: a kind byte and the text, for every positive and negative vector; and one
    # seed per vector for the mode that changes bytes of it (selector, position 0, xor 0x01).
    for index, case in enumerate(ns["signed"]):
        kind = KINDS.index(case["kind"])
        text = utf8(compact(case["object"]))
        yield "signed_objects", f"signed-{case['name']}", bytes([kind]) + text
        yield "signed_objects", f"changed-{case['name']}", bytes([0x80 | index, 0, 0, 1])
    for i, case in enumerate(ns["signed_invalid"]):
        kind = KINDS.index(case["kind"])
        yield "signed_objects", f"signed-invalid-{i}", bytes([kind]) + utf8(case["object_text"])

    # stream_frame (fuzz_targets/stream_frame.rs): every frame of the vectors, valid or not, and
    # one seed per valid frame for the mode that changes its bytes (0xff, pick, position, xor).
    for i, case in enumerate(ns["frames"]["valid"]):
        yield "stream_frame", f"frame-{i}", bytes.fromhex(case["hex"])
        yield "stream_frame", f"changed-frame-{i}", bytes([0xFF, i, 30, 1])
    for i, case in enumerate(ns["frames"]["invalid"]):
        yield "stream_frame", f"frame-invalid-{i}", bytes.fromhex(case["hex"])

    # rpc_envelope (fuzz_targets/rpc_envelope.rs): JSON-RPC messages of each shape of spec §6.1,
    # carrying the vectors' objects, and the odd ids and params the node must still answer.
    signed = {case["name"]: case["object"] for case in ns["signed"]}
    messages = {
        "request-node-info": {"jsonrpc": "2.0", "id": 1, "method": "node.info"},
        "request-auth-respond": {
            "jsonrpc": "2.0",
            "id": "a",
            "method": "auth.respond",
            "params": [signed["auth_response"]],
        },
        "request-space-post": {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "space.post",
            "params": [signed["beam"], signed["beam_ref"]],
        },
        "request-named-params": {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "space.subscribe",
            "params": {"space": signed["space_genesis"]["space"], "since": 0},
        },
        "notification": {"jsonrpc": "2.0", "method": "node.info", "params": []},
        "response": {"jsonrpc": "2.0", "id": 3, "result": True},
        "no-version": {"id": 4, "method": "node.info"},
    }
    texts = {name: utf8(compact(message)) for name, message in messages.items()}
    texts["not-json"] = b'{"jsonrpc":"2.0","id":5,'
    texts["id-negative"] = b'{"jsonrpc":"2.0","id":-1,"method":"space.post","params":[]}'
    texts["id-twice"] = b'{"jsonrpc":"2.0","id":1,"id":2,"method":"node.info"}'
    texts["params-null"] = b'{"jsonrpc":"2.0","id":6,"method":"node.info","params":null}'
    for name, text in texts.items():
        yield "rpc_envelope", name, text
    yield "rpc_envelope", "batch", utf8(
        compact([messages["request-node-info"], messages["notification"], 1])
    )
    yield "rpc_envelope", "batch-empty", b"[]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail if stale")
    args = parser.parse_args()

    wanted = {}
    for target, name, data in seeds():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = CORPUS / target / f"seed-{safe}"
        if path in wanted:
            sys.exit(f"two seeds named {path}")
        wanted[path] = data
    existing = set(CORPUS.glob("*/seed-*"))
    stale = sorted(p for p in existing if p not in wanted)
    differing = sorted(p for p, d in wanted.items() if not p.is_file() or p.read_bytes() != d)

    if args.check:
        for path in stale + differing:
            print(f"stale seed: {path.relative_to(ROOT)}", file=sys.stderr)
        if stale or differing:
            sys.exit("the fuzz seeds do not match spec/vectors: run scripts/fuzz-seeds.py")
        print(f"{len(wanted)} fuzz seeds match spec/vectors")
        return
    for path in stale:
        path.unlink()
    for path in differing:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wanted[path])
    print(f"{len(wanted)} seeds ({len(differing)} written, {len(stale)} removed) in fuzz/corpus")


if __name__ == "__main__":
    main()
