//! `pytorch::parse` on bytes nobody should trust: random bytes, random opcode soup, random
//! mutations of real checkpoints, and inputs built to hit each cap. It must return an error
//! or tensors that lie inside the file — never panic, hang or allocate what the file claims.

#[path = "pytorch_common/mod.rs"]
mod common;

use proptest::prelude::*;
use quantlens_core::pytorch;
use quantlens_core::Error;

/// Every tensor of a successful parse lies inside the file.
fn check(bytes: &[u8]) {
    if let Ok(parsed) = pytorch::parse(bytes) {
        for t in &parsed.tensors {
            let end = t.offset.checked_add(t.nbytes).expect("extent overflows");
            assert!(end <= bytes.len() as u64, "{} ends past the file", t.name);
            assert_eq!(t.shape.len(), t.strides.len());
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixture_dir().join(name)).expect("fixture")
}

/// Opcodes with plausible operands, for pickles that get far into the reader.
fn opcode() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(
            b"}])(NtuesabRQ0122\x85\x86\x87\x88\x89\x8f\x90\x91\x93\x94\x81".to_vec()
        )
        .prop_map(|b| vec![b]),
        (0u8..8).prop_map(|i| vec![b'q', i]),
        (0u8..8).prop_map(|i| vec![b'h', i]),
        any::<u8>().prop_map(|i| vec![b'K', i]),
        prop::sample::select(vec![
            &b"ccollections\nOrderedDict\n"[..],
            b"ctorch._utils\n_rebuild_tensor_v2\n",
            b"ctorch._utils\n_rebuild_parameter\n",
            b"ctorch\nFloatStorage\n",
            b"ctorch\nSize\n",
            b"X\x07\0\0\0storage",
            b"X\x01\0\0\x000",
            b"X\x03\0\0\0cpu",
            b"\x8c\x01a",
            b"J\xff\xff\xff\xff",
            b"\x8a\x01\x05",
        ])
        .prop_map(<[u8]>::to_vec),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(kind in 0u8..3, tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = match kind {
            0 => Vec::new(),
            1 => b"PK\x03\x04".to_vec(),
            _ => b"\x80\x02".to_vec(),
        };
        bytes.extend(tail);
        check(&bytes);
    }

    #[test]
    fn opcode_soup_never_panics(ops in prop::collection::vec(opcode(), 0..64)) {
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(ops.concat());
        bytes.push(b'.');
        check(&bytes);
    }

    #[test]
    fn mutated_checkpoints_never_panic(
        file in prop::sample::select(vec!["lightning.ckpt", "legacy_views.pt", "views_protocol4.pt"]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = fixture(file);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        check(&bytes);
    }

    #[test]
    fn mutated_pickles_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Mutate only the object pickle of a legacy file, so most runs reach the VM's depths.
        let mut bytes = fixture("legacy_views.pt");
        let (start, end) = (119, 600.min(bytes.len()));
        for (at, value) in edits {
            bytes[start + at.index(end - start)] = value;
        }
        check(&bytes);
    }
}

fn limit_what(err: &Error) -> &'static str {
    match err {
        Error::LimitExceeded { what, .. } => what,
        other => panic!("expected LimitExceeded, got {other}"),
    }
}

#[test]
fn stack_is_capped() {
    let mut bytes = b"\x80\x02".to_vec();
    bytes.extend(b"N".repeat(1 << 21));
    bytes.push(b'.');
    let err = pytorch::parse(&bytes).unwrap_err();
    assert_eq!(limit_what(&err), "pickle stack depth");
}

#[test]
fn objects_and_elements_are_capped() {
    // Each TUPLE1 wraps the last tuple in a new one: one object per opcode.
    let mut bytes = b"\x80\x02N".to_vec();
    bytes.extend(b"\x85".repeat((1 << 21) + 1));
    bytes.push(b'.');
    let err = pytorch::parse(&bytes).unwrap_err();
    assert_eq!(limit_what(&err), "pickle objects");

    // A list of a million Nones, copied into sets until the elements run out.
    let mut bytes = b"\x80\x02(".to_vec();
    bytes.extend(b"N".repeat((1 << 20) - 1));
    bytes.extend(b"lq\x00");
    bytes.extend(b"cbuiltins\nset\nh\x00\x85R0".repeat(5));
    bytes.push(b'.');
    let err = pytorch::parse(&bytes).unwrap_err();
    assert_eq!(limit_what(&err), "pickle container elements");
}

#[test]
fn huge_claims_do_not_allocate() {
    for op in [&b"\x8d"[..], b"\x8e", b"\x96", b"\x95"] {
        let mut bytes = b"\x80\x04".to_vec();
        bytes.extend(op);
        bytes.extend(u64::MAX.to_le_bytes());
        bytes.push(b'.');
        assert!(matches!(
            pytorch::parse(&bytes),
            Err(Error::Truncated { .. })
        ));
    }
}
