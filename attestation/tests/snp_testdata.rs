//! Every SEV-SNP file in shared/testdata/attestation/snp gives the outcome its SOURCE.md states.

mod common;

use std::path::Path;

use tribune_attest::VerifyAt;
use tribune_attest::snp::certs::vek_extensions;
use tribune_attest::snp::{Product, SigningKey, SnpReport, SnpVerifier, load_certs};

fn at(s: &str) -> VerifyAt {
    VerifyAt::parse_rfc3339(s).unwrap()
}

fn verify(
    v: &SnpVerifier,
    dir: &Path,
    report: &str,
    certs: &str,
    t: &str,
) -> tribune_attest::snp::SnpOutcome {
    let raw = tribune_attest::evidence::decode_input(&common::read(dir, report));
    let r = SnpReport::parse(&raw).unwrap_or_else(|e| panic!("{report}: {e}"));
    let certs = load_certs(&dir.join(certs)).unwrap();
    v.verify(&r, &certs, at(t))
}

fn assert_valid(o: &tribune_attest::snp::SnpOutcome, what: &str) {
    assert!(o.is_valid(), "{what}: {:?}", o.errors);
}

#[test]
fn virtee_milan_report_is_valid_and_mutations_fail() {
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let dir = d.join("snp/virtee-sev");
    for f in ["report_milan.bin", "report_milan.hex"] {
        let o = verify(&v, &dir, f, "vcek_milan.der", "2025-01-01T00:00:00Z");
        assert_valid(&o, f);
        assert_eq!(o.product, Some(Product::Milan));
        assert_eq!(o.chain, ["SEV-VCEK", "SEV-Milan", "ARK-Milan"]);
        assert_eq!(o.report.version(), 2);
        assert_eq!(o.report.vmpl(), 0);
        let t = o.reported_tcb.unwrap();
        assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (3, 0, 8, 0x73));
        assert_eq!(o.report.reported_tcb_raw(), o.report.current_tcb_raw());
    }
    // Upstream negative tests: byte 21 of the report, byte 40 of the VCEK.
    let mut raw = common::read(&dir, "report_milan.bin");
    raw[21] ^= 0xff;
    let r = SnpReport::parse(&raw).unwrap();
    let certs = load_certs(&dir.join("vcek_milan.der")).unwrap();
    assert!(!v.verify(&r, &certs, at("2025-01-01T00:00:00Z")).is_valid());
    let raw = common::read(&dir, "report_milan.bin");
    let r = SnpReport::parse(&raw).unwrap();
    let mut vcek = common::read(&dir, "vcek_milan.der");
    vcek[40] ^= 0xff;
    let bad = tribune_attest::snp::certs::parse_cert_table(&[0u8; 24]).unwrap();
    assert!(bad.is_empty());
    let tampered = vec![tribune_attest::x509::CertDer(vcek)];
    let o = v.verify(&r, &tampered, at("2025-01-01T00:00:00Z"));
    assert!(!o.is_valid());
    // Validity dates are checked at the given time.
    let o = verify(
        &v,
        &dir,
        "report_milan.bin",
        "vcek_milan.der",
        "2031-01-01T00:00:00Z",
    );
    assert!(
        o.errors.iter().any(|e| e.contains("expired")),
        "{:?}",
        o.errors
    );
    let o = verify(
        &v,
        &dir,
        "report_milan.bin",
        "vcek_milan.der",
        "2022-01-01T00:00:00Z",
    );
    assert!(
        o.errors.iter().any(|e| e.contains("not yet valid")),
        "{:?}",
        o.errors
    );
}

