use std::fs;

use proptest::prelude::*;

use super::*;
use crate::gguf::{GgufModel, Value, ValueType};

/// A fresh empty folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("quantlens-writer-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

#[test]
fn writes_metadata_and_tensors_that_read_back() {
    let dir = TempDir::new();
    let dest = dir.0.join("m.gguf");
    let mut w = GgufWriter::new(&dest, WriteOptions::default()).unwrap();
    w.add_metadata("general.architecture", MetaValue::string("llama"))
        .unwrap();
    w.add_metadata("a.u64", MetaValue::U64(u64::MAX)).unwrap();
    w.add_metadata("a.f64", MetaValue::F64(-0.25)).unwrap();
    w.add_metadata("a.bool", MetaValue::Bool(true)).unwrap();
    w.add_metadata(
        "a.nested",
        MetaValue::Array(MetaArray::Arrays(vec![
            MetaArray::from_i16(&[1, -2]),
            MetaArray::from_strs(&["x", ""]),
        ])),
    )
    .unwrap();
    w.add_tensor_info("t.weight", &[2, 3], GgmlType::F32)
        .unwrap();
    w.add_tensor_info("empty", &[0], GgmlType::F16).unwrap();
    w.add_tensor_info("b", &[5], GgmlType::I8).unwrap();
    let data = f32_bytes((0..6).map(|i| i as f32));
    w.write_tensor_data("t.weight", &data[..8]).unwrap();
    w.write_tensor_data("t.weight", &data[8..]).unwrap();
    w.write_tensor_data("b", &[1, 2, 3, 4, 5]).unwrap();
    let sizes = w.output_sizes();
    let paths = w.finish().unwrap();
    assert_eq!(paths, vec![dest.clone()]);
    assert_eq!(dir.entries(), vec!["m.gguf"]);
    assert_eq!(fs::metadata(&dest).unwrap().len(), sizes[0]);

    let model = GgufModel::open(&dest).unwrap();
    let header = model.header();
    assert_eq!(header.version, 3);
    assert_eq!(header.get("a.u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(header.get("a.f64"), Some(&Value::F64(-0.25)));
    assert_eq!(header.get("a.bool"), Some(&Value::Bool(true)));
    let Some(Value::Array(nested)) = header.get("a.nested") else {
        panic!("array")
    };
    assert_eq!(nested.elem, ValueType::Array);
    assert_eq!(nested.len, 2);
    assert_eq!(model.tensor_data("t.weight").unwrap(), &data[..]);
    assert_eq!(model.tensor_data("b").unwrap(), &[1, 2, 3, 4, 5]);
    let (_, info) = model.tensor("t.weight").unwrap();
    assert_eq!(info.shape(), vec![2, 3]);
}

#[test]
fn split_output_opens_as_one_model() {
    let dir = TempDir::new();
    let dest = dir.0.join("s.gguf");
    let options = WriteOptions {
        alignment: 64,
        split: SplitLimits {
            max_bytes: Some(100),
            max_tensors: None,
        },
    };
    let mut w = GgufWriter::new(&dest, options).unwrap();
    w.add_metadata("k", MetaValue::U8(7)).unwrap();
    for i in 0..5 {
        w.add_tensor_info(&format!("t{i}"), &[16], GgmlType::F32)
            .unwrap();
    }
    assert_eq!(w.output_paths().len(), 5);
    for i in 0..5 {
        w.write_tensor_data(
            &format!("t{i}"),
            &f32_bytes((0..16).map(|j| (i * j) as f32)),
        )
        .unwrap();
    }
    let paths = w.finish().unwrap();
    assert_eq!(paths.len(), 5);
    assert_eq!(dir.entries()[0], "s-00001-of-00005.gguf");
    let model = GgufModel::open(&paths[3]).unwrap();
    assert_eq!(model.tensor_count(), 5);
    assert_eq!(model.header().get("k"), Some(&Value::U8(7)));
    assert_eq!(model.header().alignment, 64);
    assert_eq!(model.shards[1].header.alignment, 64);
    assert_eq!(model.shards[1].header.get("k"), None);
    assert_eq!(
        model.tensor_data("t4").unwrap(),
        &f32_bytes((0..16).map(|j| (4 * j) as f32))[..]
    );
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = TempDir::new();
    let dest = dir.0.join("x.gguf");
    let mut w = GgufWriter::new(&dest, WriteOptions::default()).unwrap();
    w.add_tensor_info("a", &[4], GgmlType::F32).unwrap();
    w.write_tensor_data("a", &[0; 8]).unwrap();
    assert_eq!(w.temp_paths().len(), 1);
    assert_eq!(dir.entries().len(), 1);
    drop(w);
    assert!(dir.entries().is_empty());
}

#[test]
fn misuse_is_refused() {
    let dir = TempDir::new();
    let dest = dir.0.join("x.gguf");
    assert!(GgufWriter::new(
        &dest,
        WriteOptions {
            alignment: 24,
            ..WriteOptions::default()
        }
    )
    .is_err());
    let mut w = GgufWriter::new(&dest, WriteOptions::default()).unwrap();
    assert!(w.add_tensor_info("q", &[4, 31], GgmlType::Q4_0).is_err());
    assert!(w.add_tensor_info("q", &[], GgmlType::F32).is_err());
    assert!(w
        .add_tensor_info("q", &[1, 1, 1, 1, 1], GgmlType::F32)
        .is_err());
    assert!(w.add_metadata("split.count", MetaValue::U16(2)).is_err());
    assert!(w
        .add_metadata("general.alignment", MetaValue::U64(64))
        .is_err());
    w.add_tensor_info("a", &[2], GgmlType::F32).unwrap();
    w.add_tensor_info("b", &[2], GgmlType::F32).unwrap();
    assert!(w.add_tensor_info("a", &[2], GgmlType::F32).is_err());
    assert!(w.write_tensor_data("b", &[0; 8]).is_err());
    assert!(w.write_tensor_data("a", &[0; 9]).is_err());
    w.write_tensor_data("a", &[0; 8]).unwrap();
    assert!(w.write_tensor_data("a", &[0; 1]).is_err());
    assert!(w.add_metadata("late", MetaValue::U8(1)).is_err());
    let err = w.finish().unwrap_err();
    assert!(
        err.to_string().contains("'b' has 0 of its 8 bytes"),
        "{err}"
    );
    assert!(dir.entries().is_empty());
}

fn scalar() -> impl Strategy<Value = MetaValue> {
    prop_oneof![
        any::<u8>().prop_map(MetaValue::U8),
        any::<i8>().prop_map(MetaValue::I8),
        any::<u16>().prop_map(MetaValue::U16),
        any::<i16>().prop_map(MetaValue::I16),
        any::<u32>().prop_map(MetaValue::U32),
        any::<i32>().prop_map(MetaValue::I32),
        any::<u64>().prop_map(MetaValue::U64),
        any::<i64>().prop_map(MetaValue::I64),
        any::<f32>().prop_map(MetaValue::F32),
        any::<f64>().prop_map(MetaValue::F64),
        any::<bool>().prop_map(MetaValue::Bool),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(MetaValue::String),
    ]
}

fn array() -> impl Strategy<Value = MetaArray> {
    let leaf = prop_oneof![
        prop::collection::vec(any::<u32>(), 0..10).prop_map(|v| MetaArray::from_u32(&v)),
        prop::collection::vec(any::<i8>(), 0..10).prop_map(|v| MetaArray::from_i8(&v)),
        prop::collection::vec(any::<f64>(), 0..10).prop_map(|v| MetaArray::from_f64(&v)),
        prop::collection::vec(any::<bool>(), 0..10).prop_map(|v| MetaArray::from_bools(&v)),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..10)
            .prop_map(MetaArray::Strings),
    ];
    leaf.prop_recursive(3, 20, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(MetaArray::Arrays)
    })
}

