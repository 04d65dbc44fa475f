#!/usr/bin/env python3
"""An independent verifier of Tribune's attestation log, written from docs/log.md and
RFC 9162 alone (no Tribune code): Python's hashlib and json, and `cryptography` for Ed25519.

    python3 tribune_verify.py log BUNDLE.json
    python3 tribune_verify.py receipt RECEIPT.json KEYS.json
    python3 tribune_verify.py leaves ENTRIES.json

`leaves` recomputes the leaf hash of every entry in a JSON array of served entries (each with
its `leaf_hash`), of either leaf format.

A receipt (docs/receipts.md) is checked against trusted controller keys (KEYS.json: the answer of
GET /v1/log/keys): the file is exactly its canonical JSON and a newline, the issuer's signature,
every tree head's signature, the consistency proofs between heads, every entry's leaf
recomputed and its inclusion proof, and the enclave's checkpoint signatures on its usage
digests.

BUNDLE.json holds what a client fetched from a cluster's API, as served:
    {"keys": [GET /v1/log/keys ...],
     "sths": [GET /v1/log/sth, ...],
     "entries": [the entries of GET /v1/log/entries, each with its leaf_hash],
     "inclusion": [{"sth": i, "proof": GET /v1/log/proof/inclusion?index=..&tree_size=sths[i].tree_size}],
     "consistency": [{"first": i, "second": j, "proof": GET /v1/log/proof/consistency?...}]}

It checks every key id, every tree head's signature under a key of the set, every entry's leaf
hash recomputed from the entry, every inclusion proof against the root of a signed head, and
every consistency proof between two signed heads. Exit 0 and a summary when all hold; exit 1
and `REJECTED: <why>` at the first that does not.
"""

import hashlib
import json
import struct
import sys

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - the test says `skipped` before running us
    print("error: the Python package `cryptography` is needed (pip install cryptography)",
          file=sys.stderr)
    sys.exit(2)


class Rejected(Exception):
    pass


def sha256(b):
    return hashlib.sha256(b).digest()


def leaf_hash(leaf):
    return sha256(b"\x00" + leaf)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def unhex(s, n, what):
    try:
        b = bytes.fromhex(s)
    except (TypeError, ValueError):
        raise Rejected(f"{what} is not hex")
    if n is not None and len(b) != n:
        raise Rejected(f"{what} is {len(b)} bytes, not {n}")
    return b


# The fields of an entry that make its leaf (docs/log.md, "Entries and leaves").
LEAF_FIELDS = ("at_ms", "detail", "index", "kind", "leaf_format", "subject")


def canonical(v):
    """Compact JSON, keys sorted, UTF-8 (not \\u escapes)."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def has_float(v):
    if isinstance(v, float):
        return True
    if isinstance(v, dict):
        return any(has_float(x) for x in v.values())
    if isinstance(v, list):
        return any(has_float(x) for x in v)
    return False


def entry_leaf(e):
    fmt = e.get("leaf_format")
    if fmt not in (None, 2):
        raise Rejected(f"entry {e.get('index')}: unknown leaf_format {fmt!r}")
    obj = {k: e[k] for k in LEAF_FIELDS if k in e}
    if fmt == 2 and has_float(obj):
        raise Rejected(f"entry {e.get('index')}: a float in a leaf_format 2 entry")
    return canonical(obj)


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise Rejected(f"inclusion: index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Rejected("inclusion: the audit path is too long")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Rejected("inclusion: the audit path is too short")
    if r != root:
        raise Rejected("inclusion: the audit path does not lead to the signed root")


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 section 2.1.4.2."""
    if first > second:
        raise Rejected(f"consistency: first {first} is past second {second}")
    if first == second:
        if proof:
            raise Rejected("consistency: a proof between equal sizes must be empty")
        if first_root != second_root:
            raise Rejected("consistency: equal sizes with different roots")
        return
    if first == 0:
        if proof:
            raise Rejected("consistency: a proof from the empty tree must be empty")
        return
    if not proof:
        raise Rejected("consistency: empty proof")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is the first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Rejected("consistency: the proof is too long")
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Rejected("consistency: the proof is too short")
    if fr != first_root:
        raise Rejected("consistency: the proof does not lead to the first signed root")
    if sr != second_root:
        raise Rejected("consistency: the proof does not lead to the second signed root")