#[test]
fn virtee_turin_vcek_and_chains() {
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let dir = d.join("snp/virtee-sev");
    let turin = load_certs(&dir.join("vcek_turin.der")).unwrap();
    assert_eq!(
        v.check_vek(&turin[0], SigningKey::Vcek).unwrap(),
        Product::Turin
    );
    let ext = vek_extensions(&turin[0]).unwrap();
    assert_eq!(ext.hw_id.as_ref().map(Vec::len), Some(8));
    assert!(ext.fmc.is_some());
    let milan = load_certs(&dir.join("vcek_milan.der")).unwrap();
    assert_eq!(
        v.check_vek(&milan[0], SigningKey::Vcek).unwrap(),
        Product::Milan
    );
    // The KDS cert_chain files (ASK, ARK) are the embedded certificates.
    for (f, p) in [("cert_chain_milan.pem", 0), ("cert_chain_turin.pem", 2)] {
        let c = load_certs(&dir.join(f)).unwrap();
        assert_eq!(c.len(), 2, "{f}");
        assert_eq!(c[0], v.roots()[p].ask, "{f} ASK");
        assert_eq!(c[1], v.roots()[p].ark, "{f} ARK");
    }
    // builtin/*.pem equal the embedded roots, with the published ARK fingerprints.
    let fps = [
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ];
    for (i, name) in ["milan", "genoa", "turin"].iter().enumerate() {
        let ark = load_certs(&dir.join(format!("builtin/{name}_ark.pem"))).unwrap();
        let ask = load_certs(&dir.join(format!("builtin/{name}_ask.pem"))).unwrap();
        assert_eq!(ark[0], v.roots()[i].ark);
        assert_eq!(ask[0], v.roots()[i].ask);
        assert_eq!(v.roots()[i].ark.fingerprint(), fps[i]);
    }
}

#[test]
fn openanolis_turin_v5_and_vlek_milan() {
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let dir = d.join("snp/openanolis-trustee");
    let o = verify(
        &v,
        &dir,
        "turin-report.bin",
        "turin-vcek.der",
        "2026-07-01T00:00:00Z",
    );
    assert_valid(&o, "turin");
    assert_eq!(o.report.version(), 5);
    assert_eq!(o.product, Some(Product::Turin));
    let t = o.reported_tcb.unwrap();
    assert_eq!(
        (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
        (Some(1), 3, 2, 5, 0x61)
    );
    assert_eq!(o.chain, ["SEV-VCEK", "SEV-Turin", "ARK-Turin"]);
    // Upstream negative: flip byte 0x90 (measurement).
    let mut raw = common::read(&dir, "turin-report.bin");
    raw[0x90] ^= 1;
    let r = SnpReport::parse(&raw).unwrap();
    let c = load_certs(&dir.join("turin-vcek.der")).unwrap();
    assert!(!v.verify(&r, &c, at("2026-07-01T00:00:00Z")).is_valid());

    let o = verify(
        &v,
        &dir,
        "vlek-milan-report.bin",
        "vlek-milan.der",
        "2024-06-01T00:00:00Z",
    );
    assert_valid(&o, "vlek milan");
    assert_eq!(o.report.version(), 2);
    assert_eq!(o.signing_key, SigningKey::Vlek);
    assert!(o.report.chip_id().iter().all(|b| *b == 0));
    assert_eq!(o.chain, ["SEV-VLEK", "SEV-VLEK-Milan", "ARK-Milan"]);
    let t = o.reported_tcb.unwrap();
    assert_eq!((t.bootloader, t.snp, t.microcode), (3, 21, 0xD1));
    // Expired VLEK (2025-05-05) at a later time.
    let o = verify(
        &v,
        &dir,
        "vlek-milan-report.bin",
        "vlek-milan.der",
        "2025-06-01T00:00:00Z",
    );
    assert!(
        o.errors.iter().any(|e| e.contains("expired")),
        "{:?}",
        o.errors
    );
}

#[test]
fn coco_trustee_reports() {
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let dir = d.join("snp/coco-trustee");
    let o = verify(
        &v,
        &dir,
        "test-report.bin",
        "test-vcek.der",
        "2025-01-01T00:00:00Z",
    );
    assert_valid(&o, "test-report");
    let t = o.reported_tcb.unwrap();
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (3, 0, 8, 0x73));
    assert_eq!(o.current_tcb.unwrap().microcode, 0xCE);

    let o = verify(
        &v,
        &dir,
        "test-vlek-report.bin",
        "test-vlek.der",
        "2025-06-01T00:00:00Z",
    );
    assert_valid(&o, "test-vlek-report");
    assert_eq!(o.report.version(), 3);
    assert_eq!(o.signing_key, SigningKey::Vlek);
    assert_eq!(o.chain, ["SEV-VLEK", "SEV-VLEK-Milan", "ARK-Milan"]);
    let t = o.reported_tcb.unwrap();
    assert_eq!((t.bootloader, t.snp, t.microcode), (4, 24, 0xD9));
    let o = verify(
        &v,
        &dir,
        "test-vlek-report.bin",
        "test-vlek.der",
        "2026-01-01T00:00:00Z",
    );
    assert!(
        o.errors.iter().any(|e| e.contains("expired")),
        "{:?}",
        o.errors
    );

    let o = verify(
        &v,
        &dir,
        "e2e-genoa-report.bin",
        "e2e-genoa-vcek.der",
        "2026-01-01T00:00:00Z",
    );
    assert_valid(&o, "e2e genoa");
    assert_eq!(o.product, Some(Product::Genoa));
    assert_eq!(o.report.current_firmware(), (1, 55, 40));
    let t = o.reported_tcb.unwrap();
    assert_eq!((t.bootloader, t.snp, t.microcode), (10, 23, 0x19));

    for (rep, vcek, product) in [
        (
            "az-milan-report.bin",
            "az-milan-vcek-chain.pem",
            Product::Milan,
        ),
        (
            "az-milan-hcl-report.bin",
            "az-milan-vcek-chain.pem",
            Product::Milan,
        ),
        ("az-genoa-report.bin", "az-genoa-vcek.pem", Product::Genoa),
        (
            "az-genoa-hcl-report.bin",
            "az-genoa-vcek.pem",
            Product::Genoa,
        ),
        (
            "az-milan-v3-report.bin",
            "az-milan-v3-vcek.pem",
            Product::Milan,
        ),
        (
            "az-milan-v3-hcl-report.bin",
            "az-milan-v3-vcek.pem",
            Product::Milan,
        ),
    ] {
        let o = verify(&v, &dir, rep, vcek, "2026-01-01T00:00:00Z");
        assert_valid(&o, rep);
        assert_eq!(o.product, Some(product), "{rep}");
    }
    let o = verify(
        &v,
        &dir,
        "az-genoa-report.bin",
        "az-genoa-vcek.pem",
        "2026-01-01T00:00:00Z",
    );
    let t = o.reported_tcb.unwrap();
    assert_eq!((t.bootloader, t.snp, t.microcode), (10, 23, 0x54));
    let o = verify(
        &v,
        &dir,
        "az-milan-v3-report.bin",
        "az-milan-v3-vcek.pem",
        "2026-01-01T00:00:00Z",
    );
    let t = o.reported_tcb.unwrap();
    assert_eq!((t.bootloader, t.snp, t.microcode), (4, 24, 0xDB));
}