/// Whether the reader's `value` (in `file`) is what was written.
fn same(file: &[u8], written: &MetaValue, read: &Value) -> bool {
    match (written, read) {
        (MetaValue::String(s), Value::String(span)) => span.slice(file) == &s[..],
        (MetaValue::Array(a), Value::Array(r)) => same_array(file, a, r),
        (MetaValue::F32(a), Value::F32(b)) => a.to_bits() == b.to_bits(),
        (MetaValue::F64(a), Value::F64(b)) => a.to_bits() == b.to_bits(),
        (MetaValue::U8(a), Value::U8(b)) => a == b,
        (MetaValue::I8(a), Value::I8(b)) => a == b,
        (MetaValue::U16(a), Value::U16(b)) => a == b,
        (MetaValue::I16(a), Value::I16(b)) => a == b,
        (MetaValue::U32(a), Value::U32(b)) => a == b,
        (MetaValue::I32(a), Value::I32(b)) => a == b,
        (MetaValue::U64(a), Value::U64(b)) => a == b,
        (MetaValue::I64(a), Value::I64(b)) => a == b,
        (MetaValue::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

fn same_array(file: &[u8], written: &MetaArray, read: &crate::gguf::Array) -> bool {
    if written.elem() != read.elem || written.len() != read.len {
        return false;
    }
    match written {
        MetaArray::Fixed { bytes, .. } => read.fixed_bytes(file) == Some(&bytes[..]),
        MetaArray::Strings(items) => items.iter().enumerate().all(|(i, s)| {
            matches!(read.get(file, i as u64), Some(Value::String(span)) if span.slice(file) == &s[..])
        }),
        MetaArray::Arrays(items) => items.iter().enumerate().all(|(i, a)| {
            matches!(read.get(file, i as u64), Some(Value::Array(r)) if same_array(file, a, &r))
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn metadata_round_trips(
        values in prop::collection::vec(prop_oneof![scalar(), array().prop_map(MetaValue::Array)], 0..8),
        alignment in prop::sample::select(vec![8u64, 32, 64, 256]),
    ) {
        let dir = TempDir::new();
        let dest = dir.0.join("p.gguf");
        let mut w = GgufWriter::new(&dest, WriteOptions { alignment, ..WriteOptions::default() }).unwrap();
        for (i, v) in values.iter().enumerate() {
            w.add_metadata(&format!("k{i}"), v.clone()).unwrap();
        }
        w.add_tensor_info("t", &[3], GgmlType::I16).unwrap();
        w.write_tensor_data("t", &[1, 2, 3, 4, 5, 6]).unwrap();
        w.finish().unwrap();
        let model = GgufModel::open(&dest).unwrap();
        let file = model.shards[0].file.bytes();
        prop_assert_eq!(model.header().alignment, alignment);
        for (i, v) in values.iter().enumerate() {
            let read = model.header().get(&format!("k{i}")).unwrap();
            prop_assert!(same(file, v, read), "key k{}: wrote {:?}, read {:?}", i, v, read);
        }
        prop_assert_eq!(model.tensor_data("t").unwrap(), &[1, 2, 3, 4, 5, 6]);
    }
}