def load_keys(keys):
    out = {}
    for k in keys:
        pub = unhex(k["public_key"], 32, "public_key")
        kid = sha256(pub)[:8].hex()
        if kid != k["key_id"]:
            raise Rejected(f"key {k['key_id']}: key_id is not the first 8 bytes of SHA-256(public_key)")
        out[kid] = Ed25519PublicKey.from_public_bytes(pub)
    return out


def verify_sth(sth, keys):
    """docs/log.md "Signed tree heads": returns (tree_size, root)."""
    size, ts = sth["tree_size"], sth["timestamp_ms"]
    root = unhex(sth["root_hash"], 32, "root_hash")
    sig = unhex(sth["signature"], 64, "signature")
    enc = unhex(sth["sth"], 112, "sth")
    if enc != struct.pack(">QQ", size, ts) + root + sig:
        raise Rejected(f"tree head of size {size}: `sth` does not encode its fields")
    key = keys.get(sth["key_id"])
    if key is None:
        raise Rejected(f"tree head of size {size}: signed by key {sth['key_id']}, not a trusted key")
    msg = b"tribune/sth/v1" + struct.pack(">QQ", size, ts) + root
    try:
        key.verify(sig, msg)
    except InvalidSignature:
        raise Rejected(f"tree head of size {size}: the signature does not verify")
    return size, root


def verify_log_bundle(b):
    keys = load_keys(b["keys"])
    heads = [verify_sth(s, keys) for s in b["sths"]]
    leaves = {}
    v1 = 0
    for e in b["entries"]:
        lh = leaf_hash(entry_leaf(e))
        if lh.hex() != e["leaf_hash"]:
            raise Rejected(f"entry {e['index']}: the recomputed leaf hash differs from the served one")
        if "leaf_format" not in e:
            v1 += 1
        leaves[e["index"]] = lh
    for item in b["inclusion"]:
        size, root = heads[item["sth"]]
        p = item["proof"]
        if p["tree_size"] != size:
            raise Rejected(f"inclusion of {p['leaf_index']}: proof for size {p['tree_size']}, head is {size}")
        lh = leaves.get(p["leaf_index"])
        if lh is None:
            raise Rejected(f"inclusion of {p['leaf_index']}: no such entry in the bundle")
        path = [unhex(h, 32, "audit path hash") for h in p["audit_path"]]
        verify_inclusion(p["leaf_index"], size, lh, path, root)
    for item in b["consistency"]:
        (m, r1), (n, r2) = heads[item["first"]], heads[item["second"]]
        p = item["proof"]
        if (p["first"], p["second"]) != (m, n):
            raise Rejected(f"consistency proof for {p['first']}..{p['second']}, heads are {m}..{n}")
        verify_consistency(m, n, r1, r2, [unhex(h, 32, "consistency hash") for h in p["proof"]])
    return (f"ok: {len(keys)} key(s), {len(heads)} signed tree head(s), {len(leaves)} leaf hash(es) "
            f"recomputed ({v1} in leaf format 1), {len(b['inclusion'])} inclusion and "
            f"{len(b['consistency'])} consistency proof(s) verified")