#[test]
fn synthetic_vceks_parse_but_do_not_chain_or_verify() {
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let dir = d.join("snp/coco-trustee");
    for f in ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"] {
        let c = load_certs(&dir.join(f)).unwrap();
        let ext = vek_extensions(&c[0]).unwrap();
        let hw = ext.hw_id.expect("hwID");
        assert_eq!(&hw[..4], &[0, 1, 2, 3], "{f}");
        assert!(
            v.check_vek(&c[0], SigningKey::Vcek).is_err(),
            "{f} must not chain"
        );
        let o = verify(&v, &dir, "test-report.bin", f, "2025-01-01T00:00:00Z");
        assert!(!o.is_valid(), "{f} must not verify test-report.bin");
    }
}

#[test]
fn another_chips_vcek_is_rejected() {
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let o = verify(
        &v,
        &d,
        "snp/coco-trustee/test-report.bin",
        "snp/virtee-sev/vcek_milan.der",
        "2025-01-01T00:00:00Z",
    );
    assert!(!o.is_valid());
    // The message says why: the VCEK's hwID is another chip's, not just "bad signature".
    let chip = hex::encode(o.report.chip_id());
    let e = o.errors.join("\n");
    assert!(e.contains("signature does not verify"), "{e}");
    assert!(
        e.contains(&format!("does not match the report's CHIP_ID {chip}")),
        "{e}"
    );
    assert!(e.contains("a VCEK of another chip"), "{e}");
    let o = verify(
        &v,
        &d,
        "snp/virtee-sev/report_milan.bin",
        "snp/coco-trustee/az-milan-vcek-chain.pem",
        "2025-01-01T00:00:00Z",
    );
    assert!(!o.is_valid());
    let e = o.errors.join("\n");
    assert!(e.contains("does not match the report's CHIP_ID"), "{e}");
    // The right chip's VCEK gives no such message.
    let o = verify(
        &v,
        &d,
        "snp/virtee-sev/report_milan.bin",
        "snp/virtee-sev/vcek_milan.der",
        "2025-01-01T00:00:00Z",
    );
    assert_valid(&o, "own VCEK");
}

