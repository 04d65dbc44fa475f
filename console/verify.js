// Checks an attestation-log entry in the browser, trusting nothing the server says about it
// (docs/log.md): the leaf is rebuilt from the entry (canonical JSON), hashed with SHA-256
// (RFC 6962: 0x00 ‖ leaf; nodes 0x01 ‖ left ‖ right), walked up the inclusion proof (RFC 9162
// §2.1.3.2) to a root that must equal the signed tree head's, whose Ed25519 signature over
// "tribune/sth/v1" ‖ tree_size ‖ timestamp_ms ‖ root is checked with WebCrypto against a key
// whose key_id (first 8 bytes of SHA-256 of the raw key) is recomputed here.

const enc = new TextEncoder();

export function hex(bytes) { return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join(""); }

export function unhex(s) {
  if (typeof s !== "string" || s.length % 2 || /[^0-9a-f]/i.test(s)) throw new Error(`not hex: ${s}`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(len);
  let o = 0;
  for (const p of parts) { buf.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

/** Canonical JSON: compact, object keys sorted bytewise, integers only (leaf format 2). */
export function canonical(v) {
  if (v === null || typeof v !== "object") {
    if (typeof v === "number" && !Number.isSafeInteger(v)) throw new Error(`leaf holds a non-integer or unsafe number ${v}: only leaf format 2 is checked in the browser`);
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  const keys = Object.keys(v).sort((a, b) => {
    const x = enc.encode(a), y = enc.encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  });
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
}

/** The entry's leaf bytes, as docs/log.md defines them. */
export function leafOf(entry) {
  const leaf = { at_ms: entry.at_ms, detail: entry.detail, index: entry.index, kind: entry.kind, subject: entry.subject };
  if (entry.leaf_format !== undefined) leaf.leaf_format = entry.leaf_format;
  return enc.encode(canonical(leaf));
}

export const leafHash = async (entry) => sha256(new Uint8Array([0]), leafOf(entry));

/** RFC 9162 §2.1.3.2: the root an audit path leads to. */
export async function rootFromInclusion(index, treeSize, leaf, path) {
  if (index >= treeSize) throw new Error(`index ${index} is not below tree size ${treeSize}`);
  let fn = BigInt(index), sn = BigInt(treeSize - 1), r = leaf;
  for (const p of path) {
    if (sn === 0n) throw new Error("the proof is longer than the tree allows");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(new Uint8Array([1]), p, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await sha256(new Uint8Array([1]), r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the proof is shorter than the tree needs");
  return r;
}

function u64be(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

/** Verifies a signed tree head against the key set; returns the key used. */
export async function verifySth(sth, keys) {
  const key = keys.find((k) => k.key_id === sth.key_id);
  if (!key) throw new Error(`no registered key ${sth.key_id}`);
  const raw = unhex(key.public_key);
  if (raw.length !== 32) throw new Error("an Ed25519 public key is 32 bytes");
  const kid = hex((await sha256(raw)).slice(0, 8));
  if (kid !== key.key_id) throw new Error(`key_id ${key.key_id} is not the key's (${kid})`);
  const msg = new Uint8Array([...enc.encode("tribune/sth/v1"), ...u64be(sth.tree_size), ...u64be(sth.timestamp_ms), ...unhex(sth.root_hash)]);
  const pub = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, pub, unhex(sth.signature), msg);
  if (!ok) throw new Error("the tree head's signature does not verify");
  return key;
}

/**
 * Proves `entry` against a fresh signed tree head. `api.get(path)` fetches JSON. Returns the
 * steps taken (each {what, ok}); throws on the first that fails.
 */
export async function proveEntry(entry, get) {
  const steps = [];
  const step = (what) => { steps.push(what); };
  const leaf = await leafHash(entry);
  if (entry.leaf_hash && hex(leaf) !== entry.leaf_hash) throw new Error(`leaf hash recomputed here (${hex(leaf)}) differs from the server's (${entry.leaf_hash})`);
  step(`leaf rebuilt and hashed here: ${hex(leaf)}`);
  const [sth, keys] = await Promise.all([get("/v1/log/sth"), get("/v1/log/keys")]);
  const key = await verifySth(sth, keys);
  step(`tree head of size ${sth.tree_size} signed by controller ${key.node_id} (key ${key.key_id}): Ed25519 signature verified`);
  const proof = await get(`/v1/log/proof/inclusion?index=${entry.index}&tree_size=${sth.tree_size}`);
  const root = await rootFromInclusion(entry.index, sth.tree_size, leaf, proof.audit_path.map(unhex));
  if (hex(root) !== sth.root_hash) throw new Error(`the audit path leads to ${hex(root)}, not the signed root ${sth.root_hash}`);
  step(`audit path of ${proof.audit_path.length} hashes leads to the signed root ${sth.root_hash}`);
  return steps;
}