def verify_receipt(raw, trusted_keys):
    r = json.loads(raw.decode("utf-8"))
    if canonical(r) + b"\n" != raw:
        raise Rejected("the receipt is not in canonical form")
    body = r["body"]
    if body["format"] != 1:
        raise Rejected(f"receipt format {body['format']}")
    trusted = {k["public_key"] for k in trusted_keys}
    keys = {}
    for k in body["keys"] + [body["issuer"]]:
        pub = unhex(k["public_key"], 32, "public_key")
        if sha256(pub)[:8].hex() != k["key_id"]:
            raise Rejected(f"key {k['key_id']}: key_id is not the first 8 bytes of SHA-256(public_key)")
        if k["public_key"] in trusted:
            keys[k["key_id"]] = Ed25519PublicKey.from_public_bytes(pub)
    issuer = keys.get(body["issuer"]["key_id"])
    if issuer is None:
        raise Rejected("the receipt is signed by a key that is not trusted")
    try:
        issuer.verify(unhex(r["signature"], 64, "signature"), b"tribune/receipt/v1" + canonical(body))
    except InvalidSignature:
        raise Rejected("the issuer's signature does not verify")
    heads = []
    for h in body["tree_heads"]:
        key = keys.get(h["key_id"])
        if key is None:
            raise Rejected(f"a tree head is signed by key {h['key_id']}, not a trusted key")
        root = unhex(h["root_hash"], 32, "root_hash")
        msg = b"tribune/sth/v1" + struct.pack(">QQ", h["tree_size"], h["timestamp_ms"]) + root
        try:
            key.verify(unhex(h["signature"], 64, "signature"), msg)
        except InvalidSignature:
            raise Rejected(f"tree head of size {h['tree_size']}: the signature does not verify")
        heads.append((h["tree_size"], root))
    if len(body["consistency"]) + 1 != len(heads):
        raise Rejected("one consistency proof between each two consecutive heads")
    for i, proof in enumerate(body["consistency"]):
        (m, r1), (n, r2) = heads[i], heads[i + 1]
        verify_consistency(m, n, r1, r2, [unhex(x, 32, "consistency hash") for x in proof])
    size, root = heads[-1]
    enclave_id = sha256(body["enclave"].encode())[:16]
    digests = 0
    for pe in body["entries"]:
        e = pe["entry"]
        path = [unhex(x, 32, "audit path hash") for x in pe["audit_path"]]
        verify_inclusion(e["index"], size, leaf_hash(entry_leaf(e)), path, root)
        if e["kind"] == "usage_digest":
            d = e["detail"]
            cp = unhex(d["checkpoint"], 162, "checkpoint")
            if cp[2:18] != enclave_id:
                raise Rejected(f"entry {e['index']}: the checkpoint is another enclave's")
            first, last = struct.unpack(">QQ", cp[18:34])
            if (first, last) != (d["first_seq"], d["last_seq"]) or cp[34:66].hex() != d["prev_head"] \
                    or cp[66:98].hex() != d["head"]:
                raise Rejected(f"entry {e['index']}: the digest does not match its checkpoint")
            try:
                Ed25519PublicKey.from_public_bytes(unhex(d["key"], 32, "enclave key")).verify(
                    cp[98:], b"tribune/checkpoint/v1" + cp[:98])
            except InvalidSignature:
                raise Rejected(f"entry {e['index']}: the enclave's checkpoint signature does not verify")
            digests += 1
    return (f"ok: receipt for {body['enclave']!r} signed by controller {body['issuer']['node_id']}: "
            f"{len(body['entries'])} entries proven against a tree head of size {size}, "
            f"{digests} checkpoint signature(s) verified")


def verify_leaves(entries):
    formats = {1: 0, 2: 0}
    for e in entries:
        if leaf_hash(entry_leaf(e)).hex() != e["leaf_hash"]:
            raise Rejected(f"entry {e['index']}: the recomputed leaf hash differs from the served one")
        formats[e.get("leaf_format", 1)] += 1
    return f"ok: {len(entries)} leaf hash(es) recomputed ({formats[1]} in leaf format 1, {formats[2]} in leaf format 2)"


def main(argv):
    if not ((len(argv) == 3 and argv[1] in ("log", "leaves"))
            or (len(argv) == 4 and argv[1] == "receipt")):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[2], "rb") as f:
            raw = f.read()
        if argv[1] == "log":
            print(verify_log_bundle(json.loads(raw.decode("utf-8"))))
        elif argv[1] == "leaves":
            print(verify_leaves(json.loads(raw.decode("utf-8"))))
        else:
            with open(argv[3], "rb") as f:
                trusted = json.loads(f.read().decode("utf-8"))
            print(verify_receipt(raw, trusted))
        return 0
    except Rejected as e:
        print(f"REJECTED: {e}")
        return 1
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, struct.error) as e:
        print(f"REJECTED: malformed input: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