#[test]
fn every_byte_of_the_signed_region_matters() {
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let dir = d.join("snp/virtee-sev");
    let raw = common::read(&dir, "report_milan.bin");
    let certs = load_certs(&dir.join("vcek_milan.der")).unwrap();
    let t = at("2025-01-01T00:00:00Z");
    assert!(
        v.verify(&SnpReport::parse(&raw).unwrap(), &certs, t)
            .is_valid()
    );
    for i in 0..0x2A0 {
        let mut b = raw.clone();
        b[i] ^= 0x01;
        if let Ok(r) = SnpReport::parse(&b) {
            assert!(
                !v.verify(&r, &certs, t).is_valid(),
                "flip at {i:#x} accepted"
            );
        }
    }
}

#[test]
fn truncated_padded_and_garbage_inputs() {
    let d = testdata_or_skip!();
    let raw = common::read(&d, "snp/virtee-sev/report_milan.bin");
    for n in [0, 1, 4, 0x2A0, raw.len() - 1] {
        assert!(SnpReport::parse(&raw[..n]).is_err(), "truncated to {n}");
    }
    // Zero padding (the kernel's 4000-byte buffer) is accepted; anything else is not.
    let mut padded = raw.clone();
    padded.resize(4000, 0);
    assert_eq!(SnpReport::parse(&padded).unwrap().bytes()[..], raw[..]);
    padded[3000] = 1;
    assert!(SnpReport::parse(&padded).is_err());
    let mut garbage = vec![0xA5u8; 1184];
    garbage[0..4].copy_from_slice(&2u32.to_le_bytes());
    garbage[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
    let r = SnpReport::parse(&garbage).unwrap();
    let v = SnpVerifier::new().unwrap();
    assert!(!v.verify(&r, &[], at("2025-01-01T00:00:00Z")).is_valid());
    assert!(SnpReport::parse(&vec![0xFFu8; 1184]).is_err());
}

#[test]
fn e2e_genoa_json_matches_the_rebuilt_report() {
    let d = testdata_or_skip!();
    let dir = d.join("snp/coco-trustee");
    let json: serde_json::Value =
        serde_json::from_slice(&common::read(&dir, "e2e-genoa-evidence.json")).unwrap();
    let bytes = |v: &serde_json::Value| -> Vec<u8> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    };
    let rep = &json["attestation_report"];
    let r = SnpReport::parse(&common::read(&dir, "e2e-genoa-report.bin")).unwrap();
    assert_eq!(bytes(&rep["measurement"]), r.measurement());
    assert_eq!(bytes(&rep["report_data"]), r.report_data());
    assert_eq!(bytes(&rep["chip_id"]), r.chip_id());
    assert_eq!(rep["version"].as_u64(), Some(3));
    let vcek = &json["cert_chain"][0];
    assert_eq!(vcek["cert_type"], "VCEK");
    assert_eq!(
        bytes(&vcek["data"]),
        common::read(&dir, "e2e-genoa-vcek.der")
    );
}

#[test]
fn certificates_from_cert_table_disk_cache_and_fetcher() {
    use tribune_attest::snp::{DiskCache, KdsFetcher, TcbVersion};
    let d = testdata_or_skip!();
    let v = SnpVerifier::new().unwrap();
    let dir = d.join("snp/coco-trustee");
    let raw = common::read(&dir, "az-milan-v3-report.bin");
    let r = SnpReport::parse(&raw).unwrap();
    let vcek = load_certs(&dir.join("az-milan-v3-vcek.pem"))
        .unwrap()
        .remove(0);
    let t = at("2026-01-01T00:00:00Z");

    // Extended report cert table: one VCEK entry, then the zero terminator.
    let mut table = vec![0u8; 48];
    table[..16].copy_from_slice(&[
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ]);
    table[16..20].copy_from_slice(&48u32.to_le_bytes());
    table[20..24].copy_from_slice(&(vcek.0.len() as u32).to_le_bytes());
    table.extend_from_slice(&vcek.0);
    let certs = tribune_attest::snp::parse_cert_table(&table).unwrap();
    assert!(v.verify(&r, &certs, t).is_valid());
    table[20] ^= 0xff; // length out of bounds
    assert!(tribune_attest::snp::parse_cert_table(&table).is_err());

    // A fetcher (stands in for AMD KDS) fills the disk cache; the next verifier is offline.
    struct Fake(Vec<u8>);
    impl KdsFetcher for Fake {
        fn fetch_vcek(
            &self,
            _: Product,
            _: &[u8],
            _: &TcbVersion,
        ) -> tribune_attest::Result<Vec<u8>> {
            Ok(self.0.clone())
        }
    }
    let cache_dir = std::env::temp_dir().join(format!("tribune-vcek-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache_dir);
    let online = SnpVerifier::new()
        .unwrap()
        .with_disk_cache(DiskCache::new(&cache_dir))
        .with_kds(Box::new(Fake(vcek.0.clone())));
    assert!(online.verify(&r, &[], t).is_valid());
    let offline = SnpVerifier::new()
        .unwrap()
        .with_disk_cache(DiskCache::new(&cache_dir));
    let o = offline.verify(&r, &[], t);
    assert!(o.is_valid(), "{:?}", o.errors);
    // Without cache or certs: a clear "missing" reason.
    let o = SnpVerifier::new().unwrap().verify(&r, &[], t);
    assert!(o.errors[0].contains("no SEV-VCEK certificate supplied"));
    let _ = std::fs::remove_dir_all(&cache_dir);
}

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tribune-snp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn pem_with_explanatory_text_still_verifies() {
    // RFC 7468 §2: text outside the encapsulation boundaries is allowed (e.g. the
    // `# SEV-VCEK` comments tools write). A commented copy of the shipped VCEK+ASK+ARK bundle
    // must verify az-milan-report.bin exactly as the original does.
    let d = testdata_or_skip!();
    let dir = d.join("snp/coco-trustee");
    let pem = String::from_utf8(common::read(&dir, "az-milan-vcek-chain.pem")).unwrap();
    let blocks: Vec<&str> = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("-----BEGIN"))
        .collect();
    assert_eq!(blocks.len(), 3, "VCEK, ASK, ARK");
    let mut commented = String::from("# SEV-VCEK\n# fetched from AMD KDS for this chip\n\n");
    for (b, name) in blocks.iter().zip(["SEV-VCEK", "ASK", "ARK"]) {
        commented.push_str(&format!("{name} follows; subject and issuer below\n"));
        commented.push_str(b);
        commented.push('\n');
    }
    commented.push_str("trailing notes\n");
    let scratch = scratch_dir("pem");
    let f = scratch.join("commented-chain.pem");
    std::fs::write(&f, &commented).unwrap();
    let certs = load_certs(&f).unwrap();
    assert_eq!(certs.len(), 3);
    let raw = common::read(&dir, "az-milan-report.bin");
    let r = SnpReport::parse(&raw).unwrap();
    let v = SnpVerifier::new().unwrap();
    let o = v.verify(&r, &certs, at("2026-01-01T00:00:00Z"));
    assert_valid(&o, "commented az-milan-vcek-chain.pem");
    assert_eq!(o.chain, ["SEV-VCEK", "SEV-Milan", "ARK-Milan"]);

    // Text starting with the digit '0' (the byte a DER SEQUENCE starts with) is still text.
    let f0 = scratch.join("zero-first.pem");
    std::fs::write(&f0, format!("0) the VCEK, then ASK and ARK\n{pem}")).unwrap();
    assert_eq!(load_certs(&f0).unwrap().len(), 3);

    // The shipped AMD chain file with comments loads its three certificates too.
    let chain = String::from_utf8(common::read(&dir, "chains/milan_ask_ark_asvk.pem")).unwrap();
    let f = scratch.join("commented-ask-ark-asvk.pem");
    std::fs::write(&f, format!("# AMD Milan ASK, ARK, ASVK\n{chain}\n# end\n")).unwrap();
    assert_eq!(load_certs(&f).unwrap().len(), 3);

    // Only text: a clear "no certificate", not a DER parse error.
    let f = scratch.join("only-text.pem");
    std::fs::write(&f, "# SEV-VCEK\n# (the certificate was not pasted)\n").unwrap();
    let e = load_certs(&f).unwrap_err().to_string();
    assert!(e.contains("no DER certificate and no PEM"), "{e}");
    assert!(!e.contains("unparsable"), "{e}");
    // PEM blocks but none of them a certificate.
    let f = scratch.join("key-only.pem");
    std::fs::write(
        &f,
        "# a key, not a certificate\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let e = load_certs(&f).unwrap_err().to_string();
    assert!(
        e.contains("no \"-----BEGIN CERTIFICATE-----\" block"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
